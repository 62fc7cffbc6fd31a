"""``diagnose --pairs auto``: rephrasings of the diagnosed questions when the user has none.

Co-rewarding-I's cross-view label needs a second wording of each question. Without a ``--pairs`` file,
the diagnosis makes one with the project's rephrasing pipeline
(:func:`~corewarding.inference.rephrase.rephrase_problems`, resumable through its completion cache) and
its validator (:func:`~corewarding.data.rephrasing_checks.validate_pairs`, the text checks: output,
similarity, length, placeholders), on the diagnosed questions only, with the model under diagnosis.
The cross-view figures are then measured on the questions whose rephrasing passed — a sample that leans
toward the questions a model can reword — and the diagnosis says how many that was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from corewarding.data.records import Problem
from corewarding.data.rephrasing_checks import validate_pairs
from corewarding.inference.generation import GenerationBackend
from corewarding.inference.rephrase import rephrase_problems

__all__ = ["AutoPairs", "auto_pairs"]


@dataclass(frozen=True)
class AutoPairs:
    """``problems``: the questions with a valid rephrasing (all of them without one when none passed);
    ``valid`` of ``total`` rephrasings passed; ``rejected``: check name → how many it rejected."""

    problems: list[Problem]
    valid: int
    total: int
    rejected: dict[str, int]

    def summary(self) -> str:
        """One line: how many rephrasings passed, and what the others failed."""
        why = ", ".join(f"{name} {count:,}" for name, count in self.rejected.items())
        line = f"--pairs auto: {self.valid:,} of {self.total:,} rephrasings valid"
        line += f" (rejected by {why})" if why else ""
        if not self.valid:
            return f"{line}: no cross-view figures"
        if self.valid < self.total:
            return f"{line}: the diagnosis is of the {self.valid:,} questions with a valid one"
        return line


def auto_pairs(
    problems: Sequence[Problem], backend: GenerationBackend, cache_path: str | os.PathLike,
    progress: bool = False,
) -> AutoPairs:
    """Rephrase ``problems`` with ``backend`` and keep the valid pairs (module docstring)."""
    run = rephrase_problems(problems, backend, cache_path, progress=progress)
    reports = validate_pairs(run.problems, output_problems=run.output_problems)
    rejected: dict[str, int] = {}
    for report in reports:
        for name in report.rejected_by:
            rejected[name] = rejected.get(name, 0) + 1
    valid = [replace(p, rephrasing_valid=True) for p, r in zip(run.problems, reports) if r.valid]
    unpaired = [replace(p, rephrasing=None, rephrasing_valid=None) for p in problems]
    return AutoPairs(valid or unpaired, len(valid), len(problems), rejected)
