"""Co-rewarding-II's teacher schedule: how fast the EMA teacher follows the policy (no torch here;
:mod:`corewarding.training.teacher` applies it to weights).

The teacher starts as a copy of the initial policy. Before it samples at training step s (s = 1..S),
it moves toward the current policy (the policy after s − 1 optimizer steps):

    θ_T ← (1 − a_s)·θ_T + a_s·θ_policy

with a rate a_s that follows a cosine schedule from ``a_start`` to ``a_end`` over the S steps:

    a_s = a_end + ½·(a_start − a_end)·(1 + cos(π·min(s − 1, S)/S))

The reference script uses a_start = 0.01, a_end = 1e-5, an update every step. (The paper writes the
schedule as the EMA decay α = 1 − a going from 0.99 to 0.9999, i.e. a_end = 1e-4.)

An update window [first_step, last_step] (default: the whole run) keeps the teacher frozen outside it,
without shifting the cosine: a teacher frozen for the first 30 steps then moves at a_31, a_32, …; one
that moves for 30 steps is then frozen. (An experiment of this project, not the paper's: does a teacher
that absorbs the policy's early drift teach worse than one that waits?)

Worked example (S = 3: a_1 = a_start, a_2 halfway, a_3 near a_end)::

    >>> [round(ema_rate(s, 3, 0.01, 1e-5), 6) for s in (1, 2, 3)]
    [0.01, 0.007503, 0.002508]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TeacherSchedule", "ema_rate"]


def ema_rate(step: int, total_steps: int, start: float = 0.01, end: float = 1e-5) -> float:
    """a_s: the cosine-scheduled EMA rate at training step ``step`` (1-based) of ``total_steps``."""
    if step < 1 or total_steps < 1:
        raise ValueError(
            f"ema_rate needs step >= 1 and total_steps >= 1, got step={step}, total_steps={total_steps}"
        )
    progress = min(step - 1, total_steps) / total_steps
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


@dataclass
class TeacherSchedule:
    """When and by how much the teacher moves.

    Attributes:
        rate_start: a_start, the rate at the first step (reference: 0.01).
        rate_end: a_end, the rate reached at the last step (reference script: 1e-5; paper: 1e-4).
        update_interval: k, update before sampling at steps k, 2k, 3k, … as the reference code does
            (reference: every step, k = 1).
        first_step: the first step that updates (1: from the start).
        last_step: the last step that updates (None: to the end).
    """

    rate_start: float = 0.01
    rate_end: float = 1e-5
    update_interval: int = 1
    first_step: int = 1
    last_step: int | None = None

    def __post_init__(self):
        if self.update_interval < 1:
            raise ValueError(f"update_interval must be at least 1, got {self.update_interval}")
        if self.first_step < 1:
            raise ValueError(f"the teacher's first update step must be at least 1, got {self.first_step}")
        if self.last_step is not None and self.last_step < self.first_step:
            raise ValueError(
                f"the teacher's last update step ({self.last_step}) is before its first ({self.first_step})"
            )
        for name in ("rate_start", "rate_end"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")

    def rate(self, step: int, total_steps: int) -> float | None:
        """a_s at 1-based ``step`` of ``total_steps`` (S), or None when the teacher does not update then."""
        outside = step < self.first_step or (self.last_step is not None and step > self.last_step)
        if outside or step % self.update_interval:
            return None
        return ema_rate(step, total_steps, self.rate_start, self.rate_end)
