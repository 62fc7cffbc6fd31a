"""Crash-safe checkpoints and runs that never mix: a run killed at many points, inside saving
included, resumes to the weights of an uninterrupted run, with every step's metrics once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from corewarding.training import checkpoints

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("fault_injected_run.py")
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def train_args(out, *extra):
    return [
        "train", "--config", "tiny/co_rewarding_ii", "--output_dir", str(out), "--max_steps", "6",
        "--num_generations", "4", "--per_device_train_batch_size", "16", "--max_completion_length", "24",
        "--max_train_problems", "64", "--heldout_dataset", "none", "--eval_strategy", "no",
        "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "1", "--learning_rate", "1e-3",
        *extra,
    ]


def run(kill_at: int, out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(kill_at), *train_args(out, *extra)],
        env=ENV, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )


def steps_logged(out) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "loss" in r]


@pytest.mark.slow
def test_a_run_killed_at_any_write_resumes_to_the_uninterrupted_runs_weights(tmp_path):
    whole = tmp_path / "whole"
    done = run(-1, whole)
    assert done.returncode == 0, done.stderr[-3000:]
    writes = int(done.stdout.strip().splitlines()[-1].removeprefix("writes: "))
    reference = load_file(whole / "checkpoint-6" / "model.safetensors")
    reference_teacher = load_file(whole / "checkpoint-6" / "teacher.safetensors")
    assert [p.name for p in checkpoints.complete_checkpoints(whole)] == ["checkpoint-6"]

    # Kill points spread over the run: before and inside the first checkpoint, between checkpoints, and
    # inside the later ones (with save_total_limit 1, where rotation used to delete the last good one).
    kill_points = sorted(
        {2, 5, 9, 13, writes // 3, writes // 2, writes // 2 + 3, 2 * writes // 3, writes - 6, writes - 2}
    )
    for kill_at in kill_points:
        out = tmp_path / f"killed-{kill_at}"
        killed = run(kill_at, out)
        assert killed.returncode == 137, (kill_at, killed.stderr[-2000:])
        complete = checkpoints.complete_checkpoints(out)
        for folder in complete:
            checkpoints.verify(folder, "co_rewarding_ii")  # nothing complete is damaged
        resumed = run(-1, out, *(["--resume", "last"] if complete else ["--overwrite_output_dir", "true"]))
        assert resumed.returncode == 0, (kill_at, resumed.stderr[-3000:])
        final = out / "checkpoint-6"
        for name, expected in (("model.safetensors", reference), ("teacher.safetensors", reference_teacher)):
            got = load_file(final / name)
            for key in expected:
                torch.testing.assert_close(
                    got[key], expected[key], rtol=0, atol=1e-6, msg=f"kill {kill_at}: {name}:{key}"
                )
        assert steps_logged(out) == [1, 2, 3, 4, 5, 6], kill_at


def test_verify_names_a_missing_or_damaged_file_and_a_checkpoint_of_another_method(tmp_path):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    torch.save({"state": {0: {"exp_avg": torch.zeros(3)}}}, folder / "optimizer.pt")
    size = (folder / "optimizer.pt").stat().st_size
    with pytest.raises(checkpoints.CheckpointError, match="not a complete checkpoint"):
        checkpoints.verify(folder, "co_rewarding_ii")
    checkpoints.mark_complete(folder, 2, "co_rewarding_ii")
    checkpoints.verify(folder, "co_rewarding_ii")
    with pytest.raises(
        checkpoints.CheckpointError, match="saved by a co_rewarding_ii run; this run's method is entropy"
    ):
        checkpoints.verify(folder, "entropy")
    os.truncate(folder / "optimizer.pt", 20)
    with pytest.raises(checkpoints.CheckpointError, match=rf"optimizer.pt is damaged: 20 bytes, saved as {size:,}"):
        checkpoints.verify(folder, "co_rewarding_ii")
    (folder / "optimizer.pt").unlink()
    with pytest.raises(checkpoints.CheckpointError, match="optimizer.pt is missing"):
        checkpoints.verify(folder, "co_rewarding_ii")


def test_resume_last_takes_the_newest_complete_checkpoint_and_says_when_there_is_none(tmp_path):
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_text("weights")
    for step in (2, 4):
        checkpoints.mark_complete(tmp_path / f"checkpoint-{step}", step, "majority_vote")
    assert checkpoints.resolve_resume("last", tmp_path, "majority_vote") == str(tmp_path / "checkpoint-4")
    assert checkpoints.remove_incomplete(tmp_path) == [tmp_path / "checkpoint-6"]
    assert [p.name for p in checkpoints.complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]
    with pytest.raises(checkpoints.CheckpointError, match="has no complete checkpoint yet"):
        checkpoints.resolve_resume("last", tmp_path / "empty", "majority_vote")
    assert checkpoints.resolve_resume(None, tmp_path, "majority_vote") is None
