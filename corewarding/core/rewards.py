"""Every reward of the paper as a pure function of a batch of rollout groups (:mod:`corewarding.core.methods`
maps method names to them).

A batch is a flat :class:`Rollouts`: one entry per rollout, with the question it answers and its
view (0 = original question, 1 = rephrasing). A *group* is the G rollouts of one prompt, keyed by
``(question_id, view)``; group members need not be contiguous. Each reward function returns a
:class:`RewardResult`: per-rollout rewards, the per-rollout pseudo-label it rewarded against (for
the voting methods), and diagnostics.

==========================  ==================================================================
function                    reward of rollout y_i of prompt x (paper's name)
==========================  ==================================================================
ground_truth_rewards        1[ans(y_i) ≡ reference]                 (RLVR / GT-GRPO)
majority_vote_rewards       1[ans(y_i) = maj{ans(y_1..y_G)}]         (TTRL / SRT majority voting)
cross_view_rewards          1[ans(y_i) ≡ maj{ans(y'_1..y'_G)}] of the other view   (Co-rewarding-I)
teacher_vote_rewards        1[ans(y_i) ≡ maj{ans(ỹ_1..ỹ_G)}] of the teacher's rollouts (Co-rewarding-II;
                            Co-rewarding-III: the teacher's rollouts of the rephrasing)
self_certainty_rewards      mean_t KL(U ‖ p_t), given per rollout    (Intuitor)
entropy_rewards             −mean_t H(p_t), optional no-answer penalty  (RENT / EM-RL)
cooper_rewards              σ(s_i), s_i the reward model's score of (x, reference, y_i)   (Cooper)
format_rewards              1[an answer can be extracted]
==========================  ==================================================================

A group whose label is None (no rollout of the labelling group answered, or agreement below the
voting minimum) gives all its rollouts reward 0 and is counted in ``no_label_rate``.

Diagnostics (never used for the reward) when references are given, always judged by math
equivalence whatever matching the vote uses: ``label_accuracy`` (share of
groups whose pseudo-label matches the reference; a missing label counts as wrong),
``reward_accuracy`` (share of rollouts whose pseudo-reward equals the ground-truth reward) and
``rollout_accuracy`` (share of rollouts that are correct). Always: ``no_answer_rate`` (share of
rollouts without an answer) and ``dominant_answer_share`` (share of all rollouts giving the batch's
most common answer, across questions); with the questions' text, ``answer_in_question_share`` (share of
rollouts whose answer is a number written in their question); for voting methods ``majority_ratio``
(mean share of the labelling group in its winning answer) and ``no_label_rate``.

Pure, except for one documented side effect: comparing answers that are not plain numbers or notation
variants asks math-verify, through the process's shared
:func:`~corewarding.core.equivalence.default_checker`, which starts its two worker processes on first
use (once per process; they stop at exit). Replace it with
:func:`~corewarding.core.equivalence.set_default_checker`.

Worked example (Co-rewarding-I; the original's rollouts mostly say 4, the rephrasing's say 5)::

    >>> batch = Rollouts(answers=["4", "4", "5", "5", "5", "4"], question_ids=[0] * 6,
    ...                  views=[0, 0, 0, 1, 1, 1], references=["5"] * 6)
    >>> result = cross_view_rewards(batch)
    >>> result.rewards                       # the original is rewarded against the rephrasing's 5
    [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    >>> result.labels
    ['5', '5', '5', '4', '4', '4']
    >>> result.metrics["label_accuracy"], result.metrics["view_agreement"]
    (0.5, 0.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from math import exp
from statistics import fmean

from corewarding.core.answers import answer_in_question_share, canonical_answer
from corewarding.core.equivalence import answers_match
from corewarding.core.voting import Vote, VotingConfig, majority_votes

__all__ = [
    "Rollouts",
    "RewardResult",
    "ground_truth_rewards",
    "majority_vote_rewards",
    "cross_view_rewards",
    "teacher_vote_rewards",
    "self_certainty_rewards",
    "entropy_rewards",
    "cooper_rewards",
    "within_group_auc",
    "format_rewards",
    "RENT_NO_ANSWER_PENALTY",
]

#: The fixed reward RENT gives a rollout with no extractable answer.
RENT_NO_ANSWER_PENALTY = -7.0

GroupKey = tuple[Hashable, int]


@dataclass(frozen=True)
class Rollouts:
    """A flat batch of rollouts.

    Attributes:
        answers: ``ans(y)`` of each rollout (see :func:`corewarding.core.answers.extract_answer`), None
            when absent.
        question_ids: the question each rollout answers; a question and its rephrasing share it.
        views: 0 for the original question, 1 for its rephrasing; all 0 when omitted.
        references: the hidden reference answer of each rollout's question, or None. Used by
            ``ground_truth_rewards`` and by diagnostics only.
        questions: the text of each rollout's prompt, or None. Used by the label-free diagnostic
            ``answer_in_question_share`` only.
    """

    answers: Sequence[str | None]
    question_ids: Sequence[Hashable]
    views: Sequence[int] | None = None
    references: Sequence[str | None] | None = None
    questions: Sequence[str | None] | None = None

    def __post_init__(self):
        n = len(self.answers)
        for name in ("question_ids", "views", "references", "questions"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"Rollouts.{name} has {len(values)} entries for {n} answers")
        if self.views is not None and any(v not in (0, 1) for v in self.views):
            raise ValueError("Rollouts.views must hold 0 (original) or 1 (rephrasing)")

    def __len__(self) -> int:
        return len(self.answers)

    def view(self, i: int) -> int:
        return 0 if self.views is None else self.views[i]

    def select(self, members: Sequence[int]) -> Rollouts:
        """The rollouts at positions ``members``, in that order."""

        def pick(values):
            return None if values is None else [values[i] for i in members]

        return Rollouts(
            answers=pick(self.answers),
            question_ids=pick(self.question_ids),
            views=pick(self.views),
            references=pick(self.references),
            questions=pick(self.questions),
        )

    def groups(self) -> dict[GroupKey, list[int]]:
        """Group key → rollout positions, in order of first appearance."""
        groups: dict[GroupKey, list[int]] = {}
        for i, q in enumerate(self.question_ids):
            groups.setdefault((q, self.view(i)), []).append(i)
        return groups

    def group_answers(self, groups: Mapping[GroupKey, list[int]]) -> list[list[str | None]]:
        return [[self.answers[i] for i in members] for members in groups.values()]


@dataclass
class RewardResult:
    """Per-rollout rewards, the pseudo-label each was rewarded against, and diagnostics."""

    rewards: list[float]
    labels: list[str | None] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _no_answer_rate(rollouts: Rollouts) -> float:
    return fmean(a is None for a in rollouts.answers) if len(rollouts) else 0.0


def _answer_metrics(rollouts: Rollouts) -> dict[str, float]:
    """``no_answer_rate``; ``dominant_answer_share``: the share of all rollouts, across questions,
    giving the batch's most common answer (canonical string). Different questions have different
    answers, so a share near 1 means the policy answers everything alike: a collapse signature. With the
    questions' text, ``answer_in_question_share``: the share of all rollouts whose answer is a number
    written in their question (:func:`~corewarding.core.answers.answer_in_question_share`), near 1 when the policy
    answers by echoing the question, another collapse that agreement rewards."""
    counts = Counter(canonical_answer(a) for a in rollouts.answers if a is not None)
    metrics = {
        "no_answer_rate": _no_answer_rate(rollouts),
        "dominant_answer_share": max(counts.values()) / len(rollouts) if counts else 0.0,
    }
    if rollouts.questions is not None and len(rollouts):
        metrics["answer_in_question_share"] = answer_in_question_share(rollouts.answers, rollouts.questions)
    return metrics


def _correct(rollouts: Rollouts) -> list[bool] | None:
    """Ground-truth correctness of each rollout, or None when the batch has no references.

    Always by math equivalence: diagnostics measure the truth, whatever matching the vote uses.
    """
    if rollouts.references is None or all(r is None for r in rollouts.references):
        return None
    return answers_match(list(zip(rollouts.references, rollouts.answers)))


def _rewards_against_labels(
    rollouts: Rollouts,
    labels: Mapping[GroupKey, str | None],
    label_votes: Mapping[GroupKey, Vote | None],
    voting: VotingConfig,
    hits: Sequence[bool] | None = None,
) -> RewardResult:
    """Reward 1 for a rollout whose answer matches its group's label; diagnostics of the labels.

    ``label_votes`` holds the vote each label came from (None for ground truth); ``hits`` may give
    the matches already known (majority voting knows its winning cluster).
    """
    groups = rollouts.groups()
    per_rollout_label: list[str | None] = [None] * len(rollouts)
    for key, members in groups.items():
        for i in members:
            per_rollout_label[i] = labels.get(key)
    if hits is None:
        hits = answers_match(list(zip(per_rollout_label, rollouts.answers)), mode=voting.matching)
    rewards = [float(h) for h in hits]

    metrics = {
        **_answer_metrics(rollouts),
        "no_label_rate": fmean(labels.get(k) is None for k in groups) if groups else 0.0,
    }
    votes = [label_votes.get(k) for k in groups]
    if any(v is not None for v in votes):
        metrics["majority_ratio"] = fmean(v.ratio if v is not None else 0.0 for v in votes)

    correct = _correct(rollouts)
    if correct is not None:
        keys = list(groups)
        references = [rollouts.references[groups[k][0]] for k in keys]
        label_correct = answers_match([(r, labels.get(k)) for r, k in zip(references, keys)])
        metrics["label_accuracy"] = fmean(label_correct)
        metrics["reward_accuracy"] = fmean(h == c for h, c in zip(hits, correct))
        metrics["rollout_accuracy"] = fmean(correct)
    return RewardResult(rewards, per_rollout_label, metrics)


def ground_truth_rewards(rollouts: Rollouts) -> RewardResult:
    """RLVR: 1[ans(y_i) ≡ reference], by math equivalence. A rollout whose question has no reference
    gets 0."""
    if rollouts.references is None:
        raise ValueError("ground_truth_rewards needs reference answers (Rollouts.references)")
    labels = {key: rollouts.references[members[0]] for key, members in rollouts.groups().items()}
    return _rewards_against_labels(rollouts, labels, {}, VotingConfig())


def _group_votes(
    rollouts: Rollouts, voting: VotingConfig, extra: Rollouts | None = None
) -> dict[GroupKey, Vote]:
    """Each group's vote over its rollouts' answers, then the answers ``extra`` holds for the same group
    (the vote budget: samples drawn only to vote, never trained on)."""
    groups = rollouts.groups()
    extra_groups = extra.groups() if extra is not None else {}
    answers = [
        rollouts.group_answers({key: members})[0] + [extra.answers[j] for j in extra_groups.get(key, [])]
        for key, members in groups.items()
    ]
    return dict(zip(groups, majority_votes(answers, voting)))


def majority_vote_rewards(
    rollouts: Rollouts, voting: VotingConfig = VotingConfig(), extra: Rollouts | None = None
) -> RewardResult:
    """Self-consistency (TTRL / SRT): 1[ans(y_i) = maj{ans(y_1..y_G)}] within each group.

    With ``extra`` (more samples of the same prompts, TTRL's vote over N > G), the majority is taken
    over the G rollouts and the extra ones: maj{ans(y_1..y_N)}; only the G rollouts are rewarded.
    """
    groups = rollouts.groups()
    votes = _group_votes(rollouts, voting, extra)
    hits = [False] * len(rollouts)
    for key, members in groups.items():
        for position in votes[key].members:
            if position < len(members):  # the extra samples vote but are not rewarded
                hits[members[position]] = True
    labels = {key: vote.label for key, vote in votes.items()}
    return _rewards_against_labels(rollouts, labels, votes, voting, hits)


def cross_view_rewards(
    rollouts: Rollouts, voting: VotingConfig = VotingConfig(), extra: Rollouts | None = None
) -> RewardResult:
    """Co-rewarding-I: each view's rollouts are rewarded against the majority answer of the other view.

    Rollouts of x get 1[ans(y_i) ≡ v'] with v' = maj{ans(y'_j)} over the rephrasing's rollouts, and
    rollouts of x' get 1[ans(y'_i) ≡ v] with v = maj{ans(y_j)}. A group whose other view is missing
    from the batch has no label. ``extra``: samples that only vote (see :func:`majority_vote_rewards`).
    Besides the common diagnostics, reports them per view (``original/…``, ``rephrased/…``) and
    ``view_agreement``: the share of pairs whose two views' majorities match.
    """
    groups = rollouts.groups()
    votes = _group_votes(rollouts, voting, extra)
    partner_votes = {(q, v): votes.get((q, 1 - v)) for q, v in groups}
    labels = {key: vote.label if vote is not None else None for key, vote in partner_votes.items()}
    result = _rewards_against_labels(rollouts, labels, partner_votes, voting)
    _per_view_metrics(rollouts, result, labels, partner_votes, voting)

    pairs = [q for q, v in groups if v == 0 and (q, 1) in groups]
    if pairs:
        agree = answers_match(
            [(votes[(q, 0)].label, votes[(q, 1)].label) for q in pairs], mode=voting.matching
        )
        result.metrics["view_agreement"] = fmean(agree)
    return result


def _per_view_metrics(
    rollouts: Rollouts, result: RewardResult, labels: Mapping, label_votes: Mapping, voting: VotingConfig
) -> None:
    """Add the diagnostics of each view's rollouts (``original/…``, ``rephrased/…``) to ``result``."""
    for view, name in ((0, "original"), (1, "rephrased")):
        members = [i for i in range(len(rollouts)) if rollouts.view(i) == view]
        if not members:
            continue
        subset = rollouts.select(members)
        sub_labels = {k: lab for k, lab in labels.items() if k[1] == view}
        sub_votes = {k: vt for k, vt in label_votes.items() if k[1] == view}
        part = _rewards_against_labels(
            subset, sub_labels, sub_votes, voting, [result.rewards[i] == 1.0 for i in members]
        )
        result.metrics.update({f"{name}/{k}": v for k, v in part.metrics.items()})
        result.metrics[f"{name}/reward"] = fmean(result.rewards[i] for i in members)


def teacher_vote_rewards(
    rollouts: Rollouts, teacher: Rollouts, voting: VotingConfig = VotingConfig()
) -> RewardResult:
    """Co-rewarding-II: policy rollouts of x are rewarded against ṽ = maj{ans(ỹ_j)} of the teacher's.

    ``teacher`` holds the teacher's rollouts of the same prompts (same question ids and views), any
    number per prompt (the vote budget samples more than G). ``majority_ratio`` and ``label_accuracy``
    describe the teacher's vote; ``teacher_policy_agreement`` is the share of groups whose policy
    majority matches the teacher's label, and ``teacher/no_answer_rate`` the teacher's share of
    rollouts without an answer. **Co-rewarding-III** (the authors' later code) is the same reward with the
    teacher's rollouts sampled on the rephrasing x' and carried under x's question id and view.
    """
    teacher_groups = teacher.groups()
    teacher_votes = dict(zip(teacher_groups, majority_votes(teacher.group_answers(teacher_groups), voting)))
    groups = rollouts.groups()
    label_votes = {group: teacher_votes.get(group) for group in groups}
    labels = {key: vote.label if vote is not None else None for key, vote in label_votes.items()}
    result = _rewards_against_labels(rollouts, labels, label_votes, voting)

    policy_votes = majority_votes(rollouts.group_answers(groups), voting)
    agree = answers_match(
        [(labels[k], pv.label) for k, pv in zip(groups, policy_votes)], mode=voting.matching
    )
    result.metrics["teacher_policy_agreement"] = fmean(agree) if agree else 0.0
    result.metrics["teacher/no_answer_rate"] = _no_answer_rate(teacher)
    return result


def _per_rollout_rewards(rollouts: Rollouts, values: Sequence[float], name: str) -> RewardResult:
    if len(values) != len(rollouts):
        raise ValueError(f"{name}: {len(values)} values for {len(rollouts)} rollouts")
    metrics = _answer_metrics(rollouts)
    correct = _correct(rollouts)
    if correct is not None:
        metrics["rollout_accuracy"] = fmean(correct)
    return RewardResult([float(v) for v in values], None, metrics)


def self_certainty_rewards(rollouts: Rollouts, self_certainty: Sequence[float]) -> RewardResult:
    """Intuitor's self-certainty: the mean over response tokens of KL(U ‖ p_t).

    ``self_certainty`` holds that mean per rollout, computed from the policy's logits without
    gradient (:func:`corewarding.training.token_statistics.self_certainty`). It does not look at the answer.
    """
    result = _per_rollout_rewards(rollouts, self_certainty, "self_certainty_rewards")
    result.metrics["self_certainty"] = fmean(result.rewards) if result.rewards else 0.0
    return result


def entropy_rewards(
    rollouts: Rollouts,
    mean_entropy: Sequence[float],
    no_answer_penalty: float | None = None,
) -> RewardResult:
    """Entropy minimisation (RENT / EM-RL): reward −mean_t H(p_t) of the response.

    With ``no_answer_penalty`` set (RENT uses :data:`RENT_NO_ANSWER_PENALTY` = −7), a rollout
    without an extractable answer gets that fixed reward instead.
    """
    values = [-h for h in mean_entropy]
    if no_answer_penalty is not None:
        values = [no_answer_penalty if a is None else v for a, v in zip(rollouts.answers, values)]
    result = _per_rollout_rewards(rollouts, values, "entropy_rewards")
    result.metrics["mean_entropy"] = fmean(mean_entropy) if len(mean_entropy) else 0.0
    return result


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + exp(-x)) if x >= 0 else exp(x) / (1.0 + exp(x))


def cooper_rewards(
    rollouts: Rollouts, scores: Sequence[float], threshold: float | None = None
) -> RewardResult:
    """Cooper: r_i = σ(s_i), s_i the reference-based reward model's score of rollout i; with a
    ``threshold`` t, r_i = 1[σ(s_i) ≥ t].

    Diagnostics against the rule-based verifier (the ground-truth reward, when references are given):
    ``rm/rule_agreement``, the share of rollouts where the reward model's verdict σ(s_i) ≥ t (t = 0.5
    without a threshold) equals the verifier's; ``rm/false_positive_rate``, the share of the rollouts
    the verifier rejects that the reward model accepts (what reward hacking raises); ``rm/group_auc``,
    :func:`within_group_auc` of the scores (the part of the reward that GRPO's advantages see).

    >>> batch = Rollouts(answers=["5", "4", None], question_ids=[0, 0, 0], references=["5"] * 3)
    >>> result = cooper_rewards(batch, [2.0, 0.0, -2.0])
    >>> [round(r, 3) for r in result.rewards]
    [0.881, 0.5, 0.119]
    >>> [result.metrics[f"rm/{name}"] for name in ("rule_agreement", "false_positive_rate", "group_auc")]
    [0.6666666666666666, 0.5, 1.0]
    """
    probabilities = [_sigmoid(s) for s in scores]
    cut = 0.5 if threshold is None else threshold
    accepted = [p >= cut for p in probabilities]
    values = probabilities if threshold is None else [float(a) for a in accepted]
    result = _per_rollout_rewards(rollouts, values, "cooper_rewards")
    correct = _correct(rollouts)
    if correct is not None:
        result.metrics["rm/rule_agreement"] = fmean(a == c for a, c in zip(accepted, correct))
        wrong = [a for a, c in zip(accepted, correct) if not c]
        if wrong:
            result.metrics["rm/false_positive_rate"] = fmean(wrong)
        group_auc = within_group_auc(scores, correct, list(rollouts.groups().values()))
        if group_auc is not None:
            result.metrics["rm/group_auc"] = group_auc
    return result


def within_group_auc(
    scores: Sequence[float], accepted: Sequence[bool], groups: Sequence[Sequence[int]]
) -> float | None:
    """The share of (accepted, rejected) pairs *within a group* that ``scores`` order right (ties: half).

    GRPO normalises rewards within each group, so only these orderings move the policy: a reward
    model can separate easy questions from hard ones (a high AUC over the batch) and still order
    the rollouts of one question at random. None when no group has both kinds of rollouts.

    >>> scores, accepted = [0.9, 0.1, 0.5, 0.2, 0.8], [True, False, True, True, False]
    >>> within_group_auc(scores, accepted, [[0, 1], [2, 3, 4]])  # 0.9 > 0.1 right; 0.5, 0.2 < 0.8 wrong
    0.3333333333333333
    """
    right = pairs = 0.0
    for members in groups:
        positives = [scores[i] for i in members if accepted[i]]
        negatives = [scores[i] for i in members if not accepted[i]]
        right += sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
        pairs += len(positives) * len(negatives)
    return right / pairs if pairs else None


def format_rewards(rollouts: Rollouts) -> RewardResult:
    """1 when a final answer can be extracted (a non-empty ``\\boxed{}`` or ``####`` line), else 0."""
    rewards = [float(a is not None) for a in rollouts.answers]
    return RewardResult(rewards, None, _answer_metrics(rollouts))
