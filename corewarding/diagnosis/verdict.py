"""The verdict: which label-free methods are expected to help a model on its questions, which can at most
sharpen it, which to collapse — rules on :mod:`corewarding.diagnosis.measurements`, pure functions.

**The rule with answers.** A voting reward teaches the policy its labels; RL toward them can lift
accuracy at most to the share of questions on which the labels are (or can become) right — the
method's *ceiling* (in the study, majority vote and Co-rewarding-II ended at most 1.7 points above
the starting maj@8, on both regimes). Ground truth's ceiling is 100%. A method is expected to **help** —
the project's target, a gain of at least half of ground truth's — when its ceiling closes at least
``gap_share`` (½) of the gap from avg@k to 100%::

    helps  ⇔  ceiling − avg@k ≥ gap_share × (1 − avg@k)

with the ceilings

==================================  =========================================================
method                              ceiling
==================================  =========================================================
majority_vote                       maj@k: its own majority's accuracy
co_rewarding_ii                     the fresh samples' majority (the teacher at step 0)
co_rewarding_i, co_rewarding_iii    1 − both_wrong: a question is learnable when either
                                    wording's majority is right (the other view's right label
                                    rewards the own view's right rollouts until its own majority
                                    turns right)
==================================  =========================================================

and one more condition for the cross-view methods: their label accuracy today (each view's rollouts
against the other view's majority) must be at least ``min_cross_view_label_accuracy`` (60%). Below it,
the wrong partner labels spread the errors both wordings share (the regime search of docs/results.md:
candidates A, B, F, with 51–57%, rose and then fell; K, L, M, with 65–67%, did not). Otherwise the
method **can only sharpen** (a gain of at most ``ceiling − avg@k``). The confidence rewards
(self-certainty, entropy) have no label to measure: they collapsed in 6 of 6 and 4 of 6 runs of the
study, and are never recommended. A probe flagged by the collapse monitor marks majority vote as
collapsing.

**Without answers** no ceiling can be measured. What separated the two shipped regimes without answers
(docs/diagnose.md) was the cross-view agreement of the majorities: where the two wordings' majorities
disagree on at least ``min_cross_view_disagreement`` of the questions (distractor: 53–58%;
shortcut: 4.5–8.5%), Co-rewarding-I's label differs from self-voting's, the necessary condition for it to
teach anything self-voting cannot. That is the label-free verdict's only positive rule, and it is
weaker: disagreement is also what a noisy model gives.

The ranking orders the label-free methods by expected outcome (helps, sharpens only, unknown,
collapses), then by a fixed precedence measured in the study: Co-rewarding-I before Co-rewarding-III
(the same gain, 97% vs 85% right labels, without a teacher to sample; measured for the project's earlier
both-views reading; the authors' reading, where the teacher's majority on the rephrasing labels the
question, is judged by the same rule until the diagnosis's validation takes its study rows),
Co-rewarding-II before majority
vote (ahead in all 6 seeds of both regimes; its teacher damps self-reinforced wrong majorities).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "HELPS", "SHARPENS", "COLLAPSES", "UNKNOWN", "LABEL_FREE_METHODS", "LABEL_FREE_EVIDENCE",
    "VerdictRules", "MethodVerdict", "Verdict", "judge",
]

HELPS, SHARPENS, UNKNOWN, COLLAPSES = "helps", "sharpens only", "unknown", "collapses"
_ORDER = (HELPS, SHARPENS, UNKNOWN, COLLAPSES)
#: The label-free methods judged, in the ranking's precedence within an outcome.
LABEL_FREE_METHODS = (
    "co_rewarding_i", "co_rewarding_iii", "co_rewarding_ii", "majority_vote", "entropy", "self_certainty",
)
_CROSS_VIEW = ("co_rewarding_i", "co_rewarding_iii")
_CONFIDENCE = {"self_certainty": "6 of 6", "entropy": "4 of 6"}
#: What the label-free figures told on the shipped regimes (200 questions, k = 8, seeds 0–2;
#: docs/diagnose.md).
LABEL_FREE_EVIDENCE = (
    "On the tiny regimes only the cross-view agreement of the majorities predicted a gain: 42-47% where "
    "Co-rewarding-I gained 37 points (distractor), 92-96% where it gained 3 (shortcut). Majority share "
    "(58-60% vs 86-88%), answer entropy (1.5 vs 0.4-0.5 bits) and teacher agreement (86-87% vs 93-98%) "
    "differed between the regimes, but majority vote gained in neither; the no-answer rate was near 0 in "
    "both."
)


@dataclass(frozen=True)
class VerdictRules:
    """The thresholds of the verdict (module docstring; their measurements in docs/diagnose.md).

    Attributes:
        gap_share: share of the gap from avg@k to 100% a method's ceiling must close to help (0.5: the
            project's target, half of ground truth's gain).
        min_cross_view_label_accuracy: the cross-view methods' label accuracy today below which their
            wrong labels spread shared errors (0.6).
        min_cross_view_disagreement: without answers, the share of questions whose two wordings'
            majorities differ above which Co-rewarding-I is expected to help (0.25).
    """

    gap_share: float = 0.5
    min_cross_view_label_accuracy: float = 0.6
    min_cross_view_disagreement: float = 0.25


@dataclass(frozen=True)
class MethodVerdict:
    """One method's expected outcome and why, in words with the numbers behind them."""

    method: str
    expected: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """``recommended``: the methods expected to help, best first (possibly none); ``ranking``: every
    label-free method, best first; ``basis``: ``"answers"`` or ``"label-free"``."""

    recommended: list[str]
    ranking: list[str]
    methods: dict[str, MethodVerdict]
    basis: str

    def to_dict(self) -> dict:
        return {
            "recommended": self.recommended, "ranking": self.ranking, "basis": self.basis,
            "methods": {name: asdict(v) for name, v in self.methods.items()},
        }


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _ceiling_verdict(ceiling: float, avg: float, label: str, rules: VerdictRules) -> tuple[str, str]:
    """The expected outcome of a voting reward whose labels can be right on ``ceiling`` of the questions,
    and why."""
    gap, gain = 1 - avg, ceiling - avg
    needed = rules.gap_share * gap
    figures = (
        f"{label} on {_pct(ceiling)} of the questions, one sample on {_pct(avg)} (avg@k): it can close "
        f"{100 * gain:.0f} of the {100 * gap:.0f} points to 100%"
    )
    if gain >= needed:
        return HELPS, f"{figures}, at least the {100 * needed:.0f} needed"
    return SHARPENS, f"{figures}, fewer than the {100 * needed:.0f} needed: it can at most sharpen"


def _cross_view_with_answers(labelled: dict, rules: VerdictRules) -> tuple[str, str]:
    cross = labelled["cross_view"]
    expected, reason = _ceiling_verdict(
        1 - cross["both_wrong"], labelled["question"]["avg_at_k"], "either wording's majority is right", rules
    )
    reason = (
        f"the other wording's majority is right where the own is wrong on {_pct(cross['gain'])} of the "
        f"questions; {reason}"
    )
    label_accuracy = labelled["label_accuracy"]["co_rewarding_i"]
    if expected == HELPS and label_accuracy < rules.min_cross_view_label_accuracy:
        return SHARPENS, (
            f"{reason}; but its labels are right on only {_pct(label_accuracy)} of the rollouts (below "
            f"{_pct(rules.min_cross_view_label_accuracy)}): wrong partner labels would spread the errors "
            "both wordings share"
        )
    return expected, reason


def _cross_view_label_free(free: dict, rules: VerdictRules) -> tuple[str, str]:
    disagreement = 1 - free["cross_view_agreement"]
    words = (
        f"the two wordings' majorities differ on {_pct(disagreement)} of the questions (threshold "
        f"{_pct(rules.min_cross_view_disagreement)})"
    )
    if disagreement >= rules.min_cross_view_disagreement:
        return HELPS, f"{words}: its label carries what self-voting lacks (label-free proxy)"
    return SHARPENS, f"{words}: its label is mostly the own majority, as self-voting's"


def _voting_verdicts(measured: dict, rules: VerdictRules) -> dict[str, tuple[str, str]]:
    """(expected, reason) of majority vote, Co-rewarding-II and the cross-view methods."""
    labelled, free = measured.get("labelled"), measured["label_free"]
    if labelled is not None:
        avg = labelled["question"]["avg_at_k"]
        verdicts = {
            "majority_vote": _ceiling_verdict(
                labelled["question"]["maj_at_k"], avg, "its own majority is right", rules
            ),
            "co_rewarding_ii": _ceiling_verdict(
                labelled["label_accuracy"]["co_rewarding_ii"], avg,
                "the teacher's majority (fresh samples) is right", rules,
            ),
        }
        paired = labelled["cross_view"] is not None
        cross_view = _cross_view_with_answers(labelled, rules) if paired else None
    else:
        unknown = (UNKNOWN, "its labels' accuracy needs reference answers (an answer column, --dataset-columns)")
        verdicts = {"majority_vote": unknown, "co_rewarding_ii": unknown}
        paired = free["cross_view_agreement"] is not None
        cross_view = _cross_view_label_free(free, rules) if paired else None
    for method in _CROSS_VIEW:
        verdicts[method] = cross_view or (UNKNOWN, "needs a rephrasing of each question (--pairs)")
    return verdicts


def judge(measured: dict, rules: VerdictRules = VerdictRules()) -> Verdict:
    """The verdict on ``measured``: ``{"label_free": …, "labelled": … or None, "probe": … or None}``
    (:func:`~corewarding.diagnosis.measurements.label_free_measurements`,
    :func:`~corewarding.diagnosis.measurements.labelled_measurements`,
    :func:`~corewarding.diagnosis.probe.summarize_probe`)."""
    basis = "answers" if measured.get("labelled") is not None else "label-free"
    verdicts = {m: MethodVerdict(m, *v) for m, v in _voting_verdicts(measured, rules).items()}
    for method, runs in _CONFIDENCE.items():
        verdicts[method] = MethodVerdict(
            method, COLLAPSES,
            f"rewards the model's confidence, not an answer: collapsed in {runs} runs of the study, and "
            "nothing measured before training tells when",
        )
    probe = measured.get("probe")
    if probe is not None and probe["collapse"]["collapsed"]:
        collapse = probe["collapse"]
        verdicts["majority_vote"] = MethodVerdict(
            "majority_vote", COLLAPSES,
            f"the probe was flagged at step {collapse['step']} ({', '.join(collapse['reasons'])})",
        )
    ranking = sorted(LABEL_FREE_METHODS, key=lambda m: (_ORDER.index(verdicts[m].expected),
                                                        LABEL_FREE_METHODS.index(m)))
    return Verdict(
        [m for m in ranking if verdicts[m].expected == HELPS], ranking,
        {m: verdicts[m] for m in ranking}, basis,
    )
