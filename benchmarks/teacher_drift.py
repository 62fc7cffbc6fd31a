"""Does Co-rewarding-II's EMA teacher teach worse than a frozen one because it absorbs the policy's early
drift? The teacher experiment of issue 31 on the ``hard`` regime (docs/results.md, "The teacher
experiment").

Every run: Co-rewarding-II on ``tiny-hard``, 100 steps, the reference's KL term (beta 0.001, anchored to
the teacher), the paper's learning-rate schedule shape (cosine, 10% linear warm-up), the teacher's
cosine EMA schedule a_start → a_end = 1e-5, and a fixed probe set (the first 8 training questions)
on which the teacher's majority is taken every step (``teacher_probe_problems``). Conditions:

* teachers: (a) ``frozen_then_ema`` frozen for steps 1–30, then EMA; (b) ``ema_then_frozen`` EMA for
  steps 1–30, then frozen; (c) ``ema`` EMA throughout; (d) ``frozen`` never updated;
* dose response over a_start ∈ {0, 1e-3, 3e-3, 1e-2} (0 is (d), 1e-2 is (c));
* (c) and (d) with beta 0 (no KL term), the setting of the study's runs.

``run`` queues the runs (seed-major, so that an interrupted queue leaves every condition with as many
seeds as possible), two at a time, one thread each, skipping those already stored, and stores each as it
ends: its metrics, probe file (gzipped) and config go into docs/results/teacher_drift (``store`` does the
same for every run of a folder);
``table`` prints the results table from the stored files (docs/results.md quotes it).

    PYTHONPATH=. nohup nice -n 10 python benchmarks/teacher_drift.py run --seeds 0 1 2 3 4 > drift.log &
    PYTHONPATH=. python benchmarks/teacher_drift.py store
    PYTHONPATH=. python benchmarks/teacher_drift.py table
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from functools import lru_cache
from pathlib import Path
from statistics import fmean, stdev

from stored_runs import run_jobs, store_run, train_job

MODEL = "tiny-hard"
STEPS = 100
PROBE_PROBLEMS = 8
RUNS = Path("runs/teacher_drift")
STORED = Path(__file__).resolve().parent.parent / "docs" / "results" / "teacher_drift"
COMMON = [
    "--config", "tiny/co_rewarding_ii", "--model_name_or_path", MODEL, "--max_steps", str(STEPS),
    "--beta", "0.001", "--lr_scheduler_type", "cosine", "--warmup_steps", str(STEPS // 10),
    "--eval_steps", "50", "--max_heldout_problems", "128", "--heldout_samples", "4",
    "--save_strategy", "no", "--teacher_probe_problems", str(PROBE_PROBLEMS), "--threads", "1",
]
#: condition → its settings beyond COMMON, in the order the queue runs them.
CONDITIONS = {
    "frozen_then_ema": ["--teacher_first_update_step", "31"],
    "ema_then_frozen": ["--teacher_last_update_step", "30"],
    "ema": [],
    "frozen": ["--teacher_rate_start", "0", "--teacher_rate_end", "0"],
    "a_start_1e-3": ["--teacher_rate_start", "0.001"],
    "a_start_3e-3": ["--teacher_rate_start", "0.003"],
    # (c) and (d) without the KL term (beta 0: the setting of the study's runs), to tell whether the anchor
    # to the teacher is what lets the updated teacher pull ahead of the frozen one.
    "ema_beta_0": ["--beta", "0"],
    "frozen_beta_0": ["--teacher_rate_start", "0", "--teacher_rate_end", "0", "--beta", "0"],
}
#: The frozen teacher each condition is compared with, when not ``frozen`` (the same beta).
FROZEN_OF = {"ema_beta_0": "frozen_beta_0"}
STORED_JSONL = ("metrics.jsonl", "teacher_probe.jsonl")
#: The windows of steps over which the teacher's probe labels are counted: before, after the 30-step
#: switch of (a) and (b), and the end.
WINDOWS = ((1, 30), (31, 60), (81, 100))


def run_queue(runs: Path, seeds: list[int], parallel: int, conditions: list[str]) -> None:
    """Run what is not stored yet, ``parallel`` at a time; each run is stored as soon as it ends."""
    run_jobs({
        f"{condition}/seed-{seed}": ([], train_job(
            [*COMMON, *CONDITIONS[condition], "--seed", str(seed)], runs / condition / f"seed-{seed}",
            STORED / condition / f"seed-{seed}", jsonl=STORED_JSONL))
        for seed in seeds for condition in conditions
        if not (STORED / condition / f"seed-{seed}" / "metrics.jsonl.gz").exists()
    }, parallel)


def store(runs: Path) -> None:
    """Each run of ``runs`` into STORED/<condition>/seed-S; a run stopped before its end (it has no final
    model) into STORED/stopped/<condition>/seed-S, whose probe windows before the stop still count."""
    for run in sorted(runs.glob("*/seed-*")):
        if (run / "teacher_probe.jsonl").is_file():
            finished = (run / "model.safetensors").is_file()
            store_run(run, STORED / ("" if finished else "stopped") / run.relative_to(runs), STORED_JSONL)


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


@lru_cache(maxsize=None)
def premature_answers(seed: int) -> dict[str, str]:
    """question id → its premature answer (the value before the last step) for the run of ``seed``."""
    from corewarding.data.synthetic import chain_of
    from corewarding.tiny.regimes import synthetic_problems

    return {p.id: str(chain_of(p).values()[-2]) for p in synthetic_problems(MODEL, 2000, "train", seed=seed)}


def probe_shares(run: Path, seed: int, steps: range) -> tuple[float, float]:
    """(share of the teacher's probe labels that are right, share that are the premature answer) over
    ``steps``: every probe question of every step in the window."""
    premature = premature_answers(seed)
    counts = Counter()
    for record in _jsonl(run / "teacher_probe.jsonl.gz"):
        if record["step"] in steps:
            for qid, reference, label in zip(record["question_ids"], record["references"], record["labels"]):
                counts["all"] += 1
                counts["right"] += label is not None and label == reference
                counts["premature"] += label is not None and label == premature[qid]
    return counts["right"] / counts["all"], counts["premature"] / counts["all"]


def heldout(run: Path) -> dict[int, float]:
    """step → held-out sampled accuracy (avg@4)."""
    records = _jsonl(run / "metrics.jsonl.gz")
    return {r["step"]: r["eval_sampled_accuracy"] for r in records if "eval_sampled_accuracy" in r}


def run_figures(run: Path) -> dict[str, float]:
    seed = int(run.name.split("-")[1])
    accuracy = heldout(run)
    figures = {"start": 100 * accuracy[0], "step 50": 100 * accuracy[50], "final": 100 * accuracy[STEPS]}
    for first, last in WINDOWS:
        right, premature = probe_shares(run, seed, range(first, last + 1))
        figures[f"right {first}-{last}"], figures[f"premature {first}-{last}"] = 100 * right, 100 * premature
    return figures


def mean_sd(values: list[float]) -> str:
    """mean ± sample SD (n − 1); one value alone."""
    text = f"{values[0]:.1f}" if len(values) == 1 else f"{fmean(values):.1f} ± {stdev(values):.1f}"
    return text.replace("-", "−")


def table(stored: Path = STORED) -> str:
    """One row per teacher: held-out accuracy, its final minus the frozen teacher's paired by seed, and
    per window of steps the share of the teacher's probe labels that are right / the premature answer."""
    window_headers = " | ".join(f"probe labels right / premature %, steps {a}–{b}" for a, b in WINDOWS)
    lines = [
        "| teacher | seeds | held-out avg@4 %: start → step 50 → final "
        "| final − frozen's (same beta), paired (per seed) "
        f"| {window_headers} |",
        "|---|---|---|---|" + "---|" * len(WINDOWS),
    ]
    for condition in CONDITIONS:
        runs = sorted((stored / condition).glob("seed-*"))
        if not runs:
            continue
        figures = {run.name: run_figures(run) for run in runs}
        column = lambda key: mean_sd([f[key] for f in figures.values()])  # noqa: E731
        reference = FROZEN_OF.get(condition, "frozen")
        frozen = {run.name: run_figures(run)["final"] for run in (stored / reference).glob("seed-*")}
        paired = {name: f["final"] - frozen[name] for name, f in figures.items() if name in frozen}
        difference = "–"
        if condition not in ("frozen", *FROZEN_OF.values()) and paired:
            per_seed = ", ".join(
                f"seed {name[5:]}: {value:.1f}".replace("-", "−") for name, value in paired.items()
            )
            difference = f"{mean_sd(list(paired.values()))} ({per_seed})"
        windows = " | ".join(
            f"{column(f'right {a}-{b}')} / {column(f'premature {a}-{b}')}" for a, b in WINDOWS
        )
        lines.append(
            f"| {condition} | {len(runs)} | {column('start')} → {column('step 50')} → {column('final')} "
            f"| {difference} | {windows} |"
        )
    return "\n".join(lines)


def stopped_table(stored: Path = STORED / "stopped") -> str:
    """Runs stopped before step 100 (the session's time ran out): the last step reached and the teacher's
    probe labels over the windows the run completed."""
    lines = [
        "| teacher | seed | stopped after step | " + " | ".join(
            f"probe labels right / premature %, steps {a}–{b}" for a, b in WINDOWS) + " |",
        "|---|---|---|" + "---|" * len(WINDOWS),
    ]
    for run in sorted(stored.glob("*/seed-*")):
        seed = int(run.name.split("-")[1])
        last = max(record["step"] for record in _jsonl(run / "teacher_probe.jsonl.gz"))
        cells = []
        for a, b in WINDOWS:
            if last < b:
                cells.append("–")
                continue
            right, premature = probe_shares(run, seed, range(a, b + 1))
            cells.append(f"{100 * right:.1f} / {100 * premature:.1f}")
        lines.append(f"| {run.parent.name} | {seed} | {last} | {' | '.join(cells)} |")
    return "\n".join(lines)


TABLES = {"table": table, "stopped": stopped_table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    queue = commands.add_parser("run")
    queue.add_argument("--runs", type=Path, default=RUNS, help="the runs' folder")
    queue.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    queue.add_argument("--parallel", type=int, default=2)
    queue.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    commands.add_parser("store").add_argument("--runs", type=Path, default=RUNS, help="the runs' folder")
    commands.add_parser("table").add_argument("name", nargs="?", default="table", choices=list(TABLES))
    args = parser.parse_args()
    if args.command == "run":
        run_queue(args.runs, args.seeds, args.parallel, args.conditions)
    elif args.command == "store":
        store(args.runs)
    else:
        print(TABLES[args.name]())


if __name__ == "__main__":
    main()
