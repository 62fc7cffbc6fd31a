"""Majority voting: equivalence clusters vs exact strings, ties, minimum agreement."""

import pytest

from corewarding.core.voting import Vote, VotingConfig, majority_vote, majority_votes

EXACT = VotingConfig(matching="exact")


def test_equivalent_forms_vote_together_exact_mode_keeps_them_apart():
    answers = [r"\frac{1}{2}", r"\dfrac12", "0.5", r"\frac12", "3", "3"]
    vote = majority_vote(answers)
    assert vote.label == r"\frac{1}{2}"
    assert vote.members == (0, 1, 2, 3)
    assert (vote.count, vote.ratio, vote.num_answered, vote.num_clusters) == (4, 4 / 6, 6, 2)

    exact = majority_vote(answers, EXACT)
    assert exact.label == "3"  # four singletons lose to the two 3s
    assert exact.members == (4, 5)
    assert exact.num_clusters == 5


def test_none_answers_are_dropped_but_count_in_the_ratio():
    vote = majority_vote([None, "2", None, "2", "5", None, None, None])
    assert vote == Vote(label="2", members=(1, 3), count=2, ratio=0.25, num_answered=3, num_clusters=2)


def test_no_answers_gives_no_label():
    assert majority_vote([None, None]) == Vote(None, (), 0, 0.0, 0, 0)
    assert majority_vote([]).label is None


@pytest.mark.parametrize("config", [VotingConfig(), EXACT])
def test_ties_go_to_the_cluster_seen_first(config):
    assert majority_vote(["5", "7", "7", "5"], config).label == "5"
    assert majority_vote(["7", "5", "5", "7"], config).label == "7"
    assert majority_vote([None, "9", "1", "2"], config).label == "9"  # plurality of 1 of 4 wins


def test_label_is_the_most_common_form_in_the_winning_cluster():
    assert majority_vote(["0.5", r"\frac{1}{2}", r"\frac{1}{2}", "4"]).label == r"\frac{1}{2}"
    assert majority_vote(["0.5", r"\frac{1}{2}", "4"]).label == "0.5"  # a tie of forms: the first seen


def test_minimum_count():
    answers = ["3", "3", "4", "5", None, None, None, None]
    assert majority_vote(answers, VotingConfig(min_count=2)).label == "3"
    short = majority_vote(answers, VotingConfig(min_count=3))
    assert short.label is None and short.members == ()
    assert short.count == 2  # the statistics of the failed winner are still reported


def test_minimum_ratio_counts_no_answer_rollouts():
    answers = ["3", "3", "3", "4", None, None, None, None]  # 3/8 of the group
    assert majority_vote(answers, VotingConfig(min_ratio=0.375)).label == "3"
    assert majority_vote(answers, VotingConfig(min_ratio=0.5)).label is None


def test_the_budget_of_compared_answers_is_a_setting():
    answers = ["7", "7", r"\frac{1}{2}", "0.5", r"\dfrac12"]
    assert majority_vote(answers).label == r"\frac{1}{2}"  # three forms of one half outvote two 7s
    # Only 7 and \frac{1}{2} are compared: 0.5 and \dfrac12 vote on their own, and the 7s win.
    vote = majority_vote(answers, VotingConfig(max_compared_answers=2))
    assert (vote.label, vote.members, vote.num_clusters) == ("7", (0, 1), 4)
    unbounded = VotingConfig(max_compared_answers=None, max_comparison_seconds=None)
    assert majority_vote(answers, unbounded) == majority_vote(answers)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"matching": "fuzzy"},
        {"min_count": 0},
        {"min_ratio": 1.5},
        {"min_ratio": -0.1},
        {"max_compared_answers": 0},
        {"max_comparison_seconds": 0.0},
    ],
)
def test_invalid_config(kwargs):
    with pytest.raises(ValueError):
        VotingConfig(**kwargs)


def test_majority_votes_batches_groups():
    groups = [["1", "1.0", "2"], ["x", "y", "y"], [None]]
    assert majority_votes(groups) == [majority_vote(g) for g in groups]
    assert [v.label for v in majority_votes(groups)] == ["1", "y", None]
