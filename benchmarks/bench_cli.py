"""Seconds until the command line answers: every command's ``--help`` (target: under 2 s) and a few
one-line mistakes, each a fresh ``python -m corewarding`` process as a user starts it.

The target is met by importing torch, transformers and TRL only when a command runs, never for its help
or for the checks of its options (``tests/test_cli_conventions.py`` checks that without timing anything).

    python benchmarks/bench_cli.py [--repeats 3] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from statistics import median

INVOCATIONS = [
    ["--help"],
    *([name, "--help"] for name in (
        "demo", "diagnose", "rephrase", "validate-pairs", "train", "eval", "report", "pretrain",
    )),
    ["rm", "annotate", "--help"],
    ["rm", "train", "--help"],
    ["train", "--config", "tiny/majority_vote", "--method", "majority_votes"],
    ["train", "--config", "tiny/majority_vote", "--lerning_rate", "1e-5"],
    ["eval", "tiny", "--max_new_tokens", "x"],
]


def seconds(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "corewarding", *arguments], capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="time only the first N invocations")
    options = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPU cores, 1-minute load average {load:.2f}; median of {options.repeats} runs\n")
    print("| invocation | seconds |\n| --- | --- |")
    for arguments in INVOCATIONS[: options.limit]:
        runs = [seconds(arguments) for _ in range(options.repeats)]
        print(f"| `corewarding {' '.join(arguments)}` | {median(runs):.2f} |")


if __name__ == "__main__":
    main()
