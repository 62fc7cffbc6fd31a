"""What every study script shares: run ``corewarding`` commands as jobs, two at a time on one thread each,
and store what a finished run leaves in ``docs/results/`` (its ``metrics.jsonl`` gzipped, its
``config.yaml``), so that every figure the docs quote is rebuilt from files in the repository.

Used by ``headline_seeds.py``, ``teacher_drift.py``, ``validate_diagnose_fresh.py`` and ``smollm2_study.py``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from corewarding.core.jsonl import read_jsonl

__all__ = ["Jobs", "finished_run", "run_corewarding", "run_jobs", "store_file", "store_run"]

#: ``name → (the jobs it waits for, what it does)``; a job waits only for jobs in the same mapping.
Jobs = dict[str, tuple[list[str], Callable[[], None]]]


def run_corewarding(command: list[str], log: Path, threads: int = 1) -> None:
    """Run ``python -m corewarding COMMAND`` with ``threads`` torch threads, its output in ``log``; stop the
    study with one line when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "corewarding", *command], stdout=out, stderr=out,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        raise SystemExit(f"error: {' '.join(command)} failed (exit {done.returncode}); see {log}")


def finished_run(output: Path) -> bool:
    """A training run that reached its end: its ``metrics.jsonl`` holds the end-of-training summary."""
    path = output / "metrics.jsonl"
    return path.is_file() and any("train_runtime" in r for r in read_jsonl(path)[0] if isinstance(r, dict))


def store_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``, gzipped when ``target`` ends in ``.gz`` (with a fixed mtime, so that
    storing the same run again gives the same bytes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".gz":
        with source.open("rb") as read, target.open("wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                shutil.copyfileobj(read, out)
    else:
        shutil.copy(source, target)


def store_run(run: Path, target: Path, jsonl: tuple[str, ...] = ("metrics.jsonl",)) -> None:
    """A run's ``jsonl`` files (gzipped) and ``config.yaml`` into ``target``."""
    for name in jsonl:
        store_file(run / name, target / f"{name}.gz")
    store_file(run / "config.yaml", target / "config.yaml")
    print("stored", target, flush=True)


def train_job(command: list[str], output: Path, target: Path, threads: int = 1,
              jsonl: tuple[str, ...] = ("metrics.jsonl",)) -> Callable[[], None]:
    """A job that trains ``corewarding train COMMAND --output_dir OUTPUT`` (an unfinished run in ``output``
    starts again; a finished one is kept) and stores it in ``target``."""

    def train() -> None:
        if not finished_run(output):
            shutil.rmtree(output, ignore_errors=True)
            output.parent.mkdir(parents=True, exist_ok=True)
            run_corewarding(["train", *command, "--output_dir", str(output)], output.with_suffix(".log"),
                            threads)
        store_run(output, target, jsonl)

    return train


def run_jobs(jobs: Jobs, parallel: int = 2, after: Callable[[], None] = lambda: None) -> None:
    """Run ``jobs`` ``parallel`` at a time, each as soon as the jobs it waits for are done, in the order
    given; ``after`` runs after each job (a study rewrites its table)."""
    pending, done, running = list(jobs), set(), {}
    with ThreadPoolExecutor(parallel) as pool:
        while pending or running:
            ready = [key for key in pending if all(need in done or need not in jobs for need in jobs[key][0])]
            for key in ready[: parallel - len(running)]:
                pending.remove(key)
                running[pool.submit(jobs[key][1])] = key
                print(time.strftime("%H:%M:%S"), "started", key, flush=True)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                key = running.pop(future)
                done.add(key)
                print(time.strftime("%H:%M:%S"), "finished", key, flush=True)
                after()
