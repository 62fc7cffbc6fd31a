"""A run killed after a checkpoint and resumed ends where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from corewarding.tiny.regimes import tiny_model_dir

TINY_MODEL_DIR = tiny_model_dir("tiny")

REPO_ROOT = Path(__file__).resolve().parents[1]


def command(out, *extra):
    return [
        sys.executable, "-m", "corewarding.cli", "train", "--config", "configs/tiny/co_rewarding_ii.yaml",
        "--output_dir", str(out), "--max_steps", "4",
        "--num_generations", "4", "--per_device_train_batch_size", "16", "--max_completion_length", "24",
        "--max_train_problems", "64", "--heldout_dataset", "none", "--eval_strategy", "no",
        "--save_strategy", "steps", "--save_steps", "2", "--learning_rate", "1e-3", *extra,
    ]


@pytest.mark.slow
def test_kill_and_resume_restores_policy_optimizer_and_teacher(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(whole), env=env, cwd=REPO_ROOT, check=True, capture_output=True, timeout=600)

    process = subprocess.Popen(command(killed), env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    marker = killed / "checkpoint-2" / "teacher_state.json"  # written last in a checkpoint
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert marker.exists() and not (killed / "checkpoint-4").exists(), "the run was not killed between checkpoints"

    subprocess.run(command(killed, "--resume", "last"), env=env, cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=600)

    for name in ("model.safetensors", "teacher.safetensors"):
        a, b = load_file(whole / "checkpoint-4" / name), load_file(killed / "checkpoint-4" / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{name}:{key}")
    start = load_file(TINY_MODEL_DIR / "model.safetensors")
    end = load_file(whole / "checkpoint-4" / "model.safetensors")
    assert any(not torch.equal(start[k], end[k]) for k in start), "training did not move the policy"
    opt_a = torch.load(whole / "checkpoint-4" / "optimizer.pt", weights_only=True)["state"]
    opt_b = torch.load(killed / "checkpoint-4" / "optimizer.pt", weights_only=True)["state"]
    for key in opt_a:
        torch.testing.assert_close(opt_a[key]["exp_avg"], opt_b[key]["exp_avg"], rtol=0, atol=1e-6)
