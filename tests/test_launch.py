"""Several processes, one run: every launcher a user tries on a CPU gives one data-parallel run or one
refusal line; two launches into one folder never train as two runs; only the main process prints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corewarding.core.folder_lock import LOCK_FILE, locked_folder
from corewarding.core.launch import (
    is_main_process,
    lone_process_of_several,
    needs_cpu_processes,
    process_count,
    process_rank,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
TRAIN = ["-m", "corewarding", "train", "--config", "tiny/majority_vote", "--threads", "1"]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
for _variable in ("ACCELERATE_USE_CPU", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR"):
    ENV.pop(_variable, None)
#: What `accelerate launch --cpu --num_processes 2` leaves its one process (accelerate 1.15).
ACCELERATE_CPU_LAUNCH = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
TORCHRUN_RANK_1 = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_PORT": "29500"}


def test_the_launchers_environment_says_how_many_processes_and_which_one_this_is():
    assert (process_count({}), process_rank({}), is_main_process({})) == (1, 0, True)
    assert (process_count(TORCHRUN_RANK_1), process_rank(TORCHRUN_RANK_1)) == (2, 1)
    assert not is_main_process(TORCHRUN_RANK_1)
    mpi = {"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "0"}
    assert (process_count(mpi), is_main_process(mpi)) == (4, True)


def test_several_processes_without_an_accelerator_need_use_cpu_and_one_does_not():
    assert needs_cpu_processes(TORCHRUN_RANK_1, accelerator_available=False)
    assert not needs_cpu_processes(TORCHRUN_RANK_1, accelerator_available=True)
    assert not needs_cpu_processes({}, accelerator_available=False)
    # DeepSpeed / FSDP launches keep their engine: use_cpu would turn them into plain DDP.
    for engine in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        assert not needs_cpu_processes(TORCHRUN_RANK_1 | {engine: "true"}, accelerator_available=False)


@pytest.mark.parametrize(
    "env, refused",
    [
        (ACCELERATE_CPU_LAUNCH, True),
        ({"ACCELERATE_USE_CPU": "True"}, False),  # --cpu with one process: no rendezvous prepared
        ({**ACCELERATE_CPU_LAUNCH, "ACCELERATE_USE_CPU": "False"}, False),
        ({**ACCELERATE_CPU_LAUNCH, **TORCHRUN_RANK_1}, False),  # torchrun with ACCELERATE_USE_CPU=1: DDP
        ({**ACCELERATE_CPU_LAUNCH, "PMI_SIZE": "2"}, False),  # mpirun through --mpirun_hostfile
    ],
)
def test_only_a_cpu_launch_that_started_one_process_of_several_is_refused(env, refused):
    assert (lone_process_of_several(env) is not None) == refused


def run(command: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO_ROOT, env={**ENV, **env}, capture_output=True, text=True, timeout=900
    )


def test_accelerate_launch_on_the_cpu_with_several_processes_is_one_refusal_line(tmp_path):
    out = tmp_path / "run"
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--num_machines", "1"]
    done = run(
        [*accelerate, "--cpu", "--num_processes", "2", *TRAIN, "--max_steps", "1", "--output_dir", str(out)]
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "started one process, not num_processes" in errors[0], done.stderr[-2000:]
    assert "torchrun --nproc_per_node 2" in errors[0]
    assert "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_torchrun_on_a_cpu_is_one_data_parallel_run_that_prints_once(tmp_path):
    out = tmp_path / "run"
    done = run([*TORCHRUN, "--master_port", "29541", *TRAIN, "--max_steps", "2", "--output_dir", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    # One run: each step once in the metrics, one summary, one config, no temporary file left.
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in done.stderr
    assert done.stdout.count("majority_vote: 2 steps in") == 1
    assert done.stdout.count("majority_vote step 1/2:") == 1  # the main process's progress only
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert (out / "config.yaml").is_file() and (out / "model.safetensors").is_file()


@pytest.mark.slow  # two processes start and join a gloo group: 37 s at load 14 on 2 cores
def test_a_second_launch_into_a_run_folder_in_use_is_refused_in_one_line(tmp_path):
    # Two ranks of one world share the folder (the slow test above); a second world is refused: its main
    # process says why, its other process ends without repeating it.
    out = tmp_path / "run"
    with locked_folder(out):
        done = run(
            [*TORCHRUN, "--master_port", "29542", *TRAIN, "--max_steps", "2", "--output_dir", str(out)]
        )
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {out} is in use by another run (PID {os.getpid()}): wait for it to end, or "
                      "choose another --output_dir"], done.stderr[-3000:]
