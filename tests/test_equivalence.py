"""Math-verify equivalence: right answers, bounded time, no side effects, any thread or process."""

import logging
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from corewarding.core.equivalence import (
    MAX_ANSWER_CHARS,
    EquivalenceChecker,
    answers_match,
    cluster_answer_groups,
    cluster_answers,
    equivalent,
)

HALF_FORMS = [r"\frac{1}{2}", r"\dfrac12", "0.5", r"\frac12", r"\tfrac{1}{2}", "1/2", "0.50"]

# The hostile answers of the issue, plus magnitude bombs that make sympy run for ever.
HOSTILE = [
    "x" * 200_000,
    "(" * 5000 + "1" + ")" * 5000,
    "__import__('os').system('touch /tmp/corewarding-pwned')",
    "10**10**10**10",
    r"9^{9^{9}}",
    r"10^{10^{10^{10}}}",
    r"(10^{10})!",
    r"2^{1000000}",
]


@pytest.mark.parametrize("a", HALF_FORMS)
@pytest.mark.parametrize("b", HALF_FORMS)
def test_forms_of_one_half_are_equivalent(a, b):
    assert equivalent(a, b)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2", True),
        (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}", True),
        ("x=5", "5", True),
        ("(x+1)^2", "x^2+2x+1", True),
        (r"\frac13", "0.333333", True),  # math-verify's 6-decimal rounding
        ("142", "142.0", True),
        ("1234", "1,234", True),
        (r"\pi", "3.14", False),
        ("3", "4", False),
        (r"\frac{1}{3}", "0.33", False),
        ("2", "-2", False),
        (r"\{1,2\}", r"\{2,1\}", True),
    ],
)
def test_equivalence_cases(a, b, expected):
    assert equivalent(a, b) is expected


def test_cluster_answers_groups_equivalent_forms_and_keeps_none():
    answers = [r"\frac{1}{2}", "7", None, r"\dfrac12", "0.5", "7.0", r"\frac12", "8"]
    assert cluster_answers(answers) == [0, 1, None, 0, 0, 1, 0, 2]
    # Exact mode merges only canonical strings ("7" and "7.0"), as the reference's string voting would.
    assert cluster_answers(answers, mode="exact") == [0, 1, None, 2, 3, 1, 4, 5]


def test_cluster_answer_groups_matches_one_group_at_a_time():
    groups = [["1", "2", "1.0", None], [r"\frac{2}{4}", "0.5", "3"], [], [None, None]]
    assert cluster_answer_groups(groups) == [cluster_answers(g) for g in groups]
    assert cluster_answer_groups(groups) == [[0, 1, 0, None], [0, 0, 1], [], [None, None]]


def test_answers_match_none_never_matches():
    assert answers_match([("1", None), (None, "1"), (None, None), ("1", "1.0")]) == [False, False, False, True]
    assert answers_match([(r"\frac{1}{2}", "0.5")], mode="exact") == [False]
    with pytest.raises(ValueError, match="matching mode"):
        answers_match([("1", "1")], mode="fuzzy")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("hostile", HOSTILE, ids=[h[:16] for h in HOSTILE])
def test_hostile_answers_return_within_the_bound_without_side_effects(hostile, capfd, caplog):
    pwned = Path("/tmp/corewarding-pwned")
    pwned.unlink(missing_ok=True)
    checker = EquivalenceChecker(timeout_s=1.0, hard_timeout_s=5.0)
    caplog.set_level(logging.DEBUG)
    start = time.perf_counter()
    assert checker.equivalent(hostile, "1") is False
    assert checker.equivalent("1", hostile) is False
    assert checker.equivalent(hostile, hostile) is True  # identical strings are equal without parsing
    elapsed = time.perf_counter() - start
    checker.close()
    assert elapsed < 2 * checker.hard_timeout_s + 2  # never a hang: worker start plus two hard bounds
    assert not pwned.exists()
    out, err = capfd.readouterr()
    assert hostile[:50] not in out + err + caplog.text  # no log flooding with the input


def test_long_answers_are_rejected_up_front():
    checker = EquivalenceChecker()
    long_sum = "+".join(["1"] * (MAX_ANSWER_CHARS // 2 + 1))
    assert checker.equivalent(long_sum, "1") is False
    assert checker._workers == [None] * len(checker._workers)  # decided without ever starting the worker


SLOW = r"\sin(10^{99999})"  # legal LaTeX that sympy takes seconds to evaluate


@pytest.mark.timeout(60)
def test_a_slow_comparison_stops_at_the_soft_bound():
    checker = EquivalenceChecker(timeout_s=0.5, hard_timeout_s=20.0)
    checker.equivalent("x+1", "1+x")  # start the worker outside the measured call
    start = time.perf_counter()
    assert checker.equivalent(SLOW, "1.5") is False
    assert time.perf_counter() - start < 2.5
    assert checker.timeouts == 1
    assert checker.equivalent(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2") is True  # the same worker goes on
    checker.close()


@pytest.mark.timeout(60)
def test_a_stuck_worker_is_killed_at_the_hard_bound_and_restarted():
    checker = EquivalenceChecker(timeout_s=30.0, hard_timeout_s=0.5)  # soft bound out of the way
    checker.equivalent("x+1", "1+x")
    worker = checker._workers[0]
    start = time.perf_counter()
    assert checker.equivalent(SLOW, "1.5") is False
    assert time.perf_counter() - start < 2.5
    assert checker.timeouts == 1
    assert worker.proc.poll() is not None  # killed
    assert checker.equivalent(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2") is True  # a fresh worker answers
    checker.close()


def test_results_are_cached_on_canonical_strings():
    checker = EquivalenceChecker()
    assert checker.equivalent(r"\sqrt{8}", r"2\sqrt{2}")
    checker.close()  # no worker left: a cache miss would restart one
    assert checker.equivalent(r"\sqrt{ 8 }", r"2 \sqrt{2}")
    assert checker._workers == [None] * len(checker._workers)
    checker.close()


def test_calls_from_many_threads():
    pairs = [(r"\frac{3}{4}", "0.75", True), ("(x+1)^2", "x^2+2x+1", True), (r"\sqrt{2}", "1.41", False)]
    errors, results = [], []

    def work():
        try:
            for a, b, expected in pairs * 5:
                results.append(equivalent(a, b) is expected)
        except Exception as e:  # surfaced below: a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8 * 15 and all(results)


def _child(queue):
    queue.put((os.getpid(), equivalent(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2"), equivalent("2", "3")))


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_calls_from_worker_processes(start_method):
    equivalent(r"(x+1)^2", r"x^2+2x+1")  # the parent's worker exists before the fork
    ctx = multiprocessing.get_context(start_method)
    queue = ctx.Queue()
    children = [ctx.Process(target=_child, args=(queue,)) for _ in range(2)]
    for c in children:
        c.start()
    results = [queue.get(timeout=60) for _ in children]
    for c in children:
        c.join(timeout=10)
    assert sorted(r[1:] for r in results) == [(True, False), (True, False)]
    assert equivalent(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2")  # the parent's worker still answers
