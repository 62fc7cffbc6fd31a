"""The synthetic arithmetic task: determinism, split disjointness, one answer across surface forms."""

import operator
import os
import re
from functools import reduce

import pytest

from corewarding.core.answers import extract_answer
from corewarding.data.synthetic import (
    NUM_FORMS,
    Chain,
    TaskConfig,
    chain_of,
    generate_problems,
    render_forms,
    split_of,
    surface_forms,
    worked_solution,
)

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def evaluate_chain(chain: Chain) -> int:
    """The chain's value, computed here independently of the module."""
    return reduce(lambda value, step: OPERATORS[step[0]](value, step[1]), chain.steps, chain.start)


def read_chain(text: str) -> str:
    """Reads a surface form back into a chain key, from its numbers and the words around them.

    Each operand's operation is decided by its own clause: the words since the previous clause
    boundary and up to the next one.
    """
    numbers = list(re.finditer(r"\d+", text))
    key = numbers[0].group()
    for previous, number in zip(numbers, numbers[1:]):
        before = re.split(r"[.,]", text[previous.end() : number.start()])[-1]
        after = re.split(r"[.,?]", text[number.end() :])[0]
        clause = before + after
        if "times" in clause or "ultipl" in clause:
            op = "*"
        elif re.search(r"more|Add|Increase", clause):
            op = "+"
        elif re.search(r"away|loses|sells|Subtract|Decrease|taken out|removed", clause):
            op = "-"
        else:
            raise AssertionError(f"no operation recognised in clause {clause!r} of {text!r}")
        key += op + number.group()
    return key


def test_same_seed_same_problems_other_seed_others():
    first = generate_problems(40, "train", seed=7)
    again = generate_problems(40, "train", seed=7)
    assert first == again
    assert [p.meta for p in first] == [p.meta for p in again]
    assert [p.id for p in generate_problems(40, "train", seed=8)] != [p.id for p in first]


def test_problems_within_a_split_are_distinct_abstract_problems():
    problems = generate_problems(500, "test", seed=0)
    assert len({p.meta["chain"] for p in problems}) == len({p.id for p in problems}) == 500


def test_splits_are_disjoint_by_abstract_problem_across_seeds():
    train = {chain_of(p) for seed in (0, 1) for p in generate_problems(1000, "train", seed=seed)}
    test = {chain_of(p) for seed in (0, 1) for p in generate_problems(1000, "test", seed=seed)}
    assert train and test and not train & test
    assert {split_of(c) for c in train} == {"train"} and {split_of(c) for c in test} == {"test"}


def test_split_depends_on_the_abstract_problem_only():
    chain = Chain.from_key("7+5*2")
    assert len({split_of(chain) for _ in range(3)}) == 1
    assert split_of(chain, test_fraction=0.999999) == "test"
    assert split_of(chain, test_fraction=1e-12) == "train"


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_surface_form_tells_the_same_problem_with_the_same_answer(split):
    for problem in generate_problems(200, split, seed=3):
        chain = chain_of(problem)
        forms = surface_forms(problem)
        assert len(set(forms)) == NUM_FORMS >= 3
        assert problem.question in forms and problem.rephrasing in forms
        assert problem.question != problem.rephrasing
        assert [read_chain(form) for form in forms] == [chain.key] * NUM_FORMS
        independent = str(evaluate_chain(chain))
        assert problem.answer == independent
        assert extract_answer(worked_solution(chain)) == independent
        assert extract_answer(problem.meta["solution"]) == independent


def test_the_hard_regimes_problems_take_three_steps_and_every_form_tells_the_same_one():
    from corewarding.tiny.regimes import REGIMES

    config = REGIMES["hard"].pretraining.task
    assert config.distractor_rate == 0.0  # its errors come from the corpus's mistakes, not the wording
    problems = generate_problems(200, "test", seed=5, config=config)
    for problem in problems:
        chain = chain_of(problem)
        assert len(chain.steps) == 3 and all(1 <= v <= config.max_value for v in chain.values())
        assert [read_chain(form) for form in surface_forms(problem, config)] == [chain.key] * NUM_FORMS
        assert problem.answer == str(evaluate_chain(chain))
        assert worked_solution(chain).count("=") == 3
    assert {split_of(chain_of(p)) for p in problems} == {"test"}


def test_worked_solution_is_one_short_equation_per_step():
    chain = Chain.from_key("7+5*2-3")
    assert worked_solution(chain) == "7+5=12. 12*2=24. 24-3=21. \\boxed{21}"
    assert chain.values() == [12, 24, 21] and chain.answer == 21


def test_values_stay_within_the_configured_range():
    config = TaskConfig(steps=3, max_value=30, multiplier_range=(2, 3))
    for problem in generate_problems(300, "train", seed=0, config=config):
        chain = chain_of(problem)
        assert len(chain.steps) == 3
        assert all(1 <= v <= 30 for v in chain.values())
        assert all(2 <= n <= 3 for op, n in chain.steps if op == "*")


def test_operations_setting_is_respected():
    config = TaskConfig(operations=("+",))
    ops = {op for p in generate_problems(100, "train", config=config) for op, _ in chain_of(p).steps}
    assert ops == {"+"}


def test_render_forms_is_deterministic_and_style_seed_changes_wording():
    chain = Chain.from_key("3*4-2")
    assert render_forms(chain, 5) == render_forms(chain, 5)
    assert any(render_forms(chain, s) != render_forms(chain, 5) for s in range(5))


def test_chain_key_round_trip_and_bad_key():
    assert Chain.from_key("12-3*4").key == "12-3*4"
    with pytest.raises(ValueError, match="not a chain key"):
        Chain.from_key("12 apples")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"operations": ()},
        {"operations": ("/",)},
        {"operand_range": (0, 9)},
        {"multiplier_range": (1, 3)},
        {"start_range": (5, 2)},
        {"max_value": 10},
        {"test_fraction": 1.0},
    ],
)
def test_bad_config_is_a_clear_value_error(kwargs):
    with pytest.raises(ValueError):
        TaskConfig(**kwargs)


def test_asking_for_more_problems_than_a_split_holds_fails_clearly():
    tiny = TaskConfig(steps=1, operations=("+",), start_range=(1, 3), operand_range=(1, 1))
    with pytest.raises(ValueError, match="fewer than 10 distinct problems"):
        generate_problems(10, "train", config=tiny)
    with pytest.raises(ValueError, match="split must be one of"):
        generate_problems(1, "validation")
    one_chain = TaskConfig(steps=1, operations=("+",), start_range=(1, 1), operand_range=(1, 1))  # 1+1: train
    with pytest.raises(ValueError, match="test split of this TaskConfig looks empty"):
        generate_problems(1, "test", config=one_chain)
    no_chain = TaskConfig(steps=3, operations=("*",), start_range=(20, 20), max_value=25)
    with pytest.raises(ValueError, match="no chain of 3 steps fits"):
        generate_problems(1, "train", config=no_chain)


def test_chain_of_rejects_other_problems():
    from corewarding.data.records import Problem

    with pytest.raises(ValueError, match="not a synthetic arithmetic problem"):
        chain_of(Problem(id="x", question="What is 2+2?", answer="4"))


def test_a_share_of_forms_carries_an_irrelevant_number_and_reads_as_the_clean_form_without_it():
    distracting = TaskConfig(distractor_rate=0.5)
    counts = [0, 0]
    for problem in generate_problems(300, "train", seed=4, config=distracting):
        chain, seed = chain_of(problem), problem.meta["style_seed"]
        for noisy, clean in zip(render_forms(chain, seed, distracting), render_forms(chain, seed)):
            counts[noisy.distractor is not None] += 1
            assert clean.distractor is None and noisy.family == clean.family
            if noisy.distractor is None:
                assert noisy.text == clean.text  # the distractor's draws leave the other forms alone
                continue
            assert 1 <= noisy.distractor <= 9
            # The clean form is the noisy one without one inserted sentence, which holds the number.
            prefix = len(os.path.commonprefix([noisy.text, clean.text]))
            suffix = min(
                len(os.path.commonprefix([noisy.text[::-1], clean.text[::-1]])), len(clean.text) - prefix
            )
            inserted = noisy.text[prefix : len(noisy.text) - suffix]
            assert len(noisy.text) - len(inserted) == len(clean.text)
            assert re.findall(r"\d+", inserted) == [str(noisy.distractor)]
        qf, rf = problem.meta["forms"]
        forms = render_forms(chain, seed, distracting)
        assert (problem.question, problem.rephrasing) == (forms[qf].text, forms[rf].text)
        assert problem.meta["distractors"] == [forms[qf].distractor, forms[rf].distractor]
    # 1,200 forms: the share within 0.05 of the rate (more than 3 standard deviations).
    assert counts[1] / sum(counts) == pytest.approx(0.5, abs=0.05)
    assert all(
        f.distractor is None for p in generate_problems(50, "test") for f in render_forms(chain_of(p), 0)
    )


def test_worked_solutions_with_a_slip_an_irrelevant_number_or_both():
    chain = Chain.from_key("7+5*2")
    assert worked_solution(chain, slip=(0, -1)) == "7+5=11. 11*2=22. \\boxed{22}"
    assert worked_solution(chain, distractor=4) == "7+5=12. 12*2=24. 24+4=28. \\boxed{28}"
    assert worked_solution(chain, slip=(2, 3), distractor=4) == "7+5=12. 12*2=24. 24+4=31. \\boxed{31}"
    assert worked_solution(chain, stop_early=True, slip=(0, 2)) == "7+5=14. \\boxed{14}"
    with pytest.raises(ValueError, match="slip step 2 is not one of the 2 steps"):
        worked_solution(chain, slip=(2, 1))


def test_bad_distractor_settings_are_a_clear_value_error():
    with pytest.raises(ValueError, match="distractor_rate"):
        TaskConfig(distractor_rate=1.5)
    with pytest.raises(ValueError, match="distractor_range"):
        TaskConfig(distractor_range=(0, 9))
