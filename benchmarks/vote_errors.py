"""Which answer wins a tiny model's vote on the synthetic task: the right one, the premature answer
(the value before the last step, what a solution that stops one step early boxes), or another wrong one.

The ``hard`` regime's claim is that its errors *concentrate*: one wrong value per question, the
premature answer, is the plurality of the model's samples on many questions, so a vote can be
confidently wrong. This prints, for each model, the share of samples and the share of questions'
pluralities (ties: the first answer sampled) in each class, on the question view of training problems.

    PYTHONPATH=. python benchmarks/vote_errors.py tiny-hard tiny-distractor --problems 200 -k 8
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from corewarding.data.synthetic import chain_of
from corewarding.inference.evaluate import evaluation_runs, sample_answers
from corewarding.inference.generation import TransformersBackend
from corewarding.tiny.regimes import synthetic_problems

CLASSES = ("right", "premature", "other wrong", "no answer")


def answer_class(answer: str | None, right: int, premature: int | None) -> str:
    if answer is None:
        return "no answer"
    if answer == str(right):
        return "right"
    return "premature" if premature is not None and answer == str(premature) else "other wrong"


def vote_errors(model: str, problems: int, k: int, temperature: float, seed: int) -> dict[str, dict]:
    """Shares of samples and of pluralities in each of :data:`CLASSES`."""
    chosen = synthetic_problems(model, problems, "train", seed=seed)
    backend = TransformersBackend.load(model, seed=seed)
    runs = evaluation_runs(k=k, temperature=temperature, top_p=1.0, greedy=False, max_new_tokens=48)
    answers, _ = sample_answers([p.question for p in chosen], backend, runs, progress=True)
    samples, pluralities = Counter(), Counter()
    for problem, group in zip(chosen, answers["sampled"]):
        values = chain_of(problem).values()
        premature = values[-2] if len(values) > 1 else None
        classes = [answer_class(a, values[-1], premature) for a in group]
        samples.update(classes)
        plurality = Counter(group).most_common(1)[0][0]
        pluralities[answer_class(plurality, values[-1], premature)] += 1
    return {
        "samples": {c: samples[c] / (len(chosen) * k) for c in CLASSES},
        "pluralities": {c: pluralities[c] / len(chosen) for c in CLASSES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"| model | share of | {' | '.join(CLASSES)} |")
    print(f"|---|---|{'---|' * len(CLASSES)}")
    for model in args.models:
        figures = vote_errors(model, args.problems, args.k, args.temperature, args.seed)
        for what, shares in figures.items():
            cells = " | ".join(f"{100 * shares[c]:.1f}" for c in CLASSES)
            print(f"| {model} | {what} | {cells} |")


if __name__ == "__main__":
    main()
