"""The one table of training methods: each method's reward function and what computing it needs.

Adding a method is one :class:`Method` entry here plus its reward function in
:mod:`corewarding.core.rewards`; the config, the trainer, the demo and the recipes read this table.

==================  =========================================  ==================================
method              reward of a rollout                         needs
==================  =========================================  ==================================
ground_truth        1[answer ≡ reference]  (RLVR / GT-GRPO)     references
majority_vote       1[answer = its group's majority]  (TTRL)    –
self_certainty      mean_t KL(U ‖ p_t)  (Intuitor)              the policy's token statistics
entropy             −mean_t H(p_t)  (RENT / EM-RL)              the policy's token statistics
co_rewarding_i      1[answer ≡ the other view's majority]       (question, rephrasing) pairs
co_rewarding_ii     1[answer ≡ the EMA teacher's majority]      a teacher
co_rewarding_iii    1[answer ≡ the teacher's majority on the    a teacher, (question, rephrasing)
                    rephrasing]  (the authors' later code)      pairs; only questions trained
cooper              σ(reward model score)  (Cooper)             references, a co-trained reward model
cooper_static       σ(reward model score), RM frozen            references, a frozen reward model
==================  =========================================  ==================================

    >>> batch = Rollouts(answers=["4", "4", "5"], question_ids=[0, 0, 0], references=["5"] * 3)
    >>> method_rewards("majority_vote", batch).rewards
    [1.0, 1.0, 0.0]
    >>> METHODS["co_rewarding_ii"].needs_teacher, METHODS["cooper"].reward_model
    (True, 'co_trained')

Two settings apply to every method, through :class:`RewardInputs`:

* **semi-supervised** (``labelled``): the rollouts of labelled questions get the ground-truth reward, the
  others the method's; the labelled part's metrics are logged as ``labelled/…`` (:func:`is_labelled`
  picks a share of the questions, deterministically).
* **vote budget** (``extra_votes``): the voting methods take their majority over N > G samples of a
  prompt, of which only G are trained on (TTRL votes over 64 and trains on 16).

    >>> inputs = RewardInputs(labelled=[True, True, True, False, False, False])
    >>> batch = Rollouts(answers=["5", "4", "4", "7", "7", "8"], question_ids=[0, 0, 0, 1, 1, 1],
    ...                  references=["5", "5", "5", "8", "8", "8"])
    >>> method_rewards("majority_vote", batch, inputs).rewards    # question 0 labelled, question 1 voted
    [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

from corewarding.core.rewards import (
    RewardResult,
    Rollouts,
    cooper_rewards,
    cross_view_rewards,
    entropy_rewards,
    ground_truth_rewards,
    majority_vote_rewards,
    self_certainty_rewards,
    teacher_vote_rewards,
)
from corewarding.core.voting import VotingConfig

__all__ = ["RewardInputs", "Method", "METHODS", "method_rewards", "is_labelled"]


@dataclass(frozen=True)
class RewardInputs:
    """What a reward may read besides the rollouts (each method needs some of it, see :class:`Method`).

    Attributes:
        voting: how answers are matched and votes taken.
        teacher: the teacher's rollouts of the same prompts (``co_rewarding_ii`` / ``_iii``), any number
            per prompt.
        token_statistics: per-rollout mean self-certainty or mean entropy (the confidence methods).
        reward_model_scores: the reward model's score of each rollout (Cooper).
        no_answer_penalty: ``entropy``'s reward for a rollout without an answer (None: none).
        reward_threshold: Cooper's reward 1[σ(s) ≥ t] instead of σ(s) (None: σ(s)).
        extra_votes: the policy's samples of the same prompts drawn only to vote (the vote budget).
        labelled: per rollout, whether its question is rewarded against its reference (semi-supervised).
    """

    voting: VotingConfig = VotingConfig()
    teacher: Rollouts | None = None
    token_statistics: Sequence[float] | None = None
    reward_model_scores: Sequence[float] | None = None
    no_answer_penalty: float | None = None
    reward_threshold: float | None = None
    extra_votes: Rollouts | None = None
    labelled: Sequence[bool] | None = None


@dataclass(frozen=True)
class Method:
    """A training method.

    Attributes:
        name: the name configs, recipes and metrics use.
        reward: ``(rollouts, inputs) -> RewardResult``.
        label_from: where the supervision comes from, in words (for tables and help texts).
        needs_references: the reward reads the reference answers (labelled data only).
        paired_views: trains on both views of each (question, rephrasing) pair, adjacent in a batch.
        needs_teacher: an EMA teacher samples G answers per prompt (``RewardInputs.teacher``).
        teacher_on_rephrasing: the teacher samples each question's rephrasing instead of the question
            (the dataset carries it beside the question: ``teacher_prompt``).
        votes_on_own_samples: the label is a majority of the policy's own samples, so a vote budget
            draws more of them (``RewardInputs.extra_votes``); a teacher's vote draws more teacher samples.
        token_statistic: ``"self_certainty"`` or ``"entropy"`` of the policy on its rollouts, or None.
        reward_model: ``"co_trained"`` (updated each step), ``"frozen"``, or None.
    """

    name: str
    reward: Callable[[Rollouts, RewardInputs], RewardResult]
    label_from: str
    needs_references: bool = False
    paired_views: bool = False
    needs_teacher: bool = False
    teacher_on_rephrasing: bool = False
    votes_on_own_samples: bool = False
    token_statistic: str | None = None
    reward_model: str | None = None


def _given(value, what: str, method: str):
    if value is None:
        raise ValueError(f"{method} needs {what}")
    return value


def _teacher_vote(name: str) -> Callable[[Rollouts, RewardInputs], RewardResult]:
    def reward(rollouts: Rollouts, inputs: RewardInputs) -> RewardResult:
        teacher = _given(inputs.teacher, "the teacher's rollouts", name)
        return teacher_vote_rewards(rollouts, teacher, inputs.voting)

    return reward


def _cooper(name: str) -> Callable[[Rollouts, RewardInputs], RewardResult]:
    def reward(rollouts: Rollouts, inputs: RewardInputs) -> RewardResult:
        scores = _given(inputs.reward_model_scores, "the reward model's scores", name)
        return cooper_rewards(rollouts, scores, inputs.reward_threshold)

    return reward


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("ground_truth", lambda r, i: ground_truth_rewards(r), "the dataset's reference answers",
               needs_references=True),
        Method("majority_vote", lambda r, i: majority_vote_rewards(r, i.voting, i.extra_votes),
               "its own group's majority", votes_on_own_samples=True),
        Method("self_certainty",
               lambda r, i: self_certainty_rewards(
                   r, _given(i.token_statistics, "token statistics", "self_certainty")
               ),
               "the policy's confidence", token_statistic="self_certainty"),
        Method("entropy",
               lambda r, i: entropy_rewards(r, _given(i.token_statistics, "token statistics", "entropy"),
                                            i.no_answer_penalty),
               "the policy's confidence", token_statistic="entropy"),
        Method("co_rewarding_i", lambda r, i: cross_view_rewards(r, i.voting, i.extra_votes),
               "the other view's majority (the rephrasing's, or the question's)", paired_views=True,
               votes_on_own_samples=True),
        Method("co_rewarding_ii", _teacher_vote("co_rewarding_ii"),
               "an EMA teacher's majority", needs_teacher=True),
        Method("co_rewarding_iii", _teacher_vote("co_rewarding_iii"),
               "an EMA teacher's majority on the rephrasing", needs_teacher=True, teacher_on_rephrasing=True),
        Method("cooper", _cooper("cooper"), "a reward model co-trained with the policy",
               needs_references=True, reward_model="co_trained"),
        Method("cooper_static", _cooper("cooper_static"), "a frozen reward model", needs_references=True,
               reward_model="frozen"),
    )
}


def method_rewards(method: str, rollouts: Rollouts, inputs: RewardInputs = RewardInputs()) -> RewardResult:
    """The reward of a training method (a key of :data:`METHODS`) on a batch; with ``inputs.labelled``,
    semi-supervised: the labelled questions' rollouts get the ground-truth reward."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    reward = METHODS[method].reward
    if inputs.labelled is None:
        return reward(rollouts, inputs)
    if len(inputs.labelled) != len(rollouts):
        raise ValueError(f"labelled: {len(inputs.labelled)} flags for {len(rollouts)} rollouts")
    labelled = [i for i, flag in enumerate(inputs.labelled) if flag]
    voted = [i for i, flag in enumerate(inputs.labelled) if not flag]
    rewards = [0.0] * len(rollouts)
    labels: list[str | None] = [None] * len(rollouts)
    metrics = {"labelled_share": len(labelled) / len(rollouts)}
    if labelled:
        truth = ground_truth_rewards(rollouts.select(labelled))
        for i, value in zip(labelled, truth.rewards):
            rewards[i], labels[i] = value, rollouts.references[i]
        metrics.update({f"labelled/{k}": v for k, v in truth.metrics.items()})
    if not voted:
        return RewardResult(rewards, labels, metrics)
    questions = {rollouts.question_ids[i] for i in voted}
    part = reward(rollouts.select(voted), _restricted(inputs, voted, questions))
    for n, i in enumerate(voted):
        rewards[i] = part.rewards[n]
        labels[i] = part.labels[n] if part.labels is not None else None
    # The unprefixed metrics stay the label-free part's: label accuracy is the pseudo-labels' accuracy.
    return RewardResult(rewards, labels if part.labels is not None else None, {**part.metrics, **metrics})


def _restricted(inputs: RewardInputs, positions: Sequence[int], questions: set[Hashable]) -> RewardInputs:
    """The inputs of the rollouts at ``positions`` (per-rollout lists) and of ``questions`` (sample sets)."""

    def pick(values):
        return None if values is None else [values[i] for i in positions]

    def keep(sample: Rollouts | None) -> Rollouts | None:
        if sample is None:
            return None
        return sample.select([i for i, q in enumerate(sample.question_ids) if q in questions])

    return replace(
        inputs, teacher=keep(inputs.teacher), extra_votes=keep(inputs.extra_votes),
        token_statistics=pick(inputs.token_statistics), reward_model_scores=pick(inputs.reward_model_scores),
        labelled=None,
    )


def is_labelled(question_id: Hashable, fraction: float, seed: int = 0) -> bool:
    """Whether a question is in the labelled share ``fraction`` of a semi-supervised run: a hash of the
    seed and the question's id, so the choice is the same in every process and on every step, and a
    question and its rephrasing are labelled together.

    >>> sum(is_labelled(q, 0.25) for q in range(1000))
    250
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the labelled fraction must be in [0, 1], got {fraction}")
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64
