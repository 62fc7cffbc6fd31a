"""Crash-safe checkpoints and runs that never mix: a run killed at many points, inside saving
included, resumes to the weights of an uninterrupted run, with every step's metrics once."""

import errno
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from typer.testing import CliRunner

from corewarding import checkpoints
from corewarding.cli import app
from corewarding.cooper.co_training import CooperRewardModel
from corewarding.cooper.reward_model import RewardModel
from corewarding.core.collapse import read_metrics
from corewarding.data.synthetic import generate_problems

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("fault_injected_run.py")
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


#: The settings of the crash tests' runs: Co-rewarding-II (a teacher to save too), 6 steps, a checkpoint
#: every 2 of which only the newest is kept.
SETTINGS = [
    "--config", "tiny/co_rewarding_ii", "--max_steps", "6", "--num_generations", "4",
    "--per_device_train_batch_size", "16", "--max_completion_length", "24", "--max_train_problems", "64",
    "--heldout_dataset", "none", "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "2",
    "--save_total_limit", "1", "--learning_rate", "1e-3",
]


def train_args(out, *extra):
    return ["train", "--output_dir", str(out), *SETTINGS, *extra]


def run(fault, command: list[str]) -> subprocess.CompletedProcess:
    """``command`` under :mod:`fault_injected_run` with ``fault`` (a write to die at, or ``fail:…``)."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(fault), *command],
        env=ENV, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )


def files_written(done: subprocess.CompletedProcess) -> list[str]:
    """The files a run wrote, in order (one per write), as fault_injected_run prints them."""
    return [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("write ")]


def steps_logged(out) -> list[int]:
    """The steps of the training records (a kill while the end-of-run summary was written may leave that
    line cut; the project's readers skip such a line)."""
    return [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed (after the libraries' warnings), checked to be alone."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """The uninterrupted run: its folder and the files it wrote, in order."""
    whole = tmp_path_factory.mktemp("train") / "whole"
    done = run(-1, train_args(whole))
    assert done.returncode == 0, done.stderr[-3000:]
    return whole, files_written(done)


@pytest.mark.slow
def test_a_run_killed_at_any_write_resumes_to_the_uninterrupted_runs_weights(whole_run, tmp_path):
    whole, written = whole_run
    writes = len(written)
    assert [p.name for p in checkpoints.complete_checkpoints(whole)] == ["checkpoint-6"]

    # Kill points spread over the run: before and inside the first checkpoint, between checkpoints, and
    # inside the later ones (with save_total_limit 1, where rotation used to delete the last good one).
    kill_points = sorted(
        {2, 5, 9, 13, writes // 3, writes // 2, writes // 2 + 3, 2 * writes // 3, writes - 6, writes - 2}
    )
    for kill_at in kill_points:
        out = tmp_path / f"killed-{kill_at}"
        killed = run(kill_at, train_args(out))
        assert killed.returncode == 137, (kill_at, killed.stderr[-2000:])
        complete = checkpoints.complete_checkpoints(out)
        for folder in complete:
            checkpoints.verify(folder, "co_rewarding_ii")  # nothing complete is damaged
        resume = ["--resume", "last"] if complete else ["--overwrite_output_dir", "true"]
        resumed = run(-1, train_args(out, *resume))
        assert resumed.returncode == 0, (kill_at, resumed.stderr[-3000:])
        assert_same_final_weights(out, whole, f"kill {kill_at}")
        assert steps_logged(out) == [1, 2, 3, 4, 5, 6], kill_at


SLURM_SCRIPT = REPO_ROOT / "examples" / "slurm" / "train.sbatch"


def started(command: list[str], env: dict, log) -> subprocess.Popen:
    """``command`` started in the background, its output into the file ``log``."""
    with open(log, "w") as output:
        return subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)


def signalled_after_step(
    process: subprocess.Popen, out, step: int, signum: int, log, pid=None
) -> tuple[int, str]:
    """Once ``out``'s metrics hold training step ``step``, ``signum`` to ``pid()`` (default: ``process``);
    then the exit code of ``process`` and what it printed."""
    deadline = time.monotonic() + 600
    while not (out / "metrics.jsonl").is_file() or max(steps_logged(out), default=0) < step:
        assert process.poll() is None, Path(log).read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(pid() if pid else process.pid, signum)
    process.wait(timeout=600)
    return process.returncode, Path(log).read_text()


def stop_line(out, step: int, signal_name: str) -> str:
    return (
        f"stopped by {signal_name} at step {step} of 6: checkpoint {out / f'checkpoint-{step}'} written; "
        "go on with the same command and --resume last"
    )


def stopped_at(out) -> int:
    """The step of the run's one complete checkpoint, checked intact."""
    (folder,) = checkpoints.complete_checkpoints(out)
    checkpoints.verify(folder, "co_rewarding_ii")
    return int(folder.name.removeprefix("checkpoint-"))


def slurm_env(tmp_path, run_dir, processes: int) -> dict:
    """The environment of ``examples/slurm/train.sbatch`` as Slurm starts it, with an ``scontrol`` that
    records what it is asked (``scontrol.log``) in place of Slurm's."""
    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    (tools / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (tools / "scontrol").chmod(0o755)
    return {
        **ENV, "PATH": f"{tools}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "RUN_DIR": str(run_dir),
        "PROCESSES": str(processes), "PYTHON": sys.executable, "ACCELERATE_USE_CPU": "1",  # DDP on the CPU
    }


def requeues(tmp_path) -> list[str]:
    log = tmp_path / "scontrol.log"
    return log.read_text().splitlines() if log.is_file() else []


@pytest.mark.slow
def test_a_run_stopped_by_sigusr1_or_sigterm_saves_its_step_and_resumes_to_the_uninterrupted_weights(
    whole_run, tmp_path
):
    whole, _ = whole_run
    out, log = tmp_path / "run", tmp_path / "log"
    env = slurm_env(tmp_path, out, 1)
    # Slurm's warning before the time limit (--signal=B:USR1@…) reaches the batch script; it passes it on.
    script = started(["bash", str(SLURM_SCRIPT), *SETTINGS], env, log)
    code, printed = signalled_after_step(script, out, 1, signal.SIGUSR1, log)
    first = stopped_at(out)
    assert code == 75, printed[-3000:]
    assert printed.strip().splitlines()[-2:] == [
        stop_line(out, first, "SIGUSR1"), printed.strip().splitlines()[-1]
    ] and printed.strip().endswith("stopped before the time limit (exit 75): requeueing job 4242")
    assert "Traceback" not in printed and requeues(tmp_path) == ["requeue 4242"]
    assert steps_logged(out) == list(range(1, first + 1))

    # A preemption's SIGTERM to `corewarding train` itself, resumed from that checkpoint.
    run_ = started([sys.executable, "-m", "corewarding", *train_args(out, "--resume", "last")], ENV, log)
    code, printed = signalled_after_step(run_, out, first + 1, signal.SIGTERM, log)
    second = stopped_at(out)
    assert code == 75 and second > first, printed[-3000:]
    assert printed.strip().splitlines()[-1] == stop_line(out, second, "SIGTERM")

    # The requeued job finds the checkpoint and resumes to the end.
    done = subprocess.run(["bash", str(SLURM_SCRIPT), *SETTINGS], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed" in done.stderr and requeues(tmp_path) == ["requeue 4242"]
    assert_same_final_weights(out, whole, "stopped twice")
    assert steps_logged(out) == [1, 2, 3, 4, 5, 6]


def process_of_rank(root: int, rank: int) -> int:
    """The process below ``root`` (its children, theirs, …) whose environment has ``RANK=rank``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    below, found = list(children.get(root, [])), []
    while below:
        pid = below.pop()
        below += children.get(pid, [])
        try:
            environment = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environment:
            found.append(pid)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.slow
def test_two_processes_stop_at_the_same_step_when_one_is_signalled_and_resume_to_the_same_weights(tmp_path):
    whole, out, log = tmp_path / "whole", tmp_path / "run", tmp_path / "log"
    done = subprocess.run(["bash", str(SLURM_SCRIPT), *SETTINGS], env=slurm_env(tmp_path, whole, 2),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    env = slurm_env(tmp_path, out, 2)

    # SIGTERM reaches rank 1 alone: rank 0 learns it at the step's end, and both stop there.
    script = started(["bash", str(SLURM_SCRIPT), *SETTINGS], env, log)
    code, printed = signalled_after_step(
        script, out, 1, signal.SIGTERM, log, pid=lambda: process_of_rank(script.pid, 1)
    )
    first = stopped_at(out)
    assert code != 0 and stop_line(out, first, "SIGTERM") in printed.splitlines(), printed[-3000:]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (out / f"checkpoint-{first}").iterdir()}
    assert requeues(tmp_path) == []  # a preemption: Slurm requeues the job itself

    # The resumed job, sent Slurm's SIGUSR1: the script passes it to both processes and requeues the job.
    script = started(["bash", str(SLURM_SCRIPT), *SETTINGS], env, log)
    code, printed = signalled_after_step(script, out, first + 1, signal.SIGUSR1, log)
    second = stopped_at(out)
    assert second > first and stop_line(out, second, "SIGUSR1") in printed.splitlines(), printed[-3000:]
    assert requeues(tmp_path) == ["requeue 4242"]

    done = subprocess.run(["bash", str(SLURM_SCRIPT), *SETTINGS], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_final_weights(out, whole, "two processes, stopped twice")
    assert steps_logged(out) == [1, 2, 3, 4, 5, 6]


def assert_same_final_weights(out, whole, what: str) -> None:
    """The policy and the teacher of ``out``'s last checkpoint (step 6) are those of the run ``whole``."""
    for name in ("model.safetensors", "teacher.safetensors"):
        got, expected = load_file(out / "checkpoint-6" / name), load_file(whole / "checkpoint-6" / name)
        for key in expected:
            torch.testing.assert_close(
                got[key], expected[key], rtol=0, atol=1e-6, msg=f"{what}: {name}:{key}"
            )


@pytest.mark.slow
def test_a_full_disk_while_saving_is_one_line_and_keeps_the_last_complete_checkpoint(whole_run, tmp_path):
    whole, written = whole_run
    # Injected: torch's writer fails half-way through checkpoint-4's optimizer state.
    out = tmp_path / "injected"
    at = written.index(str(whole / "checkpoint-4" / "optimizer.pt")) + 1
    failed = run(f"fail:{at}:torch", train_args(out))
    assert failed.returncode == 2
    assert error_line(failed) == (
        f"error: saving {out / 'checkpoint-4'} failed ([enforce fail at inline_container.cc:672] . "
        "unexpected pos 704 vs 5; a full disk?); what was written of it is removed, the last complete "
        "checkpoint is checkpoint-2"
    )
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    checkpoints.verify(out / "checkpoint-2", "co_rewarding_ii")

    # Real: no file may grow past 2 MB, so safetensors' writer fails on the first model.
    out = tmp_path / "real"
    failed = run(f"fsize:{2_000_000}", train_args(out))
    assert failed.returncode == 2
    line = error_line(failed)
    assert line.startswith(f"error: saving {out / 'checkpoint-2'} failed (Error while serializing")
    assert line.endswith("what was written of it is removed, no checkpoint is complete yet")
    assert not list(out.glob("checkpoint-*"))


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
        checkpoints.CheckpointError, match="saved by a co_rewarding_ii run and this run's method is entropy"
    ):
        checkpoints.verify(folder, "entropy")
    os.truncate(folder / "optimizer.pt", 20)
    cut = f"optimizer.pt is damaged: 20 bytes, saved as {size:,}$"
    with pytest.raises(checkpoints.CheckpointError, match=cut):
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
    # Another method's folder is another run, not damage (it read "no older complete checkpoint is intact").
    with pytest.raises(checkpoints.CheckpointError) as other:
        checkpoints.resolve_resume("last", tmp_path, "co_rewarding_ii")
    assert str(other.value) == (
        f"{tmp_path / 'checkpoint-4'} was saved by a majority_vote run and this run's method is "
        "co_rewarding_ii: resume it with --method majority_vote, or choose another --output_dir"
    )


# ----------------------------------------------------------------------------------- damage and planted files


def small_checkpoint(folder: Path, step: int, method: str = "co_rewarding_ii") -> Path:
    """A checkpoint with the files a resume unpickles, as the trainer writes them: optimizer and
    scheduler state, and the RNG states (Python's, numpy's, torch's)."""
    folder.mkdir(parents=True)
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(schedule.state_dict(), folder / "scheduler.pt")
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    torch.save(rng, folder / "rng_state.pth")
    torch.save(optimizer.state_dict(), folder / "reward_model_optimizer.pt")
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    checkpoints.mark_complete(folder, step, method)
    return folder


class RunsCode:
    """Unpickled with code execution, it creates ``witness``: a planted checkpoint file."""

    def __init__(self, witness: Path):
        self.witness = witness

    def __reduce__(self):
        return os.system, (f"touch {self.witness}",)


def plant(path: Path, witness: Path, step: int, method: str) -> None:
    """Replace a checkpoint file by a pickle that runs code, and its marker by one that agrees."""
    torch.save({"state": RunsCode(witness)}, path)
    checkpoints.mark_complete(path.parent, step, method)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "name", ["optimizer.pt", "scheduler.pt", "rng_state.pth", "reward_model_optimizer.pt"]  # train, Cooper
)
def test_a_planted_pickle_in_a_checkpoint_is_named_and_never_run(tmp_path, name):
    folder = small_checkpoint(tmp_path / "checkpoint-2", 2)
    checkpoints.verify(folder, "co_rewarding_ii")  # what the trainer writes passes
    witness = tmp_path / "code-ran"
    plant(folder / name, witness, 2, "co_rewarding_ii")
    with pytest.raises(checkpoints.CheckpointError) as refused:
        checkpoints.verify(folder, "co_rewarding_ii")
    assert str(refused.value) == (
        f"checkpoint file {folder / name} is refused: loading it would run code (posix.system); "
        "it was not saved by corewarding"
    )
    result = CliRunner().invoke(app, ["train", "--config", "tiny/co_rewarding_ii", "--output_dir",
                                      str(tmp_path / "run"), "--resume", str(folder)])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == f"error: {refused.value}"
    assert not witness.exists()


def stand_in_deepspeed(monkeypatch) -> tuple[type, type]:
    """Modules at DeepSpeed's paths with its two optimizer-state classes (ZeRO's stage, the loss scaler),
    as DeepSpeed pickles them into ``global_stepN/*optim_states.pt``, for the main suite without DeepSpeed
    (the engines job checks the real ones: tests/test_engines.py)."""
    import enum
    import types

    zero_stage = enum.IntEnum("ZeroStageEnum", {"optimizer_states": 1, "gradients": 2, "weights": 3})
    loss_scaler = type("LossScaler", (), {"__init__": lambda self, scale: setattr(self, "cur_scale", scale)})
    packages = ("deepspeed", "deepspeed.runtime", "deepspeed.runtime.zero", "deepspeed.runtime.fp16")
    for name in packages:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    for name, cls in (("deepspeed.runtime.zero.config", zero_stage),
                      ("deepspeed.runtime.fp16.loss_scaler", loss_scaler)):
        module = types.ModuleType(name)
        cls.__module__ = name
        setattr(module, cls.__name__, cls)
        monkeypatch.setitem(sys.modules, name, module)
    return zero_stage, loss_scaler


def test_deepspeeds_own_optimizer_state_loads_and_a_planted_pickle_beside_it_is_refused(
    tmp_path, monkeypatch
):
    """DeepSpeed's optimizer states name two of its classes; weights_only refused them, so no DeepSpeed
    checkpoint could be resumed. They are allowed by name for that load; nothing else is."""
    zero_stage, loss_scaler = stand_in_deepspeed(monkeypatch)
    folder = small_checkpoint(tmp_path / "checkpoint-2", 2)
    states = folder / "global_step2" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"
    states.parent.mkdir()
    torch.save({"optimizer_state_dict": {"zero_stage": zero_stage(3), "loss_scaler": loss_scaler(1.0),
                                         "fp32_flat_groups": [torch.ones(4)]}}, states)
    checkpoints.mark_complete(folder, 2, "co_rewarding_ii")
    checkpoints.verify(folder, "co_rewarding_ii")
    witness = tmp_path / "code-ran"
    torch.save({"zero_stage": zero_stage(3), "state": RunsCode(witness)}, states)
    checkpoints.mark_complete(folder, 2, "co_rewarding_ii")
    with pytest.raises(checkpoints.CheckpointError, match=r"would run code \(posix.system\)"):
        checkpoints.verify(folder, "co_rewarding_ii")
    assert not witness.exists()
    # Another class of DeepSpeed's modules is not on the list.
    other = type("Other", (), {})
    other.__module__ = "deepspeed.runtime.zero.config"
    sys.modules["deepspeed.runtime.zero.config"].Other = other
    torch.save({"zero_stage": zero_stage(3), "other": other()}, states)
    checkpoints.mark_complete(folder, 2, "co_rewarding_ii")
    refused = r"would run code \(deepspeed.runtime.zero.config.Other\)"
    with pytest.raises(checkpoints.CheckpointError, match=refused):
        checkpoints.verify(folder, "co_rewarding_ii")


def test_cooper_loads_its_optimizer_as_tensors_only(tmp_path):
    cooper = CooperRewardModel(RewardModel.load("tiny"), learning_rate=1e-3)
    cooper.save(tmp_path)
    witness = tmp_path / "code-ran"
    torch.save({"state": RunsCode(witness)}, tmp_path / "reward_model_optimizer.pt")
    with pytest.raises(pickle.UnpicklingError):
        cooper.load(tmp_path)
    assert not witness.exists()


def test_same_size_damage_is_caught_by_the_checksum(tmp_path):
    folder = small_checkpoint(tmp_path / "checkpoint-2", 2)
    for name in ("model.safetensors", "optimizer.pt"):
        saved = (folder / name).read_bytes()
        flip_a_byte(folder / name)
        with pytest.raises(
            checkpoints.CheckpointError,
            match=rf"^checkpoint file {re.escape(str(folder / name))} is damaged: its content changed",
        ):
            checkpoints.verify(folder, "co_rewarding_ii")
        (folder / name).write_bytes(saved)
    (folder / "model.safetensors").write_bytes(b"\xff" * (folder / "model.safetensors").stat().st_size)
    with pytest.raises(checkpoints.CheckpointError, match="model.safetensors is damaged"):
        checkpoints.verify(folder, "co_rewarding_ii")


def test_a_damaged_newest_checkpoint_is_named_with_the_older_intact_one(tmp_path):
    for step in (2, 4, 6):
        small_checkpoint(tmp_path / f"checkpoint-{step}", step)
    flip_a_byte(tmp_path / "checkpoint-6" / "rng_state.pth")
    damaged = f"checkpoint file {tmp_path / 'checkpoint-6' / 'rng_state.pth'} is damaged"
    with pytest.raises(checkpoints.CheckpointError) as refused:
        checkpoints.resolve_resume("last", tmp_path, "co_rewarding_ii")
    older = tmp_path / "checkpoint-4"
    assert str(refused.value).startswith(damaged) and str(refused.value).endswith(
        f"; the older checkpoint checkpoint-4 is intact: resume from it with --resume {older}"
    )
    result = CliRunner().invoke(app, ["train", "--config", "tiny/co_rewarding_ii", "--output_dir",
                                      str(tmp_path), "--resume", "last"])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == f"error: {refused.value}"

    flip_a_byte(tmp_path / "checkpoint-4" / "optimizer.pt")
    with pytest.raises(checkpoints.CheckpointError, match="the older checkpoint checkpoint-2 is intact"):
        checkpoints.resolve_resume("last", tmp_path, "co_rewarding_ii")
    flip_a_byte(tmp_path / "checkpoint-2" / "model.safetensors")
    with pytest.raises(checkpoints.CheckpointError, match="; no older complete checkpoint is intact$"):
        checkpoints.resolve_resume("last", tmp_path, "co_rewarding_ii")


# ----------------------------------------------------------------------------------- failed saves


FULL_DISK = [
    OSError(errno.ENOSPC, "No space left on device", "checkpoint-4/optimizer.pt"),
    SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),
]


@pytest.mark.parametrize("failure", FULL_DISK, ids=lambda e: type(e).__name__)
def test_a_failed_save_is_removed_and_the_last_complete_checkpoint_stays(tmp_path, failure):
    small_checkpoint(tmp_path / "checkpoint-2", 2)
    folder = tmp_path / "checkpoint-4"
    with pytest.raises(checkpoints.CheckpointSaveError) as failed:
        with checkpoints.saving(folder, 4, "co_rewarding_ii"):
            folder.mkdir()
            (folder / "model.safetensors").write_bytes(b"half a model")
            raise failure
    message = str(failed.value)
    assert message.startswith(f"saving {folder} failed (") and "\n" not in message
    assert message.endswith("what was written of it is removed, the last complete checkpoint is checkpoint-2")
    assert not folder.exists()
    checkpoints.verify(tmp_path / "checkpoint-2", "co_rewarding_ii")


# ----------------------------------------------------------------------------------- rm train


def labelled_file(path: Path) -> Path:
    """Labelled completions as ``rm annotate`` writes them: the right answer and one too high for each
    of 12 training and 3 held-out questions."""
    rows = []
    for split, count, seed in (("train", 12, 1), ("heldout", 3, 2)):
        for problem in generate_problems(count, "train", seed=seed):
            for answer in (problem.answer, str(int(problem.answer) + 1)):
                rows.append({
                    "question_id": f"{split}-{problem.id}", "question": problem.question,
                    "reference": problem.answer, "completion": f"\\boxed{{{answer}}}", "answer": answer,
                    "label": answer == problem.answer, "labeler": "verifier", "split": split,
                })
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rm_train_args(data: Path, out: Path) -> list[str]:
    """6 steps, checkpoints at steps 2 and 4, the model at the end."""
    settings = ["--epochs", "2", "--batch-size", "8", "--save-steps", "2"]
    return ["rm", "train", str(data), "-o", str(out), *settings]


@pytest.fixture(scope="module")
def whole_rm_run(tmp_path_factory):
    """An uninterrupted ``rm train``: its labelled data, its folder and the files it wrote, in order."""
    folder = tmp_path_factory.mktemp("rm")
    data, whole = labelled_file(folder / "labelled.jsonl"), folder / "whole"
    done = run(-1, rm_train_args(data, whole))
    assert done.returncode == 0, done.stderr[-3000:]
    return data, whole, files_written(done)


def assert_same_reward_model(out: Path, whole: Path, label) -> None:
    expected, got = load_file(whole / "model.safetensors"), load_file(out / "model.safetensors")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=f"{label}: {key}")
    scores = json.loads((whole / "rm_train.json").read_text())["epochs"]
    assert json.loads((out / "rm_train.json").read_text())["epochs"] == scores, label
    assert not list(out.glob("checkpoint-*")) and not list(out.glob(".*")), label


@pytest.mark.slow
def test_rm_train_killed_while_saving_or_out_of_disk_reruns_to_the_same_model(whole_rm_run, tmp_path):
    data, whole, written = whole_rm_run

    def write_of(relative: str) -> int:
        return written.index(str(whole / relative)) + 1

    # Inside the first checkpoint's optimizer state (the crash that made every rerun fail), inside the
    # second one's (the first must stay usable), and inside the last write, the finished run's record.
    kill_points = (write_of("checkpoint-2/optimizer.pt"), write_of("checkpoint-4/optimizer.pt"), len(written))
    for kill_at in kill_points:
        out = tmp_path / f"killed-{kill_at}"
        killed = run(kill_at, rm_train_args(data, out))
        assert killed.returncode == 137, (kill_at, killed.stderr[-2000:])
        rerun = run(-1, rm_train_args(data, out))
        assert rerun.returncode == 0, (kill_at, rerun.stderr[-3000:])
        assert_same_reward_model(out, whole, f"kill {kill_at}")

    out = tmp_path / "full-disk"
    failed = run(f"fail:{write_of('checkpoint-4/optimizer.pt')}:oserror", rm_train_args(data, out))
    assert failed.returncode == 2
    assert error_line(failed) == (
        f"error: saving {out / 'checkpoint-4'} failed ({out / 'checkpoint-4' / 'optimizer.pt'}: No space "
        "left on device); what was written of it is removed, the last complete checkpoint is checkpoint-2"
    )
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    rerun = run(-1, rm_train_args(data, out))  # space freed: it goes on from checkpoint-2
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_reward_model(out, whole, "full disk")


@pytest.mark.slow
def test_rm_train_stopped_by_a_signal_saves_its_step_and_reruns_to_the_same_model(whole_rm_run, tmp_path):
    data, whole, written = whole_rm_run
    out = tmp_path / "stopped"
    # SIGTERM while checkpoint-2 is saved: step 3 is finished and saved, then the run stops.
    at = written.index(str(whole / "checkpoint-2" / "optimizer.pt")) + 1
    stopped = run(f"SIGTERM:{at}", rm_train_args(data, out))
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert error_line(stopped) == (
        f"stopped by SIGTERM at step 3 of 6: checkpoint {out}/checkpoint-3 written; run the same command to "
        "go on"
    )
    assert [p.name for p in checkpoints.complete_checkpoints(out)] == ["checkpoint-3"]
    rerun = run(-1, rm_train_args(data, out))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_reward_model(out, whole, "stopped at step 3")


@pytest.mark.slow
def test_rm_train_names_a_planted_or_damaged_checkpoint_file_and_runs_nothing(whole_rm_run, tmp_path):
    data, whole, written = whole_rm_run
    out = tmp_path / "run"
    killed = run(written.index(str(whole / "checkpoint-4" / "config.json")) + 1, rm_train_args(data, out))
    assert killed.returncode == 137
    optimizer, witness = out / "checkpoint-2" / "optimizer.pt", tmp_path / "code-ran"
    saved = optimizer.read_bytes()
    plant(optimizer, witness, 2, "rm_train")
    planted = run(-1, rm_train_args(data, out))
    assert planted.returncode == 2 and not witness.exists()
    assert error_line(planted) == (
        f"error: checkpoint file {optimizer} is refused: loading it would run code (posix.system); it was "
        "not saved by corewarding; no older complete checkpoint is intact"
    )
    optimizer.write_bytes(saved)
    checkpoints.mark_complete(optimizer.parent, 2, "rm_train")
    flip_a_byte(optimizer)
    damaged = run(-1, rm_train_args(data, out))
    assert damaged.returncode == 2
    assert error_line(damaged) == (
        f"error: checkpoint file {optimizer} is damaged: its content changed since it was saved (checksum); "
        "no older complete checkpoint is intact"
    )


def test_every_process_writes_its_part_of_the_final_model_before_the_main_one_publishes(tmp_path):
    """FSDP with sharded state dicts: each process writes its own file of the final model. Process 0 used
    to clear and publish the staging folder while the other still wrote into it (`.final-model: No such
    file or directory`). Two threads stand in for the processes, with a barrier for theirs; the second
    process writes only after the main one has left its block, so without the barrier its file is lost."""
    barrier = threading.Barrier(2, timeout=60)
    main_done = threading.Event()
    errors = []

    def process(main: bool) -> None:
        try:
            with checkpoints.published_into(tmp_path, main, barrier.wait) as staging:
                if main:
                    (staging / "shard-0").write_text("0")
                    main_done.set()
                else:
                    main_done.wait(timeout=60)
                    (staging / "shard-1").write_text("1")
        except Exception as error:  # noqa: BLE001 (reported by the assertion below)
            errors.append(error)

    (tmp_path / ".final-model").mkdir()
    (tmp_path / ".final-model" / "left-from-a-crash").write_text("")
    threads = [threading.Thread(target=process, args=(main,)) for main in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-0", "shard-1"]
