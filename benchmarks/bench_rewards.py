"""Time the voting rewards on a realistic batch: 128 groups x 8 rollouts of MATH-style answers.

Answers are MATH train ground truths (from the Co-rewarding MATH release, its ``train.parquet`` in
``corewarding-math/`` under the folder ``$COREWARDING_SHARED_DATA`` names, when set and present;
else a built-in sample), written in equivalent forms (``\\dfrac``,
decimals, spacing, ``1/2``), mixed with wrong answers, missing answers (10%) and hostile strings (5%:
a 200,000-character answer, 5,000 nested parentheses, code, power towers). Reports the time of
majority-vote and Co-rewarding-I cross-view rewards in equivalence and exact mode, with a cold cache
(the math-verify worker already started) and a warm one, and the ratios the issue sets targets for:
equivalence < 1 s cold, warm equivalence < 3x exact. Cold is judged on the CPU seconds of this process
and its math-verify workers (wall time, shown beside it, stretches with other jobs' load); warm and
exact are this process's CPU time (a warm round should ask no worker: counted, and the ratio not
judged when one did), in interleaved rounds
(``benchmarks/interleaved.py``) with exact timed twice as the self-check.

    python benchmarks/bench_rewards.py [--groups 128] [--rollouts 8] [--rounds 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from fractions import Fraction
from pathlib import Path
from statistics import median

import psutil
from interleaved import machine_quiet, ratio, round_robin, verdict
from rich.console import Console
from rich.table import Table

from corewarding.core.answers import reference_answer
from corewarding.core.equivalence import EquivalenceChecker, set_default_checker
from corewarding.core.rewards import Rollouts, cross_view_rewards, majority_vote_rewards
from corewarding.core.voting import VotingConfig

# The data folder the tests also read (tests/conftest.py), when the environment names it.
DATA = os.environ.get("COREWARDING_SHARED_DATA")
SHARED = Path(DATA) / "corewarding-math" / "train.parquet" if DATA else None
BUILT_IN = [
    "12", r"\frac{3}{4}", r"2\sqrt{3}", r"\frac{\sqrt{2}}{2}", "-5", r"(1,2)", r"\pi", "0.25", "x^2+1", "720",
]
HOSTILE = [
    "x" * 200_000,
    "(" * 5000 + ")" * 5000,
    "__import__('os').system('true')",
    "10**10**10**10",
    r"9^{9^{9}}",
    r"(10^{10})!",
]
COLD_TARGET_S, WARM_TARGET = 1.0, 3.0
# Far from a 3x target, a 10% drift of exact against itself still leaves the verdict sound.
SELF_CHECK_TOLERANCE = 0.10


def references(n: int, rng: random.Random) -> list[str]:
    if SHARED is not None and SHARED.exists():
        import pyarrow.parquet as pq

        truths = pq.read_table(SHARED, columns=["reward_model"]).column("reward_model").to_pylist()
        pool = [reference_answer(t["ground_truth"]) for t in truths]
        pool = [p for p in pool if p]
    else:
        pool = BUILT_IN
    return [rng.choice(pool) for _ in range(n)]


def equivalent_form(answer: str, rng: random.Random) -> str:
    """The same answer as a model might write it differently."""
    frac = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", answer)
    options = [
        answer,
        answer.replace(r"\frac", r"\dfrac"),
        answer.replace(",", ", ").replace("}{", "} {"),
        answer + ".",
    ]
    if frac:
        sign, num, den = frac.groups()
        options += [f"{sign}{num}/{den}", rf"{sign}\tfrac{{{num}}}{{{den}}}"]
        value = Fraction(int(num), int(den))
        if value.denominator in (1, 2, 4, 5, 8, 10, 20, 25):
            options.append(f"{sign}{float(value):g}")
    if re.fullmatch(r"-?\d+", answer):
        options += [answer + ".0", f"{int(answer):,}"]
    return rng.choice(options)


def wrong_form(answer: str, rng: random.Random) -> str:
    if re.fullmatch(r"-?\d+", answer):
        return str(int(answer) + rng.choice([-2, -1, 1, 2, 10]))
    return rng.choice([answer + "+1", "2" + answer, r"\frac{1}{" + answer + "}", str(rng.randint(0, 99))])


def make_groups(groups: int, rollouts: int, seed: int) -> tuple[list[list[str | None]], list[str]]:
    rng = random.Random(seed)
    refs = references(groups, rng)
    batch = []
    for ref in refs:
        wrong = [wrong_form(ref, rng) for _ in range(2)]
        group = []
        for _ in range(rollouts):
            u = rng.random()
            if u < 0.05:
                group.append(rng.choice(HOSTILE))
            elif u < 0.15:
                group.append(None)
            elif u < 0.6:
                group.append(equivalent_form(ref, rng))
            else:
                group.append(rng.choice(wrong))
        batch.append(group)
    return batch, refs


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_timed(fn) -> float:
    """This process's CPU seconds of ``fn()``: unlike wall time, not stretched by other jobs' load."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def cpu_with_workers() -> float:
    """CPU seconds used so far by this process and its child processes (the math-verify workers): the
    live ones, and those that ended and were waited for (a worker killed on its hard timeout)."""
    ended = os.times()
    total = time.process_time() + ended.children_user + ended.children_system
    for child in psutil.Process().children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:  # it ended since the listing; counted once waited for
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=128)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    groups, refs = make_groups(args.groups, args.rollouts, args.seed)
    g = args.rollouts
    answers = [a for group in groups for a in group]
    question_ids = [i // 2 for i in range(len(groups)) for _ in range(g)]  # pairs of groups are two views
    views = [i % 2 for i in range(len(groups)) for _ in range(g)]
    batch = Rollouts(answers=answers, question_ids=question_ids, views=views)
    single = Rollouts(answers=answers, question_ids=[i for i in range(len(groups)) for _ in range(g)])

    exact = VotingConfig(matching="exact")
    rows = []
    for name, fn, rollouts in (
        ("majority vote", majority_vote_rewards, single), ("cross-view (I)", cross_view_rewards, batch)
    ):
        # A fresh checker: empty result cache and empty parse caches in its workers, started untimed.
        checker = EquivalenceChecker()
        startup = timed(checker.start)
        set_default_checker(checker)
        cpu_before = cpu_with_workers()
        cold = timed(lambda: fn(rollouts))
        cold_cpu = cpu_with_workers() - cpu_before
        compared = checker.comparisons
        seconds = round_robin(
            {
                "warm": lambda: cpu_timed(lambda: fn(rollouts)),
                "exact": lambda: cpu_timed(lambda: fn(rollouts, exact)),
                "exact again": lambda: cpu_timed(lambda: fn(rollouts, exact)),
            },
            args.rounds,
        )
        # CPU time counts this process only: a warm round that asked the workers (a cold vote the wall-time
        # cap cut short under load leaves pairs uncached) is undercounted, and the ratio is not judged.
        asked = checker.comparisons - compared
        warm_ratio = ratio(seconds["warm"], seconds["exact"])
        self_check = ratio(seconds["exact again"], seconds["exact"])
        cut = f"{checker.timeouts} / {checker.groups_out_of_time}"
        rows.append((name, cold, cold_cpu, seconds, warm_ratio, self_check, asked, cut))

    table = Table(
        title=f"Voting rewards on {len(groups)} groups x {g} rollouts ({len(answers)} answers); "
        f"{args.rounds} interleaved rounds, ratios: median of per-round ratios [interquartile range]"
    )
    columns = (
        "reward", "equivalence, cold (wall s)", "cold (CPU s, with workers)", "equivalence, warm (CPU ms)",
        "exact (CPU ms)", "warm / exact", "exact / exact (self-check)", "worker comparisons, warm",
        "timeouts / groups the time cap cut",
        f"targets: cold < {COLD_TARGET_S:g} s, warm < {WARM_TARGET:g}x",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for name, cold, cold_cpu, seconds, warm_ratio, self_check, asked, timeouts in rows:
        quiet = machine_quiet(self_check, SELF_CHECK_TOLERANCE)
        warm = "not judged (workers asked)" if asked else verdict(warm_ratio, WARM_TARGET, WARM_TARGET, quiet)
        table.add_row(
            name, f"{cold:.3f}", f"{cold_cpu:.3f}", f"{1000 * median(seconds['warm']):.2f}",
            f"{1000 * median(seconds['exact']):.2f}",
            str(warm_ratio), f"{self_check} {'quiet' if quiet else 'TOO NOISY'}", f"{asked:,}", str(timeouts),
            f"cold {'met' if cold_cpu < COLD_TARGET_S else 'missed'}, "
            f"warm {warm}",
        )
    console = Console(width=230)
    console.print(table)
    console.print(
        f"math-verify workers: {checker.pool.workers}, started in {startup:.2f} s "
        f"(once per process, not timed above); {os.cpu_count()} CPU cores, 1-minute load average "
        f"{os.getloadavg()[0]:.2f}\n"
        f"a self-check outside 1.00 ± {SELF_CHECK_TOLERANCE:.2f} means the machine was too noisy to judge "
        "the ratio"
    )


if __name__ == "__main__":
    main()
