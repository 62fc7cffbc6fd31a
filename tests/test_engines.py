"""The distributed engines on CPU processes: DeepSpeed ZeRO-2 and ZeRO-3, FSDP2, each with ground truth,
Co-rewarding-I and Co-rewarding-II, through ``accelerate launch`` with the shipped launch configs and the
real ``python -m corewarding train`` entry point, 2 processes on gloo (the engines job, ``.ci/engines``).

Each run: 2 steps (a checkpoint after each), then ``--resume last`` to step 3; the final model is written
and ``corewarding eval`` reads it. Asserted on numbers: the teacher's full weights, gathered from its
per-process files, obey T_s = (1 − a_s)·T_(s−1) + a_s·θ_(s−1) at every checkpoint (a_s as logged); under
ZeRO-2 in bf16 it starts from the float32 initial weights; the resumed run's weights equal an uninterrupted
run's (Co-rewarding-II on every engine: the method whose checkpoints hold the most); a planted pickle in a
DeepSpeed checkpoint is refused while DeepSpeed's own optimizer state loads.

accelerate takes its DeepSpeed and FSDP paths only for accelerator devices: ``tests/engines_shim`` (on
``PYTHONPATH`` of the launched processes) reports the CPU processes as GPUs on gloo. Skipped without
DeepSpeed (the main suite); ``bash .ci/engines`` installs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed", reason="needs DeepSpeed: the engines job (bash .ci/engines) installs it")

from safetensors.torch import load_file  # noqa: E402

from corewarding import checkpoints  # noqa: E402
from corewarding.inference.model_names import tiny_model_dir  # noqa: E402
from corewarding.training.teacher import gathered_teacher  # noqa: E402

pytestmark = [pytest.mark.engines, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIM = Path(__file__).with_name("engines_shim")
LAUNCH_CONFIGS = REPO_ROOT / "configs" / "paper" / "accelerate"
ENGINES = ("zero2", "zero3", "fsdp2")
METHODS = ("ground_truth", "co_rewarding_i", "co_rewarding_ii")
#: A constant EMA rate (a schedule over max_steps would differ between a 2-step run resumed to 3 and a
#: 3-step run), large enough for the teacher to move measurably in 3 steps.
RATE = 0.05
#: CPU-sized steps: 2 prompts x 8 rollouts per process, short completions, no held-out evaluation.
FAST = [
    "--per_device_train_batch_size", "16", "--max_completion_length", "32", "--eval_strategy", "no",
    "--eval_on_start", "false", "--save_steps", "1", "--save_total_limit", "4", "--threads", "1",
    "--teacher_rate_start", str(RATE), "--teacher_rate_end", str(RATE),
]


def free_port() -> int:
    """A port no process listens on now (two launches at once, e.g. two jobs, must not share one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(engine: str, method: str, out: Path, *extra: str) -> None:
    """``accelerate launch --config_file <engine>.yaml --num_processes 2 -m corewarding train …``."""
    env = {
        **os.environ, "PYTHONPATH": os.pathsep.join([str(SHIM), str(REPO_ROOT)]), "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
    }
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(LAUNCH_CONFIGS / f"{engine}.yaml"), "--num_processes", "2",
        "--main_process_port", str(free_port()),
        "-m", "corewarding", "train", "--config", f"tiny/{method}", "--output_dir", str(out), *FAST, *extra,
    ]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{engine} {method}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    # One run, one voice: only the main process prints the progress and the closing summary.
    lines = done.stdout.splitlines()
    assert sum(" steps in " in line for line in lines) == 1, done.stdout[-2000:]
    assert sum(line.startswith(f"{method} step 1/") for line in lines) <= 1, done.stdout[-2000:]


def full_teacher(checkpoint: Path) -> dict[str, torch.Tensor]:
    shapes = {name: t.shape for name, t in load_file(tiny_model_dir("tiny") / "model.safetensors").items()}
    return gathered_teacher(checkpoint, shapes)


def policy(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The policy's weights in a checkpoint (or run folder): its safetensors, or FSDP's sharded files."""
    if (checkpoint / "model.safetensors").is_file():
        return load_file(checkpoint / "model.safetensors")
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    whole = checkpoint / "fsdp-gathered.pt"
    dcp_to_torch_save(checkpoint / "pytorch_model_fsdp_0", whole)
    state = torch.load(whole, weights_only=True)["model"]
    whole.unlink()
    return state


def logged_rates(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {row["step"]: row["teacher/rate"] for row in rows if "teacher/rate" in row}


def initial_weights(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tiny model's weights as the engine holds them at the start (rounded to its dtype)."""
    weights = load_file(tiny_model_dir("tiny") / "model.safetensors")
    return {name: t.to(dtype).float() for name, t in weights.items()}


def assert_ema_identity(run: Path, engine: str) -> None:
    """T_s = (1 − a_s)·T_(s−1) + a_s·θ_(s−1) to 1e-5 at checkpoints 1, 2 and 3 (the policy's weights θ as the
    engine holds them: bf16 under DeepSpeed, float32 under FSDP2). T_0 is the float32 initial model; under
    ZeRO-3 the policy is loaded in bf16 (zero.Init), so its teacher starts from the same bf16 weights."""
    rates = logged_rates(run)
    assert sorted(rates) == [1, 2, 3] and all(r == pytest.approx(RATE) for r in rates.values())
    engine_dtype = load_file(run / "checkpoint-1" / "model.safetensors")["model.norm.weight"].dtype if (
        run / "checkpoint-1" / "model.safetensors"
    ).is_file() else torch.float32
    theta = initial_weights(engine_dtype)
    teacher = initial_weights(torch.bfloat16 if engine == "zero3" else torch.float32)
    for step in (1, 2, 3):
        folder = run / f"checkpoint-{step}"
        saved = full_teacher(folder)
        assert set(saved) <= set(theta) and len(saved) >= len(theta) - 1  # a tied head is saved once
        expected = {name: (1 - rates[step]) * teacher[name] + rates[step] * theta[name] for name in saved}
        gap = max((saved[n] - expected[n]).abs().max().item() for n in saved)
        moved = max((saved[n] - teacher[n]).abs().max().item() for n in saved)
        # At step 1 the policy is still θ_0: a teacher that starts there stays (ZeRO-3, FSDP2).
        assert gap < 1e-5 and (step == 1 or moved > 10 * gap), (engine, step, gap, moved)
        teacher, theta = saved, {name: t.float() for name, t in policy(folder).items()}


def evaluate(run: Path) -> dict:
    out = run / "eval.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "corewarding", "eval", str(run), "synthetic", "--limit", "32",
               "--max-new-tokens", "32", "--threads", "1", "-o", str(out)]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())["evaluation"]["scores"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("engine", ENGINES)
def test_two_steps_then_resume_to_three_through_accelerate_launch(tmp_path, engine, method):
    run = tmp_path / "run"
    launch(engine, method, run, "--max_steps", "2")
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    launch(engine, method, run, "--max_steps", "3", "--resume", "last")
    assert (run / "checkpoint-3" / checkpoints.MARKER).is_file()
    final = load_file(run / "model.safetensors")
    last = policy(run / "checkpoint-3")
    assert max((final[n].float() - last[n].float()).abs().max().item() for n in last) == 0.0
    start = initial_weights(torch.float32)  # the tied head is saved once there, twice by some engines
    assert max((final[n].float() - start[n]).abs().max().item() for n in start) > 1e-4  # it trained
    scores = evaluate(run)
    assert 0.3 < scores["greedy_accuracy"] <= 1.0  # the trained tiny model still answers its task
    if method == "co_rewarding_ii":
        assert_ema_identity(run, engine)
        twin = tmp_path / "uninterrupted"
        launch(engine, method, twin, "--max_steps", "3")
        resumed, straight = load_file(run / "model.safetensors"), load_file(twin / "model.safetensors")
        assert max((resumed[n].float() - straight[n].float()).abs().max().item() for n in straight) < 1e-6
        a, b = full_teacher(run / "checkpoint-3"), full_teacher(twin / "checkpoint-3")
        assert max((a[n] - b[n]).abs().max().item() for n in a) < 1e-6
    if engine.startswith("zero"):
        assert_deepspeed_state_loads_and_a_planted_pickle_is_refused(run / "checkpoint-3", method, tmp_path)


class RunsCode:
    def __init__(self, witness: Path):
        self.witness = witness

    def __reduce__(self):
        return os.system, (f"touch {self.witness}",)


def assert_deepspeed_state_loads_and_a_planted_pickle_is_refused(
    folder: Path, method: str, tmp: Path
) -> None:
    checkpoints.verify(folder, method)  # DeepSpeed's own optimizer states pass (they name its classes)
    states = sorted(folder.glob("global_step*/*optim_states.pt"))
    assert len(states) == 2
    witness = tmp / "code-ran"
    original = torch.load(states[0], weights_only=False)
    torch.save({**original, "planted": RunsCode(witness)}, states[0])
    checkpoints.mark_complete(folder, 3, method)
    with pytest.raises(checkpoints.CheckpointError, match=r"would run code \(posix.system\)"):
        checkpoints.verify(folder, method)
    assert not witness.exists()
