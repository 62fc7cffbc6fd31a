"""Cooper's co-training (cooper/co_training.py): which pairs a batch gives, the samples shown, and
the reward model's updates and checkpoints."""

import copy

import pytest
import torch

from corewarding.cooper.co_training import CooperRewardModel, Pair, select_pairs, telling_samples
from corewarding.cooper.reward_model import RewardModel, reward_model_text
from corewarding.data.synthetic import chain_of, generate_problems, worked_solution


def test_a_group_with_only_right_or_only_wrong_rollouts_gives_no_pair():
    scores = [0.0] * 4
    assert select_pairs([[0, 1, 2, 3]], [True] * 4, scores).pairs == []
    assert select_pairs([[0, 1, 2, 3]], [False] * 4, scores).skipped_groups == 1


def test_a_mixed_group_pairs_its_worst_ordered_rollouts():
    # the accepted rollout scored lowest (3) against the rejected rollout scored highest (1)
    selection = select_pairs([[0, 1, 2, 3]], [True, False, False, True], [5.0, 2.0, -1.0, 0.5])
    assert selection.pairs == [Pair(positive=3, negative=1)] and selection.skipped_groups == 0


def test_every_group_with_an_accepted_rollout_has_a_positive_for_the_assistant():
    # all right (0-1), all wrong (2-3), mixed (4-5): the assistant can give the first group a pair too
    accepted = [True, True, False, False, False, True]
    selection = select_pairs([[0, 1], [2, 3], [4, 5]], accepted, [1.0, 0.5] * 3)
    assert selection.positives == [1, 5] and selection.pairs == [Pair(5, 4)] and selection.skipped_groups == 2


def test_samples_show_the_wrong_completions_rewarded_most_and_the_right_ones_rewarded_least():
    accepted = [True, False, True, False, False, True]
    scores = [3.0, 2.5, -1.0, -2.0, 0.1, 0.0]
    assert telling_samples(accepted, scores, 4) == [1, 2, 4, 5]
    assert telling_samples([False] * 3, [0.0, 2.0, 1.0], 5) == [1, 2, 0]  # fewer than asked: all
    assert telling_samples(accepted, scores, 0) == []


def test_pairs_are_chosen_within_groups_whatever_their_layout():
    groups = [[0, 2, 4], [1, 3, 5], [6, 7]]  # interleaved groups, as a gathered batch may hold them
    accepted = [True, True, False, False, False, True, True, True]
    scores = [1.0, 0.0, 2.0, 0.0, 3.0, -1.0, 0.0, 0.0]
    selection = select_pairs(groups, accepted, scores)
    assert selection.pairs == [Pair(0, 4), Pair(5, 3)] and selection.skipped_groups == 1


def test_ties_go_to_the_earlier_rollout():
    selection = select_pairs([[0, 1, 2, 3]], [True, True, False, False], [0.0] * 4)
    assert selection.pairs == [Pair(0, 2)]




def test_pairwise_updates_order_the_pair_and_checkpoints_restore_them(model_dir, tmp_path):
    texts = [
        reward_model_text("Start with 3. Add 4.", "7", c) for c in ("3+4=7. \\boxed{7}", "3+4=9. \\boxed{9}")
    ]
    cooper = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3)
    before = cooper.reward_model.scores(texts)
    losses = [cooper.update(texts, [Pair(0, 1)]).pairwise for _ in range(5)]
    after = cooper.reward_model.scores(texts)
    assert losses == sorted(losses, reverse=True) and after[0] - after[1] > before[0] - before[1]
    assert cooper.update(texts, []) is None and cooper.steps == 5

    cooper.save(tmp_path)
    restored = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3)
    restored.load(tmp_path)
    assert restored.steps == 5 and restored.reward_model.scores(texts) == pytest.approx(after, abs=1e-6)
    cooper.update(texts, [Pair(0, 1)])
    restored.update(texts, [Pair(0, 1)])  # the same AdamW moments: the same next step
    assert restored.reward_model.scores(texts) == pytest.approx(cooper.reward_model.scores(texts), abs=1e-6)
    with pytest.raises(FileNotFoundError, match="not saved by a cooper run"):
        restored.load(tmp_path / "elsewhere")


def toy_batch() -> tuple[list[str], list[bool], list[Pair]]:
    """Four questions, each with its worked solution, one with an arithmetic slip and one that stops
    early; pairs of the right solution with each wrong one."""
    texts, labels = [], []
    for problem in generate_problems(4, "train", seed=2):
        chain = chain_of(problem)
        for solution, right in (
            (worked_solution(chain), True),
            (worked_solution(chain, slip=(0, 1)), False),
            (worked_solution(chain, stop_early=True), False),
        ):
            texts.append(reward_model_text(problem.question, problem.answer, solution))
            labels.append(right)
    return texts, labels, [Pair(3 * k, 3 * k + j) for k in range(4) for j in (1, 2)]


def test_the_pointwise_term_pins_the_score_level_the_pairwise_loss_leaves_free(model_dir):
    texts, labels, pairs = toy_batch()
    # A reward model that accepts everything (σ(s) ≈ 0.97): a few BCE steps towards "all correct".
    accepting = RewardModel.load(model_dir)
    optimizer = torch.optim.AdamW(accepting.model.parameters(), lr=1e-3)
    for _ in range(20):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            accepting.logits(texts), torch.ones(len(texts))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def wrong_probability(model: RewardModel) -> float:
        probabilities = torch.sigmoid(torch.tensor(model.scores(texts)))
        return probabilities[[i for i, right in enumerate(labels) if not right]].mean().item()

    assert wrong_probability(accepting) > 0.9
    after = {}
    for weight in (0.0, 1.0):
        cooper = CooperRewardModel(copy.deepcopy(accepting), learning_rate=1e-3, pointwise_weight=weight)
        losses = [cooper.update(texts, pairs, labels) for _ in range(5)]
        assert all(loss.pairwise > 0 for loss in losses)
        assert all((loss.pointwise is not None) == (weight > 0) for loss in losses)
        after[weight] = wrong_probability(cooper.reward_model)
    # Ordering alone can leave wrong completions above 0.5 (a 0/1 reward at 0.5 would pay for them);
    # the cross-entropy on the verifier's labels brings them below.
    assert after[0.0] > 0.5 > after[1.0]


def test_with_a_pointwise_term_a_batch_without_pairs_still_updates(model_dir):
    texts, labels, _ = toy_batch()
    cooper = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3, pointwise_weight=0.5)
    losses = cooper.update(texts, [], labels)
    assert losses.pairwise is None and losses.pointwise > 0 and cooper.steps == 1
    pairwise_only = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3)
    assert pairwise_only.update(texts, [], labels) is None
    with pytest.raises(ValueError, match="pointwise_weight"):
        CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3, pointwise_weight=-1.0)


def test_a_frozen_reward_model_is_neither_updated_nor_checkpointed(model_dir, tmp_path):
    frozen = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3, frozen=True)
    assert not any(p.requires_grad for p in frozen.reward_model.model.parameters())
    for call in (lambda: frozen.update(["a", "b"], [Pair(0, 1)]), lambda: frozen.save(tmp_path)):
        with pytest.raises(RuntimeError, match="frozen"):
            call()
