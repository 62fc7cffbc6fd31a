"""Math-verify equivalence: right answers, bounded time, no side effects, any thread or process."""

import gc
import logging
import multiprocessing
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from corewarding.core.answers import _CANONICAL_CACHE, CANONICAL_CACHE_BYTES, canonical_answer
from corewarding.core.equivalence import (
    MAX_ANSWER_CHARS,
    MAX_COMPARED_ANSWERS,
    EquivalenceChecker,
    answers_match,
    cluster_answer_groups,
    cluster_answers,
    equivalent,
)
from corewarding.core.lru import ByteLRU

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
    assert answers_match([("1", None), (None, "1"), (None, None), ("1", "1.0")]) == [
        False, False, False, True
    ]
    assert answers_match([(r"\frac{1}{2}", "0.5")], mode="exact") == [False]
    with pytest.raises(ValueError, match="matching mode"):
        answers_match([("1", "1")], mode="fuzzy")


@pytest.mark.timeout(60)
# Hang guards are pytest timeouts, generous for a busy machine: the bounds themselves are shown by the
# checker's counters, which do not depend on how fast the machine is.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("hostile", HOSTILE, ids=[h[:16] for h in HOSTILE])
def test_hostile_answers_return_within_the_bound_without_side_effects(hostile, capfd, caplog):
    pwned = Path("/tmp/corewarding-pwned")
    pwned.unlink(missing_ok=True)
    checker = EquivalenceChecker(timeout_s=1.0, hard_timeout_s=5.0)
    caplog.set_level(logging.DEBUG)
    assert checker.equivalent(hostile, "1") is False
    assert checker.equivalent("1", hostile) is False
    assert checker.equivalent(hostile, hostile) is True  # identical strings are equal without parsing
    checker.close()
    assert not pwned.exists()
    out, err = capfd.readouterr()
    assert hostile[:50] not in out + err + caplog.text  # no log flooding with the input


def test_long_answers_are_rejected_up_front():
    checker = EquivalenceChecker()
    long_sum = "+".join(["1"] * (MAX_ANSWER_CHARS // 2 + 1))
    assert checker.equivalent(long_sum, "1") is False
    # Decided without ever starting a worker.
    assert checker.pool._workers == [None] * len(checker.pool._workers)


def test_results_are_cached_on_canonical_strings():
    checker = EquivalenceChecker()
    assert checker.equivalent(r"\sqrt{8}", r"2\sqrt{2}")
    checker.close()  # no worker left: a cache miss would restart one
    assert checker.equivalent(r"\sqrt{ 8 }", r"2 \sqrt{2}")
    assert checker.pool._workers == [None] * len(checker.pool._workers)
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


# --- bounded work per group: a deterministic budget of compared answers, a time cap as a safety net ---

# Counts: "7" (as 7 and 7.0) and "0.5" twice each, the other forms once.
BUDGET_GROUP = ["7", r"\frac{1}{2}", "0.5", "7.0", r"\sqrt{4}", r"\dfrac12", "2", "0.5"]


@pytest.mark.parametrize(
    "max_compared, expected",
    [
        # 7 and 0.5 (the most frequent) are compared; every other form keeps a cluster of its own, even
        # \frac{1}{2} and \dfrac12, which equal 0.5.
        (2, [0, 1, 2, 0, 3, 4, 5, 2]),
        # The ties of count 1 go to the first seen: \frac{1}{2} and \sqrt{4} join; \dfrac12 and 2 do not.
        (4, [0, 1, 1, 0, 2, 3, 4, 1]),
        (6, [0, 1, 1, 0, 2, 1, 2, 1]),  # every form compared: as without a budget
        (None, [0, 1, 1, 0, 2, 1, 2, 1]),
    ],
)
def test_the_budget_fallback_is_exact_strings_and_deterministic(max_compared, expected):
    assert cluster_answers(BUDGET_GROUP, max_compared=max_compared) == expected
    # The same clusters from a fresh checker (empty cache), and with other groups in the same batch.
    checker = EquivalenceChecker()
    batch = [["3", "4"], BUDGET_GROUP, [r"\sqrt{4}", "2", "0.5"]]
    assert checker.cluster_groups(batch, max_compared=max_compared)[1] == expected
    checker.close()


def test_groups_within_the_budget_cluster_as_without_one():
    groups = [
        [r"\frac{1}{2}", "7", None, r"\dfrac12", "0.5", "7.0", r"\frac12", "8"],
        ["(x+1)^2", "x^2+2x+1", "x=5", "5", r"\sqrt{8}", r"2\sqrt{2}", "3", "4"],
    ]
    assert cluster_answer_groups(groups) == cluster_answer_groups(groups, max_compared=None, max_seconds=None)


def hostile_group() -> list[str]:
    """1,000 distinct answers, each costly to parse or to compare, or rejected by the size guards."""
    answers = []
    for k in range(250):
        answers += [
            f"x^{{{k + 2}}}+{k + 2}x+{k + 3}",  # distinct polynomials: a math-verify comparison each
            "(" * 20 + str(k) + ")" * 20,  # 20 brackets deep
            "+".join([f"x^{{{k}}}"] * 120),  # over MAX_ANSWER_CHARS
            rf"{k}^{{{k}^{{9}}}}",  # a power tower
        ]
    return answers


def test_a_group_of_1000_distinct_hostile_answers_is_decided_within_the_budget():
    answers = hostile_group()
    answers[5] = "3+2x+x^{2}"  # within the budget, equivalent to answers[0]: joins its cluster
    answers[500] = "2x+x^{2}+3"  # beyond the budget, also equivalent to answers[0]: a cluster of its own
    checker = EquivalenceChecker()
    clusters = checker.cluster(answers, max_seconds=None)  # the deterministic budget alone
    checker.close()
    assert len(set(answers)) == 1000
    assert clusters[5] == clusters[0] == 0
    assert clusters[500] != 0
    assert clusters == [0, 1, 2, 3, 4, 0] + list(range(5, 999))
    assert checker.comparisons <= MAX_COMPARED_ANSWERS * (MAX_COMPARED_ANSWERS - 1) // 2
    assert checker.groups_out_of_time == 0


def test_the_time_cap_is_a_safety_net():
    checker = EquivalenceChecker()
    group = ["(x+1)^2", "x^2+2x+1", "1+2x+x^2"]
    # Any comparison takes more than a microsecond: the first is made, and the group is then out of time.
    assert checker.cluster(group, max_seconds=1e-6) == [0, 0, 1]
    assert checker.groups_out_of_time == 1
    assert checker.cluster(group, max_seconds=None) == [0, 0, 0]
    # Within one message, the worker itself skips the pairs of a group whose time is spent.
    left = [1e-6]
    verdicts = checker._verdicts([("x^3", "x^2+2x+1"), ("x^3", "x+7"), ("x^3", "2x")], [0, 0, 0], left)
    assert verdicts == [False, None, None] and left[0] < 0
    checker.close()
    with pytest.raises(ValueError, match="max_compared"):
        checker.cluster(group, max_compared=0)
    with pytest.raises(ValueError, match="max_seconds"):
        checker.cluster(group, max_seconds=0)


# --- no global lock ----------------------------------------------------------------------------------


def test_in_process_decisions_do_not_wait_for_busy_workers():
    checker = EquivalenceChecker()
    results = []
    with checker.pool._every_worker():  # every worker lent out, as to a long hostile batch
        pairs = [("0.5", r"\frac12"), ("3", "4")]
        thread = threading.Thread(target=lambda: results.append(checker.equivalent_many(pairs)))
        thread.start()
        thread.join(timeout=60)
    assert results == [[True, False]]
    checker.close()


# --- bounded memory ----------------------------------------------------------------------------------


def traced_growth(fill) -> int:
    """Bytes still allocated after ``fill()`` returns, as tracemalloc counts them."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fill()
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return growth


def test_byte_lru_holds_its_byte_cap():
    cache = ByteLRU(max_bytes=1 << 20)

    def fill():
        for i in range(5000):
            cache.put(f"{i:06d}" + "x" * 2000, f"{i:06d}" + "y" * 2000)

    growth = traced_growth(fill)
    assert cache.nbytes <= cache.max_bytes
    assert 200 < len(cache) < 5000  # the least recently used were dropped
    assert growth < 1.25 * cache.max_bytes  # what it counts is what it holds
    assert cache.get("004999" + "x" * 2000) == "004999" + "y" * 2000
    assert cache.get("000000" + "x" * 2000) is None
    cache.put("huge", "z" * (1 << 20))  # over a 16th of the cap: not kept, nothing evicted for it
    assert cache.get("huge") is None and cache.nbytes <= cache.max_bytes


def test_answer_caches_are_bounded_in_bytes():
    checker = EquivalenceChecker(cache_bytes=1 << 20)
    # 5,000 pairs of 60-digit numbers, decided in-process, each result some 450 bytes in the cache.
    pairs = [(f"{i:060d}", f"{i + 1:060d}") for i in range(5000)]
    growth = traced_growth(lambda: checker.equivalent_many(pairs))
    assert checker._cache.nbytes <= 1 << 20
    assert 1000 < len(checker._cache) < 5000
    assert checker.pool._workers == [None] * len(checker.pool._workers)
    assert growth < 1.25 * ((1 << 20) + CANONICAL_CACHE_BYTES)
    # Answers too long for math-verify are decided at a glance, and their verdicts are not kept.
    long_answer = "2+" + "x+" * 400 + "1"
    assert checker.equivalent(long_answer, "1") is False
    assert checker._cache.get((long_answer, "1")) is None

    def canonical_forms_of_long_answers():
        for i in range(2000):
            canonical_answer(f"{i} " + "y" * 20_000)

    assert traced_growth(canonical_forms_of_long_answers) < 1.25 * CANONICAL_CACHE_BYTES
    assert _CANONICAL_CACHE.nbytes <= CANONICAL_CACHE_BYTES
