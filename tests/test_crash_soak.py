"""Soak test: one real run killed again and again at seeded random writes (inside checkpoints, metric
records, the cut-back of a resume, held-out evaluations), resumed after each kill, ends with the weights
of an uninterrupted run and every metric record once; resuming it once more trains nothing.

Bounded: 6 kills of a 6-step run of the tiny model, about 9 runs of a few seconds each on one core.
"""

import json
import random

import pytest
import torch
from safetensors.torch import load_file
from test_checkpoints import files_written, run, train_args

from corewarding import checkpoints

SEED = 2026
KILLS = 6
#: Held-out accuracy before training and every 2 steps: a resumed run evaluates again on start.
WITH_EVALUATION = [
    "--heldout_dataset", "synthetic", "--max_heldout_problems", "8", "--heldout_samples", "0",
    "--eval_strategy", "steps", "--eval_steps", "2", "--eval_on_start", "true",
]


def resume_args(out) -> list[str]:
    """Go on from the last complete checkpoint, or (killed before the first) start over."""
    if checkpoints.complete_checkpoints(out):
        return ["--resume", "last"]
    return ["--overwrite_output_dir", "true"]


def steps_and_evaluations(out) -> tuple[list[int], list[int]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r["step"] for r in records if "loss" in r]
    held_out = [r["step"] for r in records if "eval_greedy_accuracy" in r]
    return train, held_out


@pytest.mark.slow
def test_a_run_killed_many_times_at_random_ends_as_the_uninterrupted_run(tmp_path):
    whole = tmp_path / "whole"
    done = run(-1, train_args(whole, *WITH_EVALUATION))
    assert done.returncode == 0, done.stderr[-3000:]
    written = files_written(done)
    assert steps_and_evaluations(whole) == ([1, 2, 3, 4, 5, 6], [0, 2, 4, 6])

    def marker(folder: str) -> int:
        staging = str(whole / folder / f".{checkpoints.MARKER}.")  # then the writer's PID and .tmp
        return next(i for i, path in enumerate(written) if path.startswith(staging) and path.endswith(".tmp"))

    def writes_left(out) -> int:
        """How many writes the uninterrupted run made after the checkpoint a resume starts from, up to its
        last checkpoint's marker (the final model's publication after it is what a resumed finished run
        redoes only when it was cut short: tests/test_train_runs.py)."""
        complete = checkpoints.complete_checkpoints(out)
        start = marker(complete[-1].name) + 1 if complete else 0
        return marker("checkpoint-6") + 1 - start

    out, draw, kills = tmp_path / "soaked", random.Random(SEED), []
    for _ in range(KILLS):
        left = writes_left(out)
        if left < 2:
            break
        kill_at = draw.randint(1, left - 1)  # a resumed session writes at least what is left
        killed = run(kill_at, train_args(out, *WITH_EVALUATION, *resume_args(out)))
        assert killed.returncode == 137, (kills, kill_at, killed.stderr[-3000:])
        kills.append(kill_at)
    assert len(kills) >= 3, kills
    finished = run(-1, train_args(out, *WITH_EVALUATION, *resume_args(out)))
    assert finished.returncode == 0, (kills, finished.stderr[-3000:])

    for name in ("model.safetensors", "teacher.safetensors"):
        expected, got = load_file(whole / "checkpoint-6" / name), load_file(out / "checkpoint-6" / name)
        # Bit-equal: the same machine and the same kind of process run both.
        assert all(torch.equal(got[key], expected[key]) for key in expected), (kills, name)
    assert steps_and_evaluations(out) == ([1, 2, 3, 4, 5, 6], [0, 2, 4, 6]), kills

    metrics = (out / "metrics.jsonl").read_text()
    again = run(-1, train_args(out, *WITH_EVALUATION, "--resume", "last"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"nothing to train: {out / 'checkpoint-6'} is at step 6, the end of its run" in again.stdout
    assert (out / "metrics.jsonl").read_text() == metrics
    assert [p.name for p in checkpoints.complete_checkpoints(out)] == ["checkpoint-6"]
