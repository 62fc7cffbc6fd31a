"""The distractor headline at 5 seeds: ground truth, majority vote and Co-rewarding-I, 180 steps each, with
the study's settings (docs/results.md, "Setup and commands": the demo's budget of 180 steps, held-out
greedy and avg@4 on 128 problems every 10 steps, the recipes of ``tiny/``), all on today's code.

``run`` trains what is not stored yet, two runs at a time on one thread each, and stores each run as it
ends in ``docs/results/distractor_headline/seed-S/<method>/`` (``metrics.jsonl.gz``, ``config.yaml``);
``report`` writes ``report.md`` and ``curves.png`` of the stored runs there (``results_tables.py headline``
reads that report)::

    PYTHONPATH=. nohup nice -n 5 python benchmarks/headline_seeds.py run > headline.log &
    PYTHONPATH=. python benchmarks/headline_seeds.py report
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METHODS = ("ground_truth", "majority_vote", "co_rewarding_i")
SEEDS = (0, 1, 2, 3, 4)
STEPS = 180
RUNS = Path("runs/distractor_headline")
STORED = Path(__file__).resolve().parent.parent / "docs" / "results" / "distractor_headline"
#: The study's budget (corewarding demo --steps 180): no checkpoints, the held-out evaluation every 10 steps.
SETTINGS = [
    "--model_name_or_path", "tiny-distractor", "--eval_steps", "10", "--max_heldout_problems", "128",
    "--heldout_samples", "4", "--save_strategy", "no", "--threads", "1",
]


def train_and_store(method: str, seed: int, runs: Path, stored: Path, steps: int) -> None:
    folder = runs / f"seed-{seed}" / method
    shutil.rmtree(folder, ignore_errors=True)  # an unfinished run starts again
    folder.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "corewarding", "train", "--config", f"tiny/{method}", *SETTINGS,
               "--max_steps", str(steps), "--seed", str(seed), "--output_dir", str(folder)]
    print(time.strftime("%H:%M:%S"), "started", folder, flush=True)
    with open(folder.with_suffix(".log"), "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    print(time.strftime("%H:%M:%S"), "finished", folder, "rc", done.returncode, flush=True)
    if done.returncode:
        return
    target = stored / f"seed-{seed}" / method
    target.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.jsonl", "rb") as source, open(target / "metrics.jsonl.gz", "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:  # mtime 0: the same run, the same bytes
            shutil.copyfileobj(source, out)
    shutil.copy(folder / "config.yaml", target / "config.yaml")


def report(stored: Path) -> None:
    """report.md and curves.png of the stored runs, through ``corewarding report`` on unpacked copies."""
    import tempfile

    from corewarding.report import write_report

    with tempfile.TemporaryDirectory() as scratch:
        folders = []
        for run in sorted(p.parent for p in stored.glob("seed-*/*/metrics.jsonl.gz")):
            copy = Path(scratch) / run.parent.name / run.name
            copy.mkdir(parents=True)
            shutil.copy(run / "config.yaml", copy / "config.yaml")
            with gzip.open(run / "metrics.jsonl.gz", "rb") as packed:
                (copy / "metrics.jsonl").write_bytes(packed.read())
            folders.append(copy)
        # Runs of one method in several seed folders are named seed-S/<method>, as in the other studies.
        written, _ = write_report(folders, stored, title="Distractor headline: ground truth, majority vote, "
                                  "Co-rewarding-I")
    print(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--runs", type=Path, default=RUNS, help="the runs' folder (models included)")
    parser.add_argument("--stored", type=Path, default=STORED, help="where the runs' files are stored")
    args = parser.parse_args()
    if args.command == "run":
        pending = [(m, s) for s in args.seeds for m in METHODS
                   if not (args.stored / f"seed-{s}" / m / "metrics.jsonl.gz").exists()]
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda job: train_and_store(*job, args.runs, args.stored, args.steps), pending))
    report(args.stored)


if __name__ == "__main__":
    main()
