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
import shutil
from pathlib import Path

from stored_runs import Jobs, run_jobs, train_job

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


def jobs(seeds: list[int], runs: Path, stored: Path, steps: int) -> Jobs:
    """A training job for each (seed, method) not stored yet."""
    return {
        f"seed-{seed}/{method}": ([], train_job(
            ["--config", f"tiny/{method}", *SETTINGS, "--max_steps", str(steps), "--seed", str(seed)],
            runs / f"seed-{seed}" / method, stored / f"seed-{seed}" / method))
        for seed in seeds for method in METHODS
        if not (stored / f"seed-{seed}" / method / "metrics.jsonl.gz").exists()
    }


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
        run_jobs(jobs(args.seeds, args.runs, args.stored, args.steps), args.parallel)
    report(args.stored)


if __name__ == "__main__":
    main()
