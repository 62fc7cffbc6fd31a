"""The real-model task: seeded, disjoint splits (a + b and b + a together), two different wordings per
question with the same answer (the second with its operands swapped), and the name ``arithmetic`` wherever
a dataset is expected."""

from __future__ import annotations

import re

import pytest

from corewarding.core.answers import extract_answer
from corewarding.core.errors import UserError
from corewarding.data.arithmetic import INSTRUCTION, WORDINGS, arithmetic_problems, split_of


def operands(problem):
    return tuple(int(n) for n in re.findall(r"\d+", problem.question))


def test_splits_share_no_question_nor_its_swapped_operands():
    train = {frozenset(operands(p)) for p in arithmetic_problems(None, "train")}
    test = {frozenset(operands(p)) for p in arithmetic_problems(None, "test")}
    assert train and test and not train & test
    assert split_of(12, 37) == split_of(37, 12)


def test_each_question_has_two_wordings_of_one_sum():
    problems = arithmetic_problems(200, "train", seed=3)
    assert len({p.id for p in problems}) == 200
    used = set()
    for p in problems:
        asked, rephrased = p.meta["wordings"]
        assert asked != rephrased and p.question != p.rephrasing
        assert p.question.endswith(INSTRUCTION) and p.rephrasing.endswith(INSTRUCTION)
        a, b = operands(p)
        assert p.answer == str(a + b)
        # b + a: echoing either view ends on a different operand, so only the sum makes the views agree.
        assert tuple(int(n) for n in re.findall(r"\d+", p.rephrasing)) == (b, a)
        used.update(p.meta["wordings"])
    assert used == set(range(len(WORDINGS)))


def test_the_draw_follows_the_seed():
    assert arithmetic_problems(20, "test", seed=1) == arithmetic_problems(20, "test", seed=1)
    assert arithmetic_problems(20, "test", seed=1) != arithmetic_problems(20, "test", seed=2)


def test_a_terse_answer_line_is_read_as_its_last_number():
    assert extract_answer("23 + 37 = 60", "last_number") == "60"


def test_more_questions_than_the_split_holds_is_one_line():
    with pytest.raises(UserError, match="test split has"):
        arithmetic_problems(10_000, "test")


def test_training_on_arithmetic_holds_out_its_test_split():
    from corewarding.training.config import CoRewardingConfig
    from corewarding.training.run import heldout_problems, training_problems

    config = CoRewardingConfig(
        output_dir="unused", dataset="arithmetic", max_train_problems=64, max_heldout_problems=16,
        method="majority_vote", report_to=[],
    )
    assert config.heldout_dataset == "arithmetic"
    train, heldout = training_problems(config), heldout_problems(config)
    assert len(train) == 64 and len(heldout) == 16
    assert {p.id for p in train}.isdisjoint(p.id for p in heldout)
