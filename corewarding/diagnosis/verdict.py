"""The verdict: which label-free methods are expected to help a model on its questions, which can at most
sharpen it, which to collapse — rules on :mod:`corewarding.diagnosis.measurements`, pure functions. The
thresholds are fixed, with their date, in docs/diagnose_protocol.md (tests/test_diagnosis.py checks the two
agree).

**The rule with answers.** A voting reward teaches the policy its labels; RL toward them can lift
accuracy at most to the share of questions on which the labels are (or can become) right — the
method's *ceiling*. A method is expected to **help** — the project's target, a gain of at least half of
ground truth's — when its ceiling closes at least ``gap_share`` (½) of the gap from avg@k to 100%::

    helps  ⇔  ceiling − avg@k ≥ gap_share × (1 − avg@k)

with the ceilings

==================================  =========================================================
method                              ceiling
==================================  =========================================================
majority_vote                       maj@k: its own majority's accuracy
co_rewarding_ii                     the fresh samples' majority (the teacher at step 0)
co_rewarding_i, co_rewarding_iii    1 − both_wrong: a question is learnable when either
                                    wording's majority is right
==================================  =========================================================

and one more condition for the cross-view methods: their label accuracy today must be at least
``min_cross_view_label_accuracy`` (60%); below it, wrong partner labels spread the errors both
wordings share. Otherwise the method **can only sharpen**.

**Rules that need no answers** (they hold with answers too, and override the ceilings):

* *The model cannot do these questions* — fewer than ``min_answer_rate`` of the samples have an
  extractable answer, or the mean majority share is at most ``max_chance_majority_share`` (the
  samples agree no more than scattered guesses do), or, with answers, pass@k is below
  ``min_pass_at_k`` (no sample is right, so no vote can be): every voting reward has **no signal**.
  Without answers a model that is consistently wrong (the tiny model on plain-English sums: 0% right,
  47% majority share) is not caught by this rule.
* *Unstable majority* — the teacher agreement (two sample sets of the same wording give the same
  majority) is below ``min_teacher_agreement``: a question's majority is mostly the draw's, and
  rewarding it reinforces whichever answer won. Majority vote and the cross-view methods are expected
  to **collapse**; Co-rewarding-II, whose slowly moving teacher damps that, to sharpen only (the
  ``hard`` regime: teacher agreement about 35%; majority vote and Co-rewarding-I collapsed in 3 of 3
  seeds, Co-rewarding-II in 1 of 3 at step 100).
* *Excess disagreement* (the cross-view methods' only positive rule without answers) — the share of
  questions whose two wordings' majorities differ, *in excess of* the share whose two sample sets of the
  same wording differ::

      excess = (1 − cross_view_agreement) − (1 − teacher_agreement)

  Disagreement across wordings that two draws of one wording show as well is sampling noise; only the
  excess is a label Co-rewarding-I carries and self-voting lacks. Help is expected when
  ``excess ≥ min_excess_disagreement`` (distractor +40 to +44 points; shortcut −1.5 to +2; hard +1.5).
* Without answers majority vote and Co-rewarding-II **sharpen only** when the majority is stable: their
  label is a majority of the question's own wording, which RL can make the one answer, not a right one.

**The probe** (a short majority-vote run). Majority vote is expected to collapse when the collapse
monitor flagged it, when held-out greedy accuracy fell by at least ``max_probe_heldout_drop`` between the
probe's first and last evaluation (with answers), or when the dominant answer's share of the batch rose
by at least ``max_probe_dominant_rise`` between its first and last window (the answers converge on one
value across questions: the collapse signature, measurable without answers).

The confidence rewards (self-certainty, entropy) have no label to measure: they collapsed in 6 of 6 and
4 of 6 runs of the study, and are never recommended. The ranking orders the label-free methods by
expected outcome (helps, sharpens only, unknown, no signal, collapses), then by a fixed precedence
measured in the study: Co-rewarding-I before Co-rewarding-III, Co-rewarding-II before majority vote.
``Verdict.reason`` says in one sentence why the recommendation is what it is, with the numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "HELPS", "SHARPENS", "NO_SIGNAL", "COLLAPSES", "UNKNOWN", "LABEL_FREE_METHODS", "LABEL_FREE_EVIDENCE",
    "VerdictRules", "MethodVerdict", "Verdict", "judge",
]

HELPS, SHARPENS, UNKNOWN, NO_SIGNAL, COLLAPSES = "helps", "sharpens only", "unknown", "no signal", "collapses"
_ORDER = (HELPS, SHARPENS, UNKNOWN, NO_SIGNAL, COLLAPSES)
#: The label-free methods judged, in the ranking's precedence within an outcome.
LABEL_FREE_METHODS = (
    "co_rewarding_i", "co_rewarding_iii", "co_rewarding_ii", "majority_vote", "entropy", "self_certainty",
)
_CROSS_VIEW = ("co_rewarding_i", "co_rewarding_iii")
_VOTING = ("majority_vote", "co_rewarding_ii", *_CROSS_VIEW)
_CONFIDENCE = {"self_certainty": "6 of 6", "entropy": "4 of 6"}
#: What the label-free figures told on the shipped regimes (200 questions, k = 8; docs/diagnose.md).
LABEL_FREE_EVIDENCE = (
    "On the tiny regimes the cross-view disagreement in excess of the same wording's (1 - teacher "
    "agreement) separated them: +40 to +44 points where Co-rewarding-I gained 37 (distractor), -1.5 to +2 "
    "where it gained 3 (shortcut), +1.5 where it collapsed (hard: teacher agreement about 35%, where "
    "majority vote collapsed too). These rules were read on those three regimes: in-sample until "
    "docs/diagnose_protocol.md's validation on fresh regimes."
)


@dataclass(frozen=True)
class VerdictRules:
    """The thresholds of the verdict (module docstring; fixed in docs/diagnose_protocol.md).

    Attributes:
        gap_share: share of the gap from avg@k to 100% a method's ceiling must close to help.
        min_cross_view_label_accuracy: the cross-view methods' label accuracy today below which their
            wrong labels spread shared errors.
        min_excess_disagreement: the cross-view disagreement in excess of the same wording's above which
            Co-rewarding-I is expected to help without answers.
        min_teacher_agreement: the teacher agreement below which a majority is the draw's, not the model's.
        min_answer_rate: the share of samples with an extractable answer below which the model cannot do
            the questions.
        max_chance_majority_share: the mean majority share at or below which the samples agree no more
            than scattered guesses.
        min_pass_at_k: with answers, the share of questions with a right answer among the k samples
            below which the model cannot do the questions.
        max_probe_heldout_drop: the fall of held-out greedy accuracy in the probe that marks collapse.
        max_probe_dominant_rise: the rise of the dominant answer's share in the probe that marks collapse.
    """

    gap_share: float = 0.5
    min_cross_view_label_accuracy: float = 0.6
    min_excess_disagreement: float = 0.2
    min_teacher_agreement: float = 0.6
    min_answer_rate: float = 0.5
    max_chance_majority_share: float = 0.25
    min_pass_at_k: float = 0.05
    max_probe_heldout_drop: float = 0.1
    max_probe_dominant_rise: float = 0.2


@dataclass(frozen=True)
class MethodVerdict:
    """One method's expected outcome and why, in words with the numbers behind them."""

    method: str
    expected: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """``recommended``: the methods expected to help, best first (possibly none); ``ranking``: every
    label-free method, best first; ``basis``: ``"answers"`` or ``"label-free"``; ``reason``: why the
    recommendation is what it is, one sentence with the numbers."""

    recommended: list[str]
    ranking: list[str]
    methods: dict[str, MethodVerdict]
    basis: str
    reason: str

    def to_dict(self) -> dict:
        return {
            "recommended": self.recommended, "ranking": self.ranking, "basis": self.basis,
            "reason": self.reason,
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
    across = 1 - free["cross_view_agreement"]
    within = 1 - free["teacher_agreement"]
    excess = across - within
    words = (
        f"the two wordings' majorities differ on {_pct(across)} of the questions, two draws of the same "
        f"wording on {_pct(within)}: an excess of {100 * excess:+.0f} points (threshold "
        f"{100 * rules.min_excess_disagreement:+.0f})"
    )
    if excess >= rules.min_excess_disagreement:
        return HELPS, f"{words}: its label carries what self-voting lacks (label-free proxy)"
    return SHARPENS, f"{words}: what its label adds to the own majority is sampling noise"


def _voting_verdicts(measured: dict, rules: VerdictRules) -> dict[str, tuple[str, str]]:
    """(expected, reason) of majority vote, Co-rewarding-II and the cross-view methods by their labels."""
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
        cross_view = _cross_view_with_answers(labelled, rules) if labelled["cross_view"] is not None else None
    else:
        share = free["majority_share"]["mean"]
        sharpens = (
            f"its label is a majority of the question's own wording (mean share {_pct(share)}): RL can make "
            "it the one answer, not a right one; whether it is right needs reference answers"
        )
        verdicts = {"majority_vote": (SHARPENS, sharpens), "co_rewarding_ii": (SHARPENS, sharpens)}
        paired = free["cross_view_agreement"] is not None
        cross_view = _cross_view_label_free(free, rules) if paired else None
    for method in _CROSS_VIEW:
        verdicts[method] = cross_view or (
            UNKNOWN, "needs a rephrasing of each question (--pairs FILE, or --pairs auto)"
        )
    return verdicts


def _cannot_do(measured: dict, rules: VerdictRules) -> str | None:
    """Why the model cannot do these questions, or None when it answers them (with answers: rightly on
    some) with some agreement."""
    free, labelled = measured["label_free"], measured.get("labelled")
    if labelled is not None:
        pass_at = labelled["question"]["pass_at_k"]
        k = max(pass_at, key=int)
        if pass_at[k] < rules.min_pass_at_k:
            return (f"a right answer is among its {k} samples on only {_pct(pass_at[k])} of the questions "
                    f"(below {_pct(rules.min_pass_at_k)}): no vote can find it")
    answered, share = 1 - free["no_answer_rate"], free["majority_share"]["mean"]
    if answered < rules.min_answer_rate:
        return (f"only {_pct(answered)} of its samples have an extractable answer (below "
                f"{_pct(rules.min_answer_rate)})")
    if share <= rules.max_chance_majority_share:
        return (f"its samples agree no more than scattered guesses: the majority answer holds {_pct(share)} "
                f"of a question's samples on average (at most {_pct(rules.max_chance_majority_share)})")
    return None


def _probe_collapse(probe: dict | None, rules: VerdictRules) -> str | None:
    """Why the probe shows majority vote collapsing, or None."""
    if probe is None:
        return None
    if probe["collapse"]["collapsed"]:
        collapse = probe["collapse"]
        return f"the probe was flagged at step {collapse['step']} ({', '.join(collapse['reasons'])})"
    first_last = probe.get("first_last", {})
    heldout = first_last.get("eval_greedy_accuracy")
    if heldout is not None and heldout[0] - heldout[1] >= rules.max_probe_heldout_drop:
        return (f"held-out greedy accuracy fell {_pct(heldout[0])} → {_pct(heldout[1])} in the probe's "
                f"{probe['steps']} steps (a drop of {_pct(rules.max_probe_heldout_drop)} or more)")
    dominant = first_last.get("dominant_answer_share")
    if dominant is not None and dominant[1] - dominant[0] >= rules.max_probe_dominant_rise:
        return (f"the dominant answer's share of the batch rose {_pct(dominant[0])} → {_pct(dominant[1])} "
                f"in the probe's {probe['steps']} steps (a rise of {_pct(rules.max_probe_dominant_rise)} "
                "or more)")
    return None


def _overrides(measured: dict, rules: VerdictRules) -> dict[str, tuple[str, str]]:
    """The verdicts the rules that need no answers and the probe impose, over the label-based ones."""
    free = measured["label_free"]
    cannot = _cannot_do(measured, rules)
    if cannot is not None:
        return {m: (NO_SIGNAL, f"the model cannot do these questions: {cannot}") for m in _VOTING}
    overrides = {}
    agreement = free["teacher_agreement"]
    if agreement < rules.min_teacher_agreement:
        unstable = (
            f"two sample sets of the same wording give the same majority on only {_pct(agreement)} of the "
            f"questions (below {_pct(rules.min_teacher_agreement)}): the majority is the draw's"
        )
        # The cross-view methods' label is the rephrasing's majority: judged only where it was sampled.
        paired = free["cross_view_agreement"] is not None
        for method in ("majority_vote", *(_CROSS_VIEW if paired else ())):
            overrides[method] = (COLLAPSES, f"{unstable}, and rewarding it reinforces whichever answer won")
        overrides["co_rewarding_ii"] = (
            SHARPENS, f"{unstable}; its slowly updated teacher damps the self-reinforcement: sharpens at most"
        )
    probe = _probe_collapse(measured.get("probe"), rules)
    if probe is not None:
        overrides["majority_vote"] = (COLLAPSES, probe)
    return overrides


def _recommendation_reason(ranking: list[str], verdicts: dict[str, MethodVerdict]) -> str:
    """Why the best-ranked voting method is (or, when none helps, is not) recommended."""
    best = verdicts[next(m for m in ranking if m in _VOTING)]
    if best.expected == HELPS:
        return f"{best.method} is expected to help: {best.reason}"
    return f"none, because the best-ranked voting method, {best.method}, {best.expected}: {best.reason}"


def judge(measured: dict, rules: VerdictRules = VerdictRules()) -> Verdict:
    """The verdict on ``measured``: ``{"label_free": …, "labelled": … or None, "probe": … or None}``
    (:func:`~corewarding.diagnosis.measurements.label_free_measurements`,
    :func:`~corewarding.diagnosis.measurements.labelled_measurements`,
    :func:`~corewarding.diagnosis.probe.summarize_probe`)."""
    basis = "answers" if measured.get("labelled") is not None else "label-free"
    outcomes = _voting_verdicts(measured, rules) | _overrides(measured, rules)
    verdicts = {m: MethodVerdict(m, *v) for m, v in outcomes.items()}
    for method, runs in _CONFIDENCE.items():
        verdicts[method] = MethodVerdict(
            method, COLLAPSES,
            f"rewards the model's confidence, not an answer: collapsed in {runs} runs of the study, and "
            "nothing measured before training tells when",
        )
    ranking = sorted(LABEL_FREE_METHODS, key=lambda m: (_ORDER.index(verdicts[m].expected),
                                                        LABEL_FREE_METHODS.index(m)))
    recommended = [m for m in ranking if verdicts[m].expected == HELPS]
    return Verdict(
        recommended, ranking, {m: verdicts[m] for m in ranking}, basis,
        _recommendation_reason(ranking, verdicts),
    )
