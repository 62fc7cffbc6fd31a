"""A trained model against its base, benchmark by benchmark: the difference and its sampling error.

Both models answer the same questions, so the difference is taken question by question (a paired
comparison): with d_i = trained_i − base_i the score difference on question i (each score in [0, 1]: right
or wrong, c/n of n samples, a share of instructions followed),

    Δ = mean(d),    SE(Δ) = sd(d) / √n        (sd with n − 1; the standard error of a paired mean)

which is smaller than the two models' errors combined when the same questions are hard for both. A
benchmark reads ``higher`` or ``lower`` when Δ is more than two standard errors from 0 (about 95%
confidence under the normal approximation), else ``level``. With one question, or identical
differences throughout, SE is 0 or undefined, and only an exact tie reads ``level``.

Worked example: four questions, the base right on the first two, the trained model on the first three::

    >>> row = compare_scores("code", "fixture", "pass@1", [1, 1, 0, 0], [1, 1, 1, 0])
    >>> row.difference, round(row.standard_error, 3), row.reading
    (0.25, 0.25, 'level')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean, stdev

from rich import box
from rich.table import Table

from corewarding.core.errors import UserError

__all__ = [
    "ComparedScore", "compare_scores", "benchmark_scores", "compare_records", "scores_table",
    "comparison_table",
]

#: The families in the order a report shows them.
FAMILIES = ("math", "code", "general")


@dataclass(frozen=True)
class ComparedScore:
    """One benchmark's metric for both models (fractions in [0, 1])."""

    family: str
    benchmark: str
    metric: str
    num_questions: int
    base: float
    trained: float
    difference: float
    standard_error: float | None
    reading: str


def compare_scores(
    family: str, benchmark: str, metric: str, base: Sequence[float], trained: Sequence[float]
) -> ComparedScore:
    """The paired comparison of two models' per-question scores on the same questions (module docstring)."""
    if len(base) != len(trained) or not base:
        raise UserError(
            f"{family}/{benchmark}: the models answered {len(base)} and {len(trained)} questions; a "
            "comparison needs the same questions (the same data, --limit and settings)"
        )
    differences = [t - b for b, t in zip(base, trained)]
    difference = fmean(differences)
    error = stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else None
    if error:
        reading = "higher" if difference > 2 * error else "lower" if difference < -2 * error else "level"
    else:
        reading = "level" if difference == 0 else "higher" if difference > 0 else "lower"
    return ComparedScore(
        family, benchmark, metric, len(base), fmean(base), fmean(trained), difference, error, reading
    )


def benchmark_scores(record: Mapping) -> dict[tuple[str, str, str], list[float]]:
    """Each (family, benchmark, metric)'s per-question scores in a record of ``corewarding eval --suite``
    (its ``suites``)."""
    found = {}
    for family in FAMILIES:
        for entry in record.get("suites", {}).get(family, {}).get("scores", []):
            found[family, entry["benchmark"], entry["metric"]] = entry["per_question"]
    return found


def compare_records(base: Mapping, trained: Mapping) -> list[ComparedScore]:
    """Every benchmark the two records share, compared; one measured for a single model is an error."""
    base_scores, trained_scores = benchmark_scores(base), benchmark_scores(trained)
    if base_scores.keys() != trained_scores.keys():
        only = sorted(base_scores.keys() ^ trained_scores.keys())[0]
        raise UserError(f"{'/'.join(only)} was measured for one model only: evaluate both on the same suites")
    return [compare_scores(*key, base_scores[key], trained_scores[key]) for key in base_scores]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def scores_table(records: Mapping[str, Mapping]) -> Table:
    """A rich table of every model's scores, one row per model, family, benchmark and metric (%)."""
    table = Table(title="Scores (%)", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header, justify in [("model", "left"), ("family", "left"), ("benchmark", "left"), ("metric", "left"),
                            ("n", "right"), ("score", "right")]:
        table.add_column(header, justify=justify, overflow="fold")
    for name, record in records.items():
        for (family, benchmark, metric), values in benchmark_scores(record).items():
            table.add_row(name, family, benchmark, metric, str(len(values)), _percent(fmean(values)))
    return table


def comparison_table(rows: Sequence[ComparedScore], base: str, trained: str) -> Table:
    """A rich table: one row per benchmark and metric, base and trained in %, Δ ± SE in points, reading."""
    table = Table(
        title=f"{trained} against {base} (%, Δ in points ± its standard error, paired over questions)",
        box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )
    headers = [("family", "left"), ("benchmark", "left"), ("metric", "left"), ("n", "right"),
               ("base", "right"), ("trained", "right"), ("Δ ± SE", "right"), ("reading", "left")]
    for header, justify in headers:
        table.add_column(header, justify=justify, overflow="fold")
    for row in rows:
        error = "–" if row.standard_error is None else f"{100 * row.standard_error:.1f}"
        table.add_row(
            row.family, row.benchmark, row.metric, str(row.num_questions), _percent(row.base),
            _percent(row.trained), f"{100 * row.difference:+.1f} ± {error}", row.reading,
        )
    return table
