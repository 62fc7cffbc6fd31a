"""Ratios that hold on a shared machine: interleaved rounds, per-round ratios, their median and spread,
and a self-check that says when the machine was too noisy to judge a target.

A comparison made minutes apart measures the machine's load drift as much as the code (on this project's
shared 2-core machine TRL's own two runs once differed 5x). So every contestant runs once per *round*,
in an order rotated each round, and each contestant's time is divided by the reference's time *of the
same round*: a load change falls on both sides of each ratio. A contestant's figure is the median of its
per-round ratios, its spread the interquartile range (Q1–Q3). The reference is also run a second time
in every round as its own contestant — the self-check — whose ratio is 1.00 by construction of the code;
when its median strays from 1.00 by more than :data:`SELF_CHECK_TOLERANCE`, the machine was too noisy
for targets within a few per cent, and verdicts say so instead of met or missed.

Which time a contestant returns is its bench's choice: this process's CPU time where the work is all in
it (the trainer's steps, the warm votes), since on a loaded machine wall time also counts the waits for a
core, which change within a round (docs/performance.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from statistics import median, quantiles

#: How far the self-check's median ratio (the reference against itself) may stray from 1.00 for targets
#: within a few per cent (a bench judging a target far from 1.00 may state a looser one).
SELF_CHECK_TOLERANCE = 0.03


@dataclass(frozen=True)
class Ratio:
    """Median and interquartile range of per-round ratios."""

    median: float
    q1: float
    q3: float
    rounds: int

    def __str__(self) -> str:
        return f"{self.median:.2f}x [{self.q1:.2f}–{self.q3:.2f}]"


def ratio(numerators: list[float], denominators: list[float]) -> Ratio:
    """The :class:`Ratio` of ``numerators[r] / denominators[r]`` over rounds r."""
    values = [n / d for n, d in zip(numerators, denominators, strict=True)]
    if len(values) == 1:
        return Ratio(values[0], values[0], values[0], 1)
    q1, _, q3 = quantiles(values, n=4, method="inclusive")
    return Ratio(median(values), q1, q3, len(values))


def round_robin(
    contestants: dict[str, Callable[[], float]], rounds: int, warmup: int = 1, progress: bool = False
) -> dict[str, list]:
    """Call every contestant once per round, the order rotated by one each round; returns each one's
    results of the rounds after the first ``warmup`` (each call returns the seconds it measured). With
    ``progress``, a line on standard error as each round starts."""
    names = list(contestants)
    results: dict[str, list] = {name: [] for name in names}
    started = time.perf_counter()
    for r in range(warmup + rounds):
        if progress:
            kind = "warm-up round" if r < warmup else "round"
            elapsed = time.perf_counter() - started
            print(f"{kind} {r + 1}/{warmup + rounds} ({elapsed:.0f} s)", file=sys.stderr, flush=True)
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            value = contestants[name]()
            if r >= warmup:
                results[name].append(value)
    return results


def machine_quiet(self_check: Ratio, tolerance: float = SELF_CHECK_TOLERANCE) -> bool:
    """Whether the reference against itself came out within ``tolerance`` of 1.00."""
    return abs(self_check.median - 1.0) <= tolerance


def verdict(measured: Ratio, target: float, spread_limit: float, quiet: bool) -> str:
    """``met`` when the median is at most ``target`` and the spread's upper quartile below
    ``spread_limit``; ``missed`` otherwise; no verdict when the self-check found the machine too noisy."""
    if not quiet:
        return "not judged (noisy)"
    return "met" if measured.median <= target and measured.q3 < spread_limit else "missed"
