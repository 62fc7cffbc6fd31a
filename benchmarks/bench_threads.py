"""Wall time of the commands that compute with torch on the CPU, by number of torch threads: the
measurement behind the one default of ``--threads`` (docs/launch_modes.md, "CPU threads").

Each command runs as a user runs it (``python -m corewarding …``, a fresh process, start-up included),
with each ``--threads`` count and with none (the default rule: the cores no other process is using),
interleaved and repeated so that a change of the machine's load falls on all of them; the 1-minute load
average is read before each run.

    python benchmarks/bench_threads.py [--repeats 2] [--steps 4] [--questions 100] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from statistics import median

COMMANDS = {
    "train (majority_vote, {steps} steps)": [
        "train", "--config", "tiny/majority_vote", "--max_steps", "{steps}", "--eval_strategy", "no",
        "--output_dir", "{folder}/train-{run}",
    ],
    "eval (tiny, {questions} questions, -k 4)": [
        "eval", "tiny", "synthetic", "--limit", "{questions}", "-k", "4", "--max-new-tokens", "48",
    ],
}


def timed(arguments: list[str]) -> float:
    """Seconds of one command, as a user runs it; fails loudly when the command does."""
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "corewarding", *arguments], check=False, capture_output=True, text=True,
        env=environment,
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--questions", type=int, default=100, help="questions the eval command scores")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}", help="comma-separated counts")
    options = parser.parse_args()
    counts: list[int | None] = [int(n) for n in options.threads.split(",")] + [None]
    seconds: dict[tuple[str, int | None], list[float]] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(options.repeats):
            for name, template in COMMANDS.items():
                for count in counts:
                    run = len(loads)
                    arguments = [
                        a.format(steps=options.steps, questions=options.questions, folder=folder, run=run)
                        for a in template
                    ]
                    loads.append(os.getloadavg()[0])
                    threads = ["--threads", str(count)] if count is not None else []
                    seconds.setdefault((name, count), []).append(timed([*arguments, *threads]))
    print(f"{os.cpu_count()} CPU cores; 1-minute load average before the runs: "
          f"{min(loads):.2f}–{max(loads):.2f}; median of {options.repeats} runs (each run's seconds)\n")
    headers = [f"--threads {n}" if n is not None else "default" for n in counts]
    print("| command | " + " | ".join(headers) + " |")
    print("| --- |" + " --- |" * len(counts))
    for name in COMMANDS:
        cells = []
        for count in counts:
            runs = seconds[(name, count)]
            cells.append(f"{median(runs):.1f} s ({', '.join(f'{s:.0f}' for s in runs)})")
        label = name.format(steps=options.steps, questions=options.questions)
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
