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
cooper              σ(reward model score)  (Cooper)             references, a co-trained reward model
cooper_static       σ(reward model score), RM frozen            references, a frozen reward model
==================  =========================================  ==================================

    >>> batch = Rollouts(answers=["4", "4", "5"], question_ids=[0, 0, 0], references=["5"] * 3)
    >>> method_rewards("majority_vote", batch).rewards
    [1.0, 1.0, 0.0]
    >>> METHODS["co_rewarding_ii"].needs_teacher, METHODS["cooper"].reward_model
    (True, 'co_trained')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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

__all__ = ["RewardInputs", "Method", "METHODS", "method_rewards"]


@dataclass(frozen=True)
class RewardInputs:
    """What a reward may read besides the rollouts (each method needs some of it, see :class:`Method`).

    Attributes:
        voting: how answers are matched and votes taken.
        teacher: the teacher's rollouts of the same prompts (``co_rewarding_ii``).
        token_statistics: per-rollout mean self-certainty or mean entropy (the confidence methods).
        reward_model_scores: the reward model's score of each rollout (Cooper).
        no_answer_penalty: ``entropy``'s reward for a rollout without an answer (None: none).
        reward_threshold: Cooper's reward 1[σ(s) ≥ t] instead of σ(s) (None: σ(s)).
    """

    voting: VotingConfig = VotingConfig()
    teacher: Rollouts | None = None
    token_statistics: Sequence[float] | None = None
    reward_model_scores: Sequence[float] | None = None
    no_answer_penalty: float | None = None
    reward_threshold: float | None = None


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
        token_statistic: ``"self_certainty"`` or ``"entropy"`` of the policy on its rollouts, or None.
        reward_model: ``"co_trained"`` (updated each step), ``"frozen"``, or None.
    """

    name: str
    reward: Callable[[Rollouts, RewardInputs], RewardResult]
    label_from: str
    needs_references: bool = False
    paired_views: bool = False
    needs_teacher: bool = False
    token_statistic: str | None = None
    reward_model: str | None = None


def _given(value, what: str, method: str):
    if value is None:
        raise ValueError(f"{method} needs {what}")
    return value


def _teacher_vote(rollouts: Rollouts, inputs: RewardInputs) -> RewardResult:
    return teacher_vote_rewards(
        rollouts, _given(inputs.teacher, "the teacher's rollouts", "co_rewarding_ii"), inputs.voting
    )


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
        Method("majority_vote", lambda r, i: majority_vote_rewards(r, i.voting), "its own group's majority"),
        Method("self_certainty",
               lambda r, i: self_certainty_rewards(
                   r, _given(i.token_statistics, "token statistics", "self_certainty")
               ),
               "the policy's confidence", token_statistic="self_certainty"),
        Method("entropy",
               lambda r, i: entropy_rewards(r, _given(i.token_statistics, "token statistics", "entropy"),
                                            i.no_answer_penalty),
               "the policy's confidence", token_statistic="entropy"),
        Method("co_rewarding_i", lambda r, i: cross_view_rewards(r, i.voting),
               "the other view's majority (the rephrasing's, or the question's)", paired_views=True),
        Method("co_rewarding_ii", _teacher_vote, "an EMA teacher's majority", needs_teacher=True),
        Method("cooper", _cooper("cooper"), "a reward model co-trained with the policy",
               needs_references=True, reward_model="co_trained"),
        Method("cooper_static", _cooper("cooper_static"), "a frozen reward model", needs_references=True,
               reward_model="frozen"),
    )
}


def method_rewards(method: str, rollouts: Rollouts, inputs: RewardInputs = RewardInputs()) -> RewardResult:
    """The reward of a training method (a key of :data:`METHODS`) on a batch."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    return METHODS[method].reward(rollouts, inputs)
