"""The math-verify worker pool: its time bounds, its time slices, its first-come-first-served slots, and
its ownership by the checker it is handed to."""

import threading
import time

import pytest

from corewarding.core.equivalence import EquivalenceChecker
from corewarding.core.verifier_pool import VerifierPool, _Slots

SLOW = r"\sin(10^{99999})"  # legal LaTeX that sympy takes seconds to evaluate
EASY = (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2")


@pytest.mark.timeout(60)
def test_a_slow_comparison_stops_at_the_soft_bound():
    pool = VerifierPool(timeout_s=0.5, hard_timeout_s=20.0, workers=1)
    assert pool.compare([("x+1", "1+x")]) == [True]
    worker = pool._workers[0]
    assert pool.compare([(SLOW, "1.5")]) == [False]
    assert pool.timeouts == 1
    assert pool._workers[0] is worker and worker.proc.poll() is None  # the soft bound, not a kill
    assert pool.compare([EASY]) == [True]  # the same worker goes on
    pool.close()


@pytest.mark.timeout(60)
def test_a_stuck_worker_is_killed_at_the_hard_bound_and_restarted():
    pool = VerifierPool(timeout_s=30.0, hard_timeout_s=0.5, workers=1)  # soft bound out of the way
    pool.compare([("x+1", "1+x")])
    worker = pool._workers[0]
    assert pool.compare([(SLOW, "1.5")]) == [False]
    assert pool.timeouts == 1
    assert worker.proc.poll() is not None  # killed
    assert pool.compare([EASY]) == [True]  # a fresh worker answers
    pool.close()


@pytest.mark.timeout(60)
def test_a_stop_signal_to_every_process_leaves_the_workers_to_their_owner():
    """Ctrl-C reaches the whole process group, Slurm's SIGTERM every process of the job: the training
    process stops at a step's end, and its workers must answer that step's comparisons meanwhile."""
    import os
    import signal

    pool = VerifierPool(timeout_s=5.0, hard_timeout_s=20.0, workers=1)
    pool.start()
    worker = pool._workers[0]
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        os.kill(worker.proc.pid, stop)
    time.sleep(0.5)
    assert pool.compare([EASY]) == [True] and pool.timeouts == 0
    assert pool._workers[0] is worker and worker.proc.poll() is None
    pool.close()
    assert worker.proc.wait(timeout=10) is not None


def test_a_message_deferred_after_its_time_slice_is_answered_later(monkeypatch):
    monkeypatch.setattr("corewarding.core.verifier_pool._SLICE_S", 0.0)  # one comparison per slice
    pool = VerifierPool()
    pairs = [("(x+1)^2", "x^2+2x+1"), (r"\sqrt{8}", r"2\sqrt{2}"), ("x^3", "x^2"), (r"\pi", "3.14")]
    assert pool.compare(pairs) == [True, True, False, False]
    assert pool.comparisons == len(pairs)
    pool.close()


def test_a_spent_budget_skips_the_rest_of_its_group():
    pool = VerifierPool(workers=1)
    left = [1e-9, 60.0]
    verdicts = pool.compare([("x^3", "x^2+1"), ("x^3", "x+7"), ("x^2", "x\\cdot x")], [0, 0, 1], left)
    assert verdicts[1] is None and verdicts[2] is True  # group 0 out of time after one comparison
    assert left[0] < 0 < left[1] < 60.0
    pool.close()


def test_a_returned_worker_goes_to_the_caller_that_waited_longest():
    slots = _Slots(1)
    order = []
    assert slots.acquire() == 0

    def wait_for_slot(name):
        slot = slots.acquire()
        order.append(name)
        slots.release(slot)

    waiting = threading.Thread(target=wait_for_slot, args=("waiting",))
    waiting.start()
    while not slots._waiting:
        time.sleep(0.001)
    slots.release(0)
    wait_for_slot("returning")  # a plain lock could hand the slot straight back to this thread
    waiting.join()
    assert order == ["waiting", "returning"]


def test_a_checker_uses_the_pool_it_is_handed_and_counts_its_work():
    pool = VerifierPool(workers=1)
    checker = EquivalenceChecker(pool=pool)
    assert checker.equivalent("(x+1)^2", "x^2+2x+1") and checker.pool is pool
    assert pool.comparisons == checker.comparisons == 1
    assert checker.equivalent("0.5", r"\frac12") and pool.comparisons == 1  # decided in-process
    checker.close()
    assert pool._workers == [None]
