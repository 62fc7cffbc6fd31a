"""Majority vote over a group of answers: the pseudo-label of every label-free method here.

``maj(S)`` of docs/method.md ("Answers, equivalence and voting"): the most common answer of a set,
None answers dropped, None when nothing is left. Answers are grouped into clusters first — by
math-verify equivalence (default) or by canonical string (``matching="exact"``, the reference
implementation's behaviour) — and clusters vote.

Rules, all deterministic:

* **Tie rule.** Among clusters with the most votes, the one whose first member comes first in the
  group's order wins. (The reference takes whichever its shuffled batch showed first.)
* **Label text.** The winning cluster's label is its most frequent canonical form, ties again to the
  first seen: ``["0.5", "\\frac{1}{2}", "\\frac{1}{2}"]`` votes ``\\frac{1}{2}``.
* **Bounded work.** At most ``max_compared_answers`` distinct answers of a group (the most frequent)
  are compared by equivalence; the others vote by canonical string only (see
  :meth:`corewarding.core.equivalence.EquivalenceChecker.cluster_groups`). The default, 16, compares
  every group of up to 16 rollouts in full. (``max_comparison_seconds``, 5 s of math-verify work per
  group, is a safety net against hostile answers on top: where it acts, clusters depend on timing.)
* **Minimum agreement.** With ``min_count`` and/or ``min_ratio`` set, a winner with fewer votes, or a
  smaller share of the *whole* group (no-answer rollouts included), gives no label (``label=None``).
  The default (1 vote, ratio 0) is the reference's plain plurality: 1 of 8 can win.

Worked example::

    >>> vote = majority_vote(["7", r"\\frac{1}{2}", "0.5", None, "7", r"\\dfrac12"])
    >>> vote.label, vote.members, vote.count, round(vote.ratio, 3)
    ('\\\\frac{1}{2}', (1, 2, 5), 3, 0.5)
    >>> majority_vote(["7", r"\\frac{1}{2}", "0.5", None, "7", r"\\dfrac12"],
    ...               VotingConfig(matching="exact")).label
    '7'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from corewarding.core.answers import canonical_answer
from corewarding.core.equivalence import MAX_COMPARED_ANSWERS, MAX_COMPARISON_SECONDS, cluster_answer_groups

__all__ = ["VotingConfig", "Vote", "majority_vote", "majority_votes"]

MATCHING_MODES = ("equivalence", "exact")


@dataclass(frozen=True)
class VotingConfig:
    """How answers are matched and how much agreement a label needs.

    Attributes:
        matching: ``"equivalence"`` (math-verify clusters, default) or ``"exact"`` (canonical strings,
            as the reference implementation).
        min_count: fewest votes the winner needs (default 1: plain plurality).
        min_ratio: smallest share of the group (rollouts without an answer included) the winner needs
            (default 0.0).
        max_compared_answers: distinct answers per group compared by equivalence, the most frequent
            first; the others are clustered by canonical string only. A deterministic budget (default
            :data:`~corewarding.core.equivalence.MAX_COMPARED_ANSWERS`, 16; None: no budget).
        max_comparison_seconds: seconds of math-verify work per group after which its remaining
            answers are clustered by canonical string only. A safety net that depends on timing, not
            reached by honest answers (default
            :data:`~corewarding.core.equivalence.MAX_COMPARISON_SECONDS`, 5 s; None: no cap).
    """

    matching: str = "equivalence"
    min_count: int = 1
    min_ratio: float = 0.0
    max_compared_answers: int | None = MAX_COMPARED_ANSWERS
    max_comparison_seconds: float | None = MAX_COMPARISON_SECONDS

    def __post_init__(self):
        if self.matching not in MATCHING_MODES:
            raise ValueError(f"matching must be one of {MATCHING_MODES}, got {self.matching!r}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {self.min_count}")
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must be in [0, 1], got {self.min_ratio}")
        compared, seconds = self.max_compared_answers, self.max_comparison_seconds
        if compared is not None and compared < 1:
            raise ValueError(f"max_compared_answers must be at least 1 or None, got {compared}")
        if seconds is not None and seconds <= 0:
            raise ValueError(f"max_comparison_seconds must be positive or None, got {seconds}")


@dataclass(frozen=True)
class Vote:
    """The outcome of one group's vote.

    Attributes:
        label: the winning answer (canonical form), or None (no answers, or agreement below the
            minimum).
        members: positions in the group of the rollouts in the winning cluster (empty without one).
        count: votes of the winning cluster (``len(members)``), also when it fell short of the minimum.
        ratio: ``count / group size`` — the paper's *majority ratio*.
        num_answered: rollouts of the group with an answer.
        num_clusters: distinct answers (clusters) in the group.
    """

    label: str | None
    members: tuple[int, ...]
    count: int
    ratio: float
    num_answered: int
    num_clusters: int


def _vote_from_clusters(
    answers: Sequence[str | None], clusters: Sequence[int | None], config: VotingConfig
) -> Vote:
    votes = Counter(c for c in clusters if c is not None)
    if not votes:
        return Vote(None, (), 0, 0.0, 0, 0)
    # Cluster ids are numbered by first appearance, so the smallest id among the tied is the first seen.
    winner = min(votes, key=lambda c: (-votes[c], c))
    members = tuple(i for i, c in enumerate(clusters) if c == winner)
    count = len(members)
    ratio = count / len(answers)
    forms = Counter(canonical_answer(answers[i]) for i in members)
    label = max(forms, key=forms.get)  # Counter keeps first-seen order, and max keeps the first of ties
    if count < config.min_count or ratio < config.min_ratio:
        label, members = None, ()
    return Vote(label, members, count, ratio, sum(c is not None for c in clusters), len(votes))


def majority_vote(answers: Sequence[str | None], config: VotingConfig = VotingConfig()) -> Vote:
    """``maj(answers)`` of one group, with its vote statistics."""
    return majority_votes([answers], config)[0]


def majority_votes(
    groups: Sequence[Sequence[str | None]], config: VotingConfig = VotingConfig()
) -> list[Vote]:
    """:func:`majority_vote` of many groups, clustered in one batch."""
    clusters = cluster_answer_groups(
        groups,
        mode=config.matching,
        max_compared=config.max_compared_answers,
        max_seconds=config.max_comparison_seconds,
    )
    return [_vote_from_clusters(g, c, config) for g, c in zip(groups, clusters)]
