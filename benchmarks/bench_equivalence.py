"""Time the bounded answer equivalence on the cases of the issue, and check the MATH batch is unchanged.

Each case runs on a fresh :class:`EquivalenceChecker` (empty caches, workers started untimed), with
the default budget: 16 compared answers per group, 5 s of worker time as a safety net.

* one group of 1,000 distinct polynomials (before: 64 took 108 s, 1,000 did not finish in 300 s);
* one group of 1,000 distinct hostile answers of five kinds: polynomials, 20-deep brackets, answers
  over 512 characters, power towers, and sines of 5-digit powers of ten (every comparison with one
  runs into the 1 s timeout);
* 8 distinct 20-deep parenthesised answers (before: 28 s);
* a plain pair asked from a second thread while the first clusters the hostile group (before: it
  waited 10 s behind it);
* ``reference_answer`` of a 200,000-character cell (before: 83 s);
* memory kept by the caches after 5,000 answers of 10,000 characters (before: +97 MB);
* the MATH batch of ``bench_rewards.py`` (128 groups x 8 rollouts): votes with the default budget vs
  with no budget at all, and warm equivalence vs exact matching in this process's CPU time (interleaved
  rounds, ``benchmarks/interleaved.py``, with exact timed twice as the self-check).

Wall times stretch with other jobs' load on a shared machine; the groups' CPU seconds (this process and
its math-verify workers) are shown beside them.

Targets: each 1,000-answer group decided in at most 10 s; the MATH batch's votes all identical.

    python benchmarks/bench_equivalence.py [--seed 0] [--answers 1000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
import tracemalloc
from statistics import median

from bench_rewards import cpu_timed, cpu_with_workers, make_groups
from interleaved import machine_quiet, ratio, round_robin
from rich.console import Console
from rich.table import Table

from corewarding.core.answers import CANONICAL_CACHE_BYTES, canonical_answer, reference_answer
from corewarding.core.equivalence import (
    CACHE_BYTES,
    MAX_COMPARED_ANSWERS,
    MAX_COMPARISON_SECONDS,
    EquivalenceChecker,
    set_default_checker,
)
from corewarding.core.voting import VotingConfig, majority_votes

TARGET_S = 10.0


def polynomials(n: int) -> list[str]:
    return [f"x^{{{k + 2}}}+{k + 2}x+{k + 3}" for k in range(n)]


def hostile(n: int) -> list[str]:
    answers = []
    for k in range(n // 5):
        answers += [
            f"x^{{{k + 2}}}+{k + 2}x+{k + 3}",
            "(" * 20 + str(k) + ")" * 20,
            "+".join([f"x^{{{k}}}"] * 120),
            rf"{k}^{{{k}^{{9}}}}",
            rf"\sin(10^{{{99999 - k}}})",
        ]
    return answers


def fresh_checker() -> EquivalenceChecker:
    checker = EquivalenceChecker()
    checker.start()
    set_default_checker(checker)
    return checker


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def group_case(name: str, answers: list[str], before: str) -> tuple:
    checker = fresh_checker()
    cpu = cpu_with_workers()
    seconds, clusters = timed(lambda: checker.cluster(answers))
    cpu = cpu_with_workers() - cpu
    n = len(set(answers))
    return (
        name, before, seconds, cpu, checker.comparisons, n * (n - 1) // 2, len(set(clusters)),
        checker.groups_out_of_time, checker.timeouts,
    )


def waiting_pair_case(n: int) -> tuple[float, float]:
    """Seconds a plain pair took from a second thread, and the hostile clustering it overlapped."""
    checker = fresh_checker()
    finished = {}
    answers = hostile(n)
    busy = threading.Thread(target=lambda: finished.update(s=timed(lambda: checker.cluster(answers))[0]))
    busy.start()
    while checker.comparisons == 0:  # the hostile group holds the workers
        time.sleep(0.01)
    seconds, verdict = timed(lambda: checker.equivalent("(x+1)^2", "x^2+2x+1"))
    busy.join()
    assert verdict
    return seconds, finished["s"]


def cache_growth_mb() -> float:
    """Megabytes still allocated after 5,000 answers of 10,000 characters went through voting."""
    fresh_checker()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, 5000, 8):
        group = [f"{i} " + "y" * 10_000 for i in range(start, start + 8)]
        majority_votes([group])
        canonical_answer(group[0])
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return growth / 1e6


def math_batch(seed: int, rounds: int) -> tuple:
    """Groups of the MATH batch, groups whose vote the budget changed, cold equivalence seconds, and the
    interleaved rounds' seconds of warm equivalence, exact, and exact again (the self-check)."""
    groups, _ = make_groups(128, 8, seed)
    checker = fresh_checker()
    cold, budgeted = timed(lambda: majority_votes(groups))
    unbounded = majority_votes(groups, VotingConfig(max_compared_answers=None, max_comparison_seconds=None))
    changed = sum(a != b for a, b in zip(budgeted, unbounded))
    exact = VotingConfig(matching="exact")
    seconds = round_robin(
        {
            "warm": lambda: cpu_timed(lambda: majority_votes(groups)),
            "exact": lambda: cpu_timed(lambda: majority_votes(groups, exact)),
            "exact again": lambda: cpu_timed(lambda: majority_votes(groups, exact)),
        },
        rounds,
    )
    assert checker.groups_out_of_time == 0
    return len(groups), changed, cold, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--answers", type=int, default=1000, help="answers a large group holds")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds")
    args = parser.parse_args()
    n = args.answers

    groups = [
        group_case(f"{n:,} distinct polynomials", polynomials(n), "> 300 s (1,000)"),
        group_case(f"{n:,} distinct hostile answers (5 kinds)", hostile(n), "-"),
        group_case("8 distinct 20-deep answers", ["(" * 20 + str(k) + ")" * 20 for k in range(8)], "28 s"),
    ]
    budget = f"{MAX_COMPARED_ANSWERS} compared answers, {MAX_COMPARISON_SECONDS:g} s cap"
    table = Table(title=f"One group, default budget ({budget})")
    for column in ("group", "before", "now (wall s)", "now (CPU s, with workers)", "wall / 10 s",
                   "comparisons", "without budget", "clusters", "time cap acted", "timeouts"):
        table.add_column(column, justify="right")
    for name, before, seconds, cpu, compared, unbounded, clusters, cut, timeouts in groups:
        table.add_row(name, before, f"{seconds:.2f}", f"{cpu:.2f}", f"{seconds / TARGET_S:.2f}",
                      f"{compared:,}",
                      f"{unbounded:,}", f"{clusters:,}", "yes" if cut else "no", str(timeouts))
    console = Console(width=200)
    console.print(table)

    waited, overlapped = waiting_pair_case(n)
    cell = "9 (" + "a" * 199_997
    reference_s, reference = timed(lambda: reference_answer(cell))
    assert reference == canonical_answer(cell)
    growth = cache_growth_mb()
    size, changed, cold, seconds = math_batch(args.seed, args.rounds)
    warm_ratio = ratio(seconds["warm"], seconds["exact"])
    self_check = ratio(seconds["exact again"], seconds["exact"])

    other = Table(title="The other cases of the issue")
    for column in ("case", "before", "now", "ratio"):
        other.add_column(column, justify="right")
    other.add_row("plain pair while another thread clusters the hostile group (that)", "10 s",
                  f"{waited:.2f} s ({overlapped:.2f} s)", f"{waited / overlapped:.2f} of it")
    other.add_row("reference_answer, 200,000 characters", "83 s", f"{reference_s * 1000:.1f} ms", "")
    cap_mb = (CACHE_BYTES + CANONICAL_CACHE_BYTES) / 1e6
    other.add_row("cache growth, 5,000 answers of 10,000 chars", "+97 MB", f"+{growth:.1f} MB",
                  f"{growth / cap_mb:.2f} of the caps ({cap_mb:.0f} MB)")
    other.add_row(f"MATH batch: votes changed by the budget, of {size}", "-", str(changed), "")
    other.add_row("MATH batch: equivalence cold (wall), warm vs exact (CPU)", "-",
                  f"{cold:.2f} s, {median(seconds['warm']) * 1000:.1f} ms "
                  f"vs {median(seconds['exact']) * 1000:.1f} ms",
                  f"warm {warm_ratio}")
    other.add_row("MATH batch: exact vs exact (the self-check)", "-", "",
                  f"{self_check} ({'quiet' if machine_quiet(self_check) else 'TOO NOISY'})")
    console.print(other)
    console.print(f"targets: each 1,000-answer group <= {TARGET_S:.0f} s; no MATH vote changed by the budget")


if __name__ == "__main__":
    main()
