"""The SmolLM2 study (issue 30): does a real pretrained model learn without labels, and is it arithmetic or
format? SmolLM2-135M-Instruct on the arithmetic task, every method of the paper's comparison, 3 seeds,
30 steps, the ``smollm2/`` recipes (last-number answers), held-out greedy and avg@4 on the test split's
64 questions at steps 0, 15 and 30.

Format and arithmetic are told apart in two ways. Each run's held-out evaluation gives the answer rate
(samples with a number) and the accuracy among answered samples (avg@4 / answer rate): a method that only
taught the model to end on a number raises the first, not the second. And the control ``fixed_format``
asks every question so that the model already answers with a number (:data:`CONTROL_INSTRUCTION`, the
answer rate near 100% before training): what ground truth and majority vote gain there is arithmetic.

``run`` trains what is not stored yet, two runs at a time on one thread each (5-7 GB each), seed-major
so that a cut-off study leaves every method with as many seeds as possible, and stores each run as it
ends in ``docs/results/smollm2_study/<method>/seed-S/`` (``metrics.jsonl.gz``, ``config.yaml``);
``table`` prints the table docs/results.md quotes, from the stored files alone; ``echo`` measures how often
given models answer with a number of the question (the echo collapse of docs/results.md)::

    PYTHONPATH=. nohup python benchmarks/smollm2_study.py run > study.log &
    PYTHONPATH=. python benchmarks/smollm2_study.py table
    PYTHONPATH=. python benchmarks/smollm2_study.py echo --models start=smollm2 end=runs/RUN --out echo.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from statistics import fmean, stdev

from stored_runs import Jobs, run_jobs, train_job

from corewarding.core import metric_names
from corewarding.core.collapse import detect_collapse, read_metrics

METHODS = ("ground_truth", "majority_vote", "co_rewarding_i", "co_rewarding_ii", "self_certainty", "entropy")
#: The control's runs: the recipes of these methods on questions whose instruction fixes the format.
CONTROL_METHODS = ("ground_truth", "majority_vote")
CONTROL = "fixed_format"
#: What the control's questions end with instead of the task's ``#### followed by the number`` ask.
CONTROL_INSTRUCTION = "Reply with only the number."
#: Settings tried beyond the recipes: ``condition/method → settings``. A label only where at least 3 of
#: the other view's 8 answers agree: on this task the plurality is often one vote of eight, noise.
VARIANTS = {"min_agreement_3/co_rewarding_i": ["--min_agreement_count", "3"]}
SEEDS = (0, 1, 2)
#: Training questions ``echo`` samples (8 answers each).
ECHO_QUESTIONS = 32
STEPS = 30
RUNS = Path("runs/smollm2_study")
STORED = Path(__file__).resolve().parent.parent / "docs" / "results" / "smollm2_study"


def control_datasets(folder: Path) -> list[str]:
    """The control's train and test questions (the task's, with :data:`CONTROL_INSTRUCTION`) written to
    ``folder``; the settings that train on them."""
    from corewarding.data.arithmetic import INSTRUCTION, arithmetic_problems

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "test"):
        paths[split] = folder / f"arithmetic_{CONTROL}_{split}.jsonl"
        with paths[split].open("w") as out:
            for p in arithmetic_problems(None, split):
                out.write(json.dumps({  # the columns of the loader's ``pairs`` preset
                    "original_question": p.question.replace(INSTRUCTION, CONTROL_INSTRUCTION),
                    "rephrased_question": p.rephrasing.replace(INSTRUCTION, CONTROL_INSTRUCTION),
                    "solution": p.answer, "idx": p.id}) + "\n")
    return ["--dataset", str(paths["train"]), "--heldout_dataset", str(paths["test"])]


def conditions(runs: Path) -> dict[str, tuple[str, list[str]]]:
    """``name → (recipe, settings beyond it)``: each method, then the control's, then the variants."""
    named = {m: (f"smollm2/{m}", []) for m in METHODS}
    for method in CONTROL_METHODS:
        named[f"{CONTROL}/{method}"] = (f"smollm2/{method}", control_datasets(runs / "data"))
    for name, settings in VARIANTS.items():
        named[name] = (f"smollm2/{name.split('/')[-1]}", settings)
    return named


def condition_names() -> list[str]:
    """Every condition, in the order ``run`` trains them and ``table`` lists them."""
    return [*METHODS, *(f"{CONTROL}/{m}" for m in CONTROL_METHODS), *VARIANTS]


def jobs(runs: Path, stored: Path, seeds: list[int], names: list[str], steps: int = STEPS,
         model: str = "smollm2") -> Jobs:
    """A training job for each (seed, condition) not stored yet: its recipe, ``steps`` steps, held-out
    evaluations at the start, half-way and the end, one thread."""
    named = conditions(runs)
    settings = ["--max_steps", str(steps), "--eval_steps", str(max(1, steps // 2)), "--threads", "1",
                "--model_name_or_path", model]
    return {
        f"{name}/seed-{seed}": ([], train_job(
            ["--config", named[name][0], *named[name][1], *settings, "--seed", str(seed)],
            runs / name / f"seed-{seed}", stored / name / f"seed-{seed}"))
        for seed in seeds for name in names
        if not (stored / name / f"seed-{seed}" / "metrics.jsonl.gz").exists()
    }


def run_figures(metrics: Path) -> dict:
    """One stored run: held-out avg@4 (start, half-way, end) and greedy (start, end), the answer rate and
    the accuracy among answered samples (start, end), the rollouts' mean length (first and last 3 steps),
    the mean label accuracy, and the collapse monitor's report."""
    records = read_metrics(metrics)
    evals = [r for r in records if r.get(metric_names.HELDOUT_SAMPLED) is not None]
    steps = [r for r in records if r.get(metric_names.MEAN_LENGTH) is not None]
    first, middle, last = evals[0], evals[len(evals) // 2], evals[-1]

    def answered(r: dict) -> float:
        return 1 - r[metric_names.HELDOUT_NO_ANSWER]

    def among_answered(r: dict) -> float:
        return r[metric_names.HELDOUT_SAMPLED] / answered(r) if answered(r) else 0.0

    labels = [r[metric_names.LABEL_ACCURACY] for r in steps if r.get(metric_names.LABEL_ACCURACY) is not None]
    return {
        "avg_start": 100 * first[metric_names.HELDOUT_SAMPLED],
        "avg_middle": 100 * middle[metric_names.HELDOUT_SAMPLED],
        "avg_end": 100 * last[metric_names.HELDOUT_SAMPLED],
        "greedy_start": 100 * first[metric_names.HELDOUT_GREEDY],
        "greedy_end": 100 * last[metric_names.HELDOUT_GREEDY],
        "answered_start": 100 * answered(first), "answered_end": 100 * answered(last),
        "among_start": 100 * among_answered(first), "among_end": 100 * among_answered(last),
        "length_start": fmean(r[metric_names.MEAN_LENGTH] for r in steps[:3]),
        "length_end": fmean(r[metric_names.MEAN_LENGTH] for r in steps[-3:]),
        "label_accuracy": 100 * fmean(labels) if labels else float("nan"),
        "collapse": detect_collapse(records),
    }


def mean_sd(values: list[float]) -> str:
    return f"{values[0]:.1f}" if len(values) == 1 else f"{fmean(values):.1f} ± {stdev(values):.1f}"


def flags(reports: list) -> str:
    """``0 of 3``, or ``2 of 3 (step 15: heldout_accuracy_down; step 30: answer_from_question)``: how many
    runs the monitor flagged, and at which step by which signals."""
    flagged = [r for r in reports if r.collapsed]
    steps = "; ".join(f"step {r.step}: {', '.join(r.reasons)}" for r in flagged)
    return f"{len(flagged)} of {len(reports)}" + (f" ({steps})" if flagged else "")


def arrow(runs: list[dict], key: str) -> str:
    return f"{mean_sd([r[f'{key}_start'] for r in runs])} → {mean_sd([r[f'{key}_end'] for r in runs])}"


def table(stored: Path = STORED) -> str:
    """The study's table from the stored runs: one row per condition, mean ± sample SD over its seeds; a
    label-free method's gain is also given as a ratio to ground truth's mean gain on the same seeds."""
    rows = [
        "| run | seeds | held-out avg@4 (start → half-way → end) | gain half-way | gain at the end | "
        "greedy (end) | answer rate | accuracy among answered | length, tokens | label accuracy | "
        "collapse flagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Ground truth's runs by seed, of the task and of the control: each gain's ratio is to ground truth's on
    # the same questions and seeds.
    truths: dict[str, dict[str, dict]] = {"": {}, CONTROL: {}}
    for name in condition_names():
        paths = sorted((stored / name).glob("seed-*/metrics.jsonl.gz"))
        if not paths:
            continue
        runs = [run_figures(p) for p in paths]
        seeds = [p.parent.name.removeprefix("seed-") for p in paths]
        family, _, method = name.rpartition("/")
        truth = truths[CONTROL if family == CONTROL else ""]
        if method == METHODS[0] and family in truths:
            truth.update(zip(seeds, runs))

        def gain(point: str) -> str:
            gains = [r[f"avg_{point}"] - r["avg_start"] for r in runs]
            paired = [truth[s][f"avg_{point}"] - truth[s]["avg_start"] for s in seeds if s in truth]
            ratio = (f" ({fmean(gains) / fmean(paired):.2f}× GT)"
                     if method != METHODS[0] and len(paired) == len(runs) else "")
            return mean_sd(gains) + ratio

        labels = [r["label_accuracy"] for r in runs]
        rows.append(
            f"| {name} | {', '.join(seeds)} | {mean_sd([r['avg_start'] for r in runs])} → "
            f"{mean_sd([r['avg_middle'] for r in runs])} → {mean_sd([r['avg_end'] for r in runs])} | "
            f"{gain('middle')} | {gain('end')} | "
            f"{mean_sd([r['greedy_end'] for r in runs])} | {arrow(runs, 'answered')} | "
            f"{arrow(runs, 'among')} | "
            f"{arrow(runs, 'length')} | {'—' if any(v != v for v in labels) else mean_sd(labels)} | "
            f"{flags([r['collapse'] for r in runs])} |"
        )
    return "\n".join(rows)


def echo_shares(models: dict[str, str], out: Path | None = None, control: bool = False) -> str:
    """``echo``: how often each model answers by echoing the question. Each model samples 8 answers (T 0.8,
    32 tokens, last number, no system turn, seed 0) to the first :data:`ECHO_QUESTIONS` training questions
    (``control``: the control's); the share of answers that are a number of their question
    (``answer_in_question_share``, what training logs) and the share right. A table; with ``out``, the
    figures as JSON."""
    from corewarding.core.answers import answer_in_question_share
    from corewarding.core.equivalence import answers_match
    from corewarding.data.arithmetic import INSTRUCTION, arithmetic_problems
    from corewarding.inference.evaluate import sample_answers
    from corewarding.inference.generation import GenerationSettings, TransformersBackend

    problems = [replace(p, question=p.question.replace(INSTRUCTION, CONTROL_INSTRUCTION)) if control else p
                for p in arithmetic_problems(None, "train")[:ECHO_QUESTIONS]]
    settings = GenerationSettings(n=8, temperature=0.8, max_new_tokens=32)
    figures = {}
    for label, location in models.items():
        backend = TransformersBackend.load(location, seed=0)
        answers = sample_answers([p.question for p in problems], backend, {"sampled": settings},
                                 system_prompt=None, answer_extraction="last_number")[0]["sampled"]
        pairs = [(p, a) for p, group in zip(problems, answers) for a in group]
        figures[label] = {
            "model": location,
            "answer_in_question_share": answer_in_question_share([a for _, a in pairs],
                                                                 [p.question for p, _ in pairs]),
            "right": fmean(answers_match([(p.answer, a) for p, a in pairs], mode="exact")),
        }
    if out is not None:
        record = {"questions": CONTROL if control else "task", "count": ECHO_QUESTIONS, "samples": 8,
                  "temperature": 0.8, "max_new_tokens": 32, "seed": 0, "models": figures}
        out.write_text(json.dumps(record, indent=1) + "\n")
    rows = ["| model | answers that are a number of the question | answers right |", "|---|---|---|"]
    rows += [f"| {label} | {100 * f['answer_in_question_share']:.1f}% | {100 * f['right']:.1f}% |"
             for label, f in figures.items()]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "table", "echo"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--only", nargs="+",
                        help="conditions to run (default: every method, the control's, the variants)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--model", default="smollm2", help="another model only to check the script: tiny")
    parser.add_argument("--runs", type=Path, default=RUNS, help="the runs' folder (models included)")
    parser.add_argument("--stored", type=Path, default=STORED, help="where the runs' files are stored")
    parser.add_argument("--models", nargs="+", default=[], metavar="LABEL=MODEL",
                        help="echo: the models to sample (a folder or a model name)")
    parser.add_argument("--out", type=Path, help="echo: write the figures there as JSON")
    parser.add_argument("--control", action="store_true", help="echo: on the control's questions")
    args = parser.parse_args()
    if args.command == "echo":
        print(echo_shares(dict(m.split("=", 1) for m in args.models), args.out, args.control))
        return
    if args.command == "run":
        names = args.only or condition_names()
        run_jobs(jobs(args.runs, args.stored, args.seeds, names, args.steps, args.model), args.parallel,
                 after=lambda: print(table(args.stored), flush=True))
    print(table(args.stored))


if __name__ == "__main__":
    main()
