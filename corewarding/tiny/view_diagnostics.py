"""What a label-free reward can learn from a model on the synthetic task: its accuracy on every surface
form, its self-consistency headroom, and the cross-view label gain of Co-rewarding-I.

Two properties of a model decide whether a voting reward carries information (measured before any RL):

* **self-consistency headroom**: maj@k − avg@k. When wrong answers scatter and the right one is the
  plurality, the majority label is right more often than one sample, and RL toward it lifts avg@k.
  When errors concentrate on one wrong value per question, maj@k ≈ greedy and no vote helps.
* **cross-view label gain**: the share of (question, rephrasing) pairs whose *other* view's majority
  is right while the *own* view's is wrong — the label Co-rewarding-I gives and self-voting cannot.

:func:`measure_views` samples greedy and k answers for every surface form of each problem, then reports
the scores of the question view (what ``corewarding eval`` measures), the rephrasing view, each form
family, the forms with and without an irrelevant number, and the pair figures::

    pairs["majority_right"]["question"]             share of problems whose question view's majority is right
    pairs["other_right_own_wrong"]["question"]      rephrasing's majority right, question's wrong
    pairs["other_right_own_wrong"]["rephrasing"]    the reverse
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from statistics import fmean

from rich import box
from rich.table import Table

from corewarding.core.errors import UserError
from corewarding.data.records import Problem
from corewarding.data.synthetic import FORM_NAMES, NUM_FORMS, TaskConfig, chain_of, render_forms
from corewarding.inference.evaluate import evaluation_runs, outcome_scores, question_outcomes, sample_answers
from corewarding.inference.generation import GenerationBackend

__all__ = ["measure_views", "views_table", "pair_summary"]


def measure_views(
    problems: Sequence[Problem],
    backend: GenerationBackend,
    task: TaskConfig = TaskConfig(),
    *,
    k: int = 8,
    temperature: float = 1.0,
    max_new_tokens: int = 48,
    progress: bool = False,
) -> dict:
    """Scores per view, per form family and with/without an irrelevant number, and the pair figures of
    synthetic ``problems`` (made with ``task``); greedy and ``k`` samples at ``temperature`` for each of
    their :data:`NUM_FORMS` surface forms. A JSON-ready dict (fractions in [0, 1])."""
    if not problems:
        raise UserError("measure_views needs at least one problem")
    forms = [render_forms(chain_of(p), p.meta["style_seed"], task) for p in problems]
    runs = evaluation_runs(
        k=k, temperature=temperature, top_p=1.0, greedy=True, max_new_tokens=max_new_tokens
    )
    answers, _ = sample_answers([f.text for row in forms for f in row], backend, runs, progress=progress)
    outcomes = question_outcomes(
        [p.answer for p in problems for _ in range(NUM_FORMS)],
        answers["sampled"],
        [group[0] for group in answers["greedy"]],
    )
    per_problem = [outcomes[i * NUM_FORMS : (i + 1) * NUM_FORMS] for i in range(len(problems))]
    question = [row[p.meta["forms"][0]] for row, p in zip(per_problem, problems)]
    rephrasing = [row[p.meta["forms"][1]] for row, p in zip(per_problem, problems)]
    flat = [
        (outcome, form)
        for row, form_row in zip(per_problem, forms)
        for outcome, form in zip(row, form_row)
    ]

    def scores(selected) -> dict | None:
        return asdict(outcome_scores(list(selected), k)) if selected else None

    q_right = [o.majority_correct for o in question]
    r_right = [o.majority_correct for o in rephrasing]
    return {
        "temperature": temperature,
        "question": scores(question),
        "rephrasing": scores(rephrasing),
        "forms": {name: scores([o for o, f in flat if f.family == i]) for i, name in enumerate(FORM_NAMES)},
        "clean": scores([o for o, f in flat if f.distractor is None]),
        "distracted": scores([o for o, f in flat if f.distractor is not None]),
        "pairs": {
            "majority_right": {"question": fmean(q_right), "rephrasing": fmean(r_right)},
            "other_right_own_wrong": {
                "question": fmean(r and not q for q, r in zip(q_right, r_right)),
                "rephrasing": fmean(q and not r for q, r in zip(q_right, r_right)),
            },
            "both_wrong": fmean(not q and not r for q, r in zip(q_right, r_right)),
        },
    }


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def views_table(figures: Mapping[str, dict], title: str = "The synthetic task (%)") -> Table:
    """A rich table of :func:`measure_views` figures per split (``{"train": …, "test": …}``): a row per
    view, form family and distractor presence (the pair figures: :func:`pair_summary`)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in ("split", "view", "n", "greedy", "avg@k", "maj@k", "pass@k", "maj-avg"):
        table.add_column(header, justify="left" if header in ("split", "view") else "right")
    for split, views in figures.items():
        rows = {"question": views["question"], "rephrasing": views["rephrasing"], **views["forms"],
                "clean forms": views["clean"], "with distractor": views["distracted"]}
        for name, scores in rows.items():
            if scores is None:
                continue
            k = scores["k"]
            pass_k = {int(j): v for j, v in scores["pass_at_k"].items()}  # JSON keys are strings
            table.add_row(
                split, name, str(scores["num_questions"]), _percent(scores["greedy_accuracy"]),
                _percent(scores["avg_at_k"]), _percent(scores["maj_at_k"]), _percent(pass_k.get(k)),
                _percent(scores["maj_at_k"] - scores["avg_at_k"]),
            )
            split = ""
    return table


def pair_summary(figures: Mapping[str, dict]) -> list[str]:
    """One line per split: how often each view's majority is right, and the cross-view label gain."""
    lines = []
    for split, views in figures.items():
        pairs = views["pairs"]
        lines.append(
            f"{split}: majority right {_percent(pairs['majority_right']['question'])}% (question) / "
            f"{_percent(pairs['majority_right']['rephrasing'])}% (rephrasing); other view right, own wrong "
            f"{_percent(pairs['other_right_own_wrong']['question'])}% / "
            f"{_percent(pairs['other_right_own_wrong']['rephrasing'])}%; "
            f"both wrong {_percent(pairs['both_wrong'])}%"
        )
    return lines
