"""Every reward on hand-written completions (open-r1 style)."""

from dataclasses import replace

import pytest
import torch

from corewarding.core.answers import extract_answer
from corewarding.core.methods import METHODS, RewardInputs, is_labelled, method_rewards
from corewarding.core.rewards import (
    RENT_NO_ANSWER_PENALTY,
    Rollouts,
    cooper_rewards,
    cross_view_rewards,
    entropy_rewards,
    format_rewards,
    ground_truth_rewards,
    majority_vote_rewards,
    self_certainty_rewards,
    teacher_vote_rewards,
)
from corewarding.core.voting import VotingConfig
from corewarding.training.token_statistics import entropy, self_certainty

# Question 1 (reference 1/2) and question 2 (reference 12), four rollouts each.
COMPLETIONS = [
    r"Half of the cake: \boxed{\frac{1}{2}}",
    r"So it is \boxed{0.5}.",
    r"I think \boxed{\dfrac12}",
    r"Answer: \boxed{2}",
    r"3*4 = 12, so \boxed{12}",
    r"3+4 = 7, \boxed{7}",
    "I am not sure.",  # no answer
    r"3*4 = 12.\n#### 12",
]
ANSWERS = [extract_answer(c) for c in COMPLETIONS]
BATCH = Rollouts(
    answers=ANSWERS, question_ids=[1] * 4 + [2] * 4, references=[r"\frac{1}{2}"] * 4 + ["12"] * 4
)


def test_ground_truth_rewards():
    result = ground_truth_rewards(BATCH)
    assert result.rewards == [1, 1, 1, 0, 1, 0, 0, 1]
    assert result.metrics["rollout_accuracy"] == 5 / 8
    assert result.metrics["no_answer_rate"] == 1 / 8
    assert result.metrics["label_accuracy"] == 1.0 and result.metrics["reward_accuracy"] == 1.0


def test_ground_truth_needs_references():
    with pytest.raises(ValueError, match="reference"):
        ground_truth_rewards(Rollouts(answers=["1"], question_ids=[0]))


def test_majority_vote_rewards_equivalence_vs_exact():
    result = majority_vote_rewards(BATCH)
    assert result.rewards == [1, 1, 1, 0, 1, 0, 0, 1]
    assert result.labels[:4] == [r"\frac{1}{2}"] * 4 and result.labels[4:] == ["12"] * 4
    assert result.metrics["majority_ratio"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert result.metrics["label_accuracy"] == 1.0

    # Exact strings split the 1/2 vote into three singletons; the first seen wins the tie.
    exact = majority_vote_rewards(BATCH, VotingConfig(matching="exact"))
    assert exact.rewards == [1, 0, 0, 0, 1, 0, 0, 1]
    assert exact.metrics["reward_accuracy"] == pytest.approx(6 / 8)


def test_majority_vote_agrees_on_a_wrong_answer():
    """The collapse mode: agreement is rewarded whether or not it is right."""
    batch = Rollouts(answers=["7", "7", "7", "12"], question_ids=[0] * 4, references=["12"] * 4)
    result = majority_vote_rewards(batch)
    assert result.rewards == [1, 1, 1, 0]
    assert result.metrics["label_accuracy"] == 0.0
    assert result.metrics["reward_accuracy"] == 0.0


def test_cross_view_rewards_on_a_pair_whose_views_disagree():
    # The original's rollouts mostly say 10; the rephrasing's mostly say 12 (the right answer).
    answers = ["10", "10", "12", None, "12", "12", "12.0", "10"]
    batch = Rollouts(answers=answers, question_ids=["q"] * 8, views=[0] * 4 + [1] * 4, references=["12"] * 8)
    result = cross_view_rewards(batch)
    assert result.labels == ["12"] * 4 + ["10"] * 4  # each view labelled by the other
    assert result.rewards == [0, 0, 1, 0, 0, 0, 0, 1]
    m = result.metrics
    assert m["label_accuracy"] == 0.5
    assert m["original/label_accuracy"] == 1.0 and m["rephrased/label_accuracy"] == 0.0
    assert m["original/reward"] == 0.25 and m["rephrased/reward"] == 0.25
    assert m["original/no_answer_rate"] == 0.25 and m["rephrased/no_answer_rate"] == 0.0
    assert m["view_agreement"] == 0.0
    assert m["majority_ratio"] == pytest.approx((3 / 4 + 2 / 4) / 2)  # of the labelling (other) view
    assert m["reward_accuracy"] == pytest.approx(4 / 8)  # rollouts 0,1,3 (right 0) and 4,5,6 (wrong 0)


def test_cross_view_rewards_when_the_views_agree():
    answers = ["3", "3", "4", "3", "3", "5"]
    batch = Rollouts(answers=answers, question_ids=[0] * 6, views=[0, 0, 0, 1, 1, 1])
    result = cross_view_rewards(batch)
    assert result.rewards == [1, 1, 0, 1, 1, 0]
    assert result.metrics["view_agreement"] == 1.0
    assert "label_accuracy" not in result.metrics  # no references, no label diagnostics


def test_cross_view_group_without_label_gets_zero_and_is_counted():
    # The rephrasing's rollouts all failed to answer; the original's lone group has no partner at all.
    answers = ["5", "5", None, None, "1", "1"]
    batch = Rollouts(answers=answers, question_ids=[0, 0, 0, 0, 1, 1], views=[0, 0, 1, 1, 0, 0])
    result = cross_view_rewards(batch)
    assert result.rewards == [0, 0, 0, 0, 0, 0]
    assert result.labels == [None, None, "5", "5", None, None]
    assert result.metrics["no_label_rate"] == pytest.approx(2 / 3)


def test_teacher_vote_rewards():
    policy = Rollouts(answers=["4", "4", "6", None], question_ids=[0] * 4, references=["6"] * 4)
    teacher = Rollouts(answers=["6", "6", "4", "6.0"], question_ids=[0] * 4)
    result = teacher_vote_rewards(policy, teacher)
    assert result.rewards == [0, 0, 1, 0]
    assert result.labels == ["6"] * 4
    assert result.metrics["label_accuracy"] == 1.0
    assert result.metrics["majority_ratio"] == 0.75
    assert result.metrics["teacher_policy_agreement"] == 0.0  # the policy's own majority says 4
    assert result.metrics["teacher/no_answer_rate"] == 0.0
    assert result.metrics["no_answer_rate"] == 0.25


def test_teacher_without_answers_gives_no_label():
    policy = Rollouts(answers=["4", "4"], question_ids=[0, 0])
    teacher = Rollouts(answers=[None, None], question_ids=[0, 0])
    result = teacher_vote_rewards(policy, teacher)
    assert result.rewards == [0, 0] and result.metrics["no_label_rate"] == 1.0


def test_empty_batch_does_not_crash():
    empty = Rollouts(answers=[], question_ids=[], references=[])
    for fn in (majority_vote_rewards, cross_view_rewards, ground_truth_rewards):
        assert fn(empty).rewards == []


def test_self_certainty_rewards_from_logits():
    # Rollout 0 is confident (one large logit), rollout 1 is uniform.
    logits = torch.zeros(2, 3, 5)
    logits[0, :, 2] = 8.0
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    values = self_certainty(logits, mask)
    # KL(U || p_t) from its definition, the same for every token of rollout 0; 0 for a uniform p_t.
    uniform = torch.full((5,), 0.2)
    kl = (uniform * (uniform.log() - torch.log_softmax(logits[0, 0], -1))).sum()
    assert values.tolist() == pytest.approx([kl.item(), 0.0], abs=1e-5)

    batch = Rollouts(answers=["1", None], question_ids=[0, 0], references=["1", "1"])
    result = self_certainty_rewards(batch, values.tolist())
    assert result.rewards == pytest.approx(values.tolist())
    assert result.metrics["rollout_accuracy"] == 0.5 and result.metrics["no_answer_rate"] == 0.5


def test_entropy_matches_torch_distributions_and_masks_padding():
    logits = torch.randn(3, 4, 7, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    per_token = torch.distributions.Categorical(logits=logits).entropy()
    expected = [per_token[0].mean().item(), per_token[1, :2].mean().item(), 0.0]
    assert entropy(logits, mask).tolist() == pytest.approx(expected, abs=1e-6)


def test_entropy_rewards_with_and_without_the_no_answer_penalty():
    batch = Rollouts(answers=["1", None, "2"], question_ids=[0, 0, 0])
    assert entropy_rewards(batch, [0.5, 1.0, 2.0]).rewards == [-0.5, -1.0, -2.0]
    penalised = entropy_rewards(batch, [0.5, 1.0, 2.0], no_answer_penalty=RENT_NO_ANSWER_PENALTY)
    assert penalised.rewards == [-0.5, -7.0, -2.0]
    assert penalised.metrics["mean_entropy"] == pytest.approx(3.5 / 3)
    with pytest.raises(ValueError, match="3 rollouts"):
        entropy_rewards(batch, [0.5])


def test_format_rewards():
    assert format_rewards(BATCH).rewards == [1, 1, 1, 1, 1, 1, 0, 1]


def test_every_method_of_the_table_rewards_a_batch_with_what_it_says_it_needs():
    teacher = Rollouts(["1/2"] * 4 + ["7"] * 4, BATCH.question_ids, BATCH.views)
    inputs = RewardInputs(
        teacher=teacher, token_statistics=[0.5] * 8, reward_model_scores=[1.0, -1.0] * 4
    )
    expected = {
        "ground_truth": ground_truth_rewards(BATCH).rewards,
        "majority_vote": majority_vote_rewards(BATCH).rewards,
        "self_certainty": [0.5] * 8,
        "entropy": [-0.5] * 8,
        "co_rewarding_ii": teacher_vote_rewards(BATCH, teacher).rewards,
    }
    for name, method in METHODS.items():
        if name in expected:
            assert method_rewards(name, BATCH, inputs).rewards == expected[name], name
        # Each method refuses the batch without the input its entry names.
        missing = {
            "teacher": method.needs_teacher, "token_statistics": method.token_statistic is not None,
            "reward_model_scores": method.reward_model is not None,
        }
        for field, needed in missing.items():
            if needed:
                with pytest.raises(ValueError, match=f"{name} needs"):
                    method_rewards(name, BATCH, replace(inputs, **{field: None}))
    paired = [name for name, method in METHODS.items() if method.paired_views]
    assert paired == ["co_rewarding_i"]
    assert {name for name, method in METHODS.items() if method.needs_references} == {
        "ground_truth", "cooper", "cooper_static",
    }
    with pytest.raises(ValueError, match="unknown method 'best_of_n'"):
        method_rewards("best_of_n", BATCH)


def test_rollouts_validation():
    with pytest.raises(ValueError, match="question_ids"):
        Rollouts(answers=["1", "2"], question_ids=[0])
    with pytest.raises(ValueError, match="views"):
        Rollouts(answers=["1"], question_ids=[0], views=[2])


def test_dominant_answer_share_reveals_one_answer_for_every_question():
    varied = Rollouts(answers=["3", "3", "7", "9", None, "12"], question_ids=[0, 0, 1, 1, 2, 2])
    assert majority_vote_rewards(varied).metrics["dominant_answer_share"] == 2 / 6
    collapsed = Rollouts(answers=["0"] * 5 + [None], question_ids=[0, 0, 1, 1, 2, 2])
    assert format_rewards(collapsed).metrics["dominant_answer_share"] == 5 / 6


def test_answer_in_question_share_counts_answers_copied_from_their_question():
    questions = ["What is 23 + 20?"] * 2 + ["Subtract 1,200 - 5."] * 2 + ["5 + 6?"]
    echo = Rollouts(answers=["20", "43", "1200", "5", None], question_ids=[0, 0, 1, 1, 2],
                    questions=questions)
    assert majority_vote_rewards(echo).metrics["answer_in_question_share"] == 3 / 5  # 20, 1200, 5
    # The share is of each rollout's own question: 43 in another question does not count.
    crossed = Rollouts(answers=["11", "43"], question_ids=[0, 1], questions=["5 + 6?", "What is 43?"])
    assert format_rewards(crossed).metrics["answer_in_question_share"] == 1 / 2
    assert "answer_in_question_share" not in format_rewards(Rollouts(["11"], [0])).metrics
    assert echo.select([0, 2]).questions == [questions[0], questions[2]]


def test_a_vote_budget_adds_voters_that_are_not_rewarded():
    # Two rollouts trained on, question 0; alone they tie (4 first); six extra samples say 5.
    batch = Rollouts(answers=["4", "5"], question_ids=[0, 0], references=["5", "5"])
    extra = Rollouts(answers=["5", "5", "6", "5", "4", None], question_ids=[0] * 6)
    assert majority_vote_rewards(batch).rewards == [1.0, 0.0]
    budget = majority_vote_rewards(batch, extra=extra)
    assert budget.rewards == [0.0, 1.0] and budget.labels == ["5", "5"]
    assert budget.metrics["majority_ratio"] == pytest.approx(4 / 8)
    # Co-rewarding-I: the other view's label is voted over its rollouts and its extra samples.
    pair = Rollouts(answers=["4", "4", "7", "5"], question_ids=[0] * 4, views=[0, 0, 1, 1])
    more = Rollouts(answers=["5", "5"], question_ids=[0, 0], views=[1, 1])
    assert cross_view_rewards(pair).labels[:2] == ["7", "7"]
    assert cross_view_rewards(pair, extra=more).labels[:2] == ["5", "5"]


def test_co_rewarding_iii_trains_the_question_on_the_teachers_majority_on_its_rephrasing():
    """The authors' code: the teacher's answers (sampled on the rephrasing, carried under the question's
    id and view) label the policy's rollouts of the question; only the question is trained. The policy's
    own majority (4) is not the teacher's (5), so a method that voted on the policy's rollouts fails."""
    batch = Rollouts(answers=["4", "4", "5"], question_ids=[0] * 3, views=[0] * 3, references=["5"] * 3)
    teacher_on_rephrasing = Rollouts(answers=["5", "5", "4"], question_ids=[0] * 3, views=[0] * 3)
    iii = method_rewards("co_rewarding_iii", batch, RewardInputs(teacher=teacher_on_rephrasing))
    assert iii.labels == ["5"] * 3 and iii.rewards == [0.0, 0.0, 1.0]
    assert method_rewards("majority_vote", batch).labels == ["4"] * 3
    method = METHODS["co_rewarding_iii"]
    assert method.teacher_on_rephrasing and method.needs_teacher and not method.paired_views


def test_semi_supervised_rewards_split_by_question_and_keep_each_parts_metrics():
    # Question 1 labelled (both views), question 2 left to Co-rewarding-I.
    batch = Rollouts(
        answers=["5", "4", "5", "5", "7", "7", "8", "8"], question_ids=[1, 1, 1, 1, 2, 2, 2, 2],
        views=[0, 0, 1, 1, 0, 0, 1, 1], references=["5"] * 4 + ["8"] * 4,
    )
    labelled = [q == 1 for q in batch.question_ids]
    result = method_rewards("co_rewarding_i", batch, RewardInputs(labelled=labelled))
    assert result.rewards == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # question 2's views disagree
    assert result.labels == ["5", "5", "5", "5", "8", "8", "7", "7"]
    assert result.metrics["labelled_share"] == 0.5 and result.metrics["labelled/rollout_accuracy"] == 0.75
    assert result.metrics["label_accuracy"] == 0.5  # the label-free part's: one view's label of two is right
    everything = method_rewards("majority_vote", batch, RewardInputs(labelled=[True] * 8))
    assert everything.rewards == ground_truth_rewards(batch).rewards
    with pytest.raises(ValueError, match="3 flags for 8 rollouts"):
        method_rewards("majority_vote", batch, RewardInputs(labelled=[True] * 3))
    share = sum(is_labelled(f"q{i}", 0.1, seed=4) for i in range(2000)) / 2000
    assert share == pytest.approx(0.1, abs=0.02) and is_labelled("q7", 0.1, 4) == is_labelled("q7", 0.1, 4)


def test_cooper_reward_is_the_probability_or_its_threshold():
    batch = Rollouts(answers=["5", "4", "5", None], question_ids=[0] * 4, references=["5"] * 4)
    soft = cooper_rewards(batch, [0.0, 3.0, -3.0, -10.0])
    assert soft.rewards == pytest.approx([0.5, 0.9526, 0.0474, 0.0000454], abs=1e-4)
    # verdicts at 0.5: accept, accept (wrong), reject (right), reject -> 2 of 4 agree with the verifier
    assert soft.metrics["rm/rule_agreement"] == 0.5 and soft.metrics["rm/false_positive_rate"] == 0.5
    hard = method_rewards(
        "cooper_static",
        batch,
        RewardInputs(reward_model_scores=[0.0, 3.0, -3.0, -10.0], reward_threshold=0.9),
    )
    assert hard.rewards == [0.0, 1.0, 0.0, 0.0]
    assert hard.metrics["rm/rule_agreement"] == 0.25
    with pytest.raises(ValueError, match="reward model's scores"):
        method_rewards("cooper", batch)
