"""The prepared GPU check: the path real users run, on one CUDA GPU with no network, in under 8 minutes.

bfloat16 training of the shipped tiny model (float32 master weights, bf16 autocast) for ground truth,
Co-rewarding-II (with the check that its teacher moved as the float32 EMA of the policy says it must)
and Cooper, each with vLLM colocate when vLLM is installed (else transformers generation); Co-rewarding-II
with LoRA (its teacher an EMA adapter, sampled with transformers: the EMA identity checked on the GPU at
every step); then evaluation through both backends; then Co-rewarding-II under DeepSpeed ZeRO-3 (the
shipped ``configs/paper/accelerate/zero3.yaml`` through ``accelerate launch``, one process, when DeepSpeed
is installed: its teacher's gathered weights checked against the EMA identity at each checkpoint). It
prints a table of step times, peak GPU memory and the checks, and writes them to ``--out`` (JSON). Nothing
here is needed by the tests.

    python benchmarks/gpu_check.py [--steps 12] [--out runs/gpu_check/result.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import torch
from rich.console import Console
from safetensors.torch import load_file
from rich.table import Table
from transformers import TrainerCallback

REPO_ROOT = Path(__file__).resolve().parents[1]


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._start = [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


class AdapterEMACheck(TrainerCallback):
    """The largest |T_s − ((1 − a_s)·T_(s−1) + a_s·θ_(s−1))| over the teacher adapter, every step."""

    def __init__(self, trainer):
        self.trainer, self.error, self._before = trainer, 0.0, None

    def on_step_begin(self, args, state, control, **kwargs):
        teacher = self.trainer.teacher
        policy = teacher._policy_parameters(self.trainer.model)
        self._before = [m.clone() for m in teacher.master], [p.detach().float().clone() for p in policy]

    def on_step_end(self, args, state, control, **kwargs):
        teacher, (master, policy) = self.trainer.teacher, self._before
        rate = teacher.schedule.rate(state.global_step, state.max_steps) or 0.0
        for now, was, theta in zip(teacher.master, master, policy):
            self.error = max(self.error, float((now - torch.lerp(was, theta, rate)).abs().max()))


def train(method: str, steps: int, out: Path, use_vllm: bool, bf16: bool = True, **overrides) -> dict:
    from corewarding.training.run import build_trainer
    from corewarding.training.settings import load_recipe

    lora = " (LoRA)" if overrides.get("use_peft") else ""
    config = load_recipe(
        f"tiny/{method}",
        bf16=bf16,
        max_steps=steps,
        output_dir=str(out / f"{method}-{bf16}{lora.strip(' ()')}"),
        eval_strategy="no",
        eval_on_start=False,
        save_strategy="no",
        use_vllm=use_vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.2,
        **overrides,
    )
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer = build_trainer(config)
    built = time.perf_counter() - started
    timer = StepTimer()
    trainer.add_callback(timer)
    ema_check = AdapterEMACheck(trainer) if lora and trainer.teacher else None
    if ema_check:
        trainer.add_callback(ema_check)
    teacher_start = [m.detach().clone() for m in trainer.teacher.master] if trainer.teacher else None
    policy_start = [p.detach().float().clone() for p in trainer.model.parameters()]
    trainer.train()
    row = {
        "method": method + ("" if bf16 else " (float32)") + lora,
        "setup_s": built,
        "step_s": median(timer.times[1:]),
        "steps": steps,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20,
    }
    if ema_check:
        row["teacher_ema_error"] = ema_check.error
    if teacher_start is not None:
        moved = sum(float((m - s).norm()) for m, s in zip(trainer.teacher.master, teacher_start))
        policy = sum(float((p.float() - s).norm()) for p, s in zip(trainer.model.parameters(), policy_start))
        row.update(
            teacher_moved=moved, policy_moved=policy, teacher_dtype=str(trainer.teacher.master[0].dtype)
        )
    return row


def zero3_check(folder: Path, steps: int = 3, rate: float = 0.05) -> dict:
    """Co-rewarding-II under DeepSpeed ZeRO-3 on this GPU, a checkpoint each step: the largest gap of the
    teacher's gathered weights from T_s = (1 − a)·T_(s−1) + a·θ_(s−1) over checkpoints 2..steps (target
    < 1e-5), and how far it moved (a constant a, so that it moves measurably)."""
    from corewarding.training.teacher import gathered_teacher

    run = folder / "zero3-co_rewarding_ii"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO_ROOT / "configs" / "paper" / "accelerate" / "zero3.yaml"), "--num_processes", "1",
        "-m", "corewarding", "train", "--config", "tiny/co_rewarding_ii", "--output_dir", str(run),
        "--max_steps", str(steps), "--save_steps", "1", "--eval_strategy", "no", "--eval_on_start", "false",
        "--teacher_rate_start", str(rate), "--teacher_rate_end", str(rate),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    seconds = time.perf_counter() - started
    gaps, moved = [], []
    for step in range(2, steps + 1):
        before, after = run / f"checkpoint-{step - 1}", run / f"checkpoint-{step}"
        theta = {name: t.float() for name, t in load_file(before / "model.safetensors").items()}
        shapes = {name: t.shape for name, t in theta.items()}
        teacher, updated = gathered_teacher(before, shapes), gathered_teacher(after, shapes)
        gaps.append(max(float((updated[n] - ((1 - rate) * teacher[n] + rate * theta[n])).abs().max())
                        for n in updated))
        moved.append(max(float((updated[n] - teacher[n]).abs().max()) for n in updated))
    return {
        "method": "co_rewarding_ii (ZeRO-3)", "seconds": seconds, "ema_gap": max(gaps), "moved": min(moved)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check/result.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU")
    # Imported after the check, so that a machine without a GPU is told so before TRL loads.
    from corewarding.cooper.on_demand import make_reward_model
    from corewarding.inference.evaluate import evaluate
    from corewarding.inference.generation import TransformersBackend, VLLMBackend
    from corewarding.tiny.regimes import synthetic_problems

    use_vllm = importlib.util.find_spec("vllm") is not None
    folder = args.out.parent
    rows = [train("ground_truth", args.steps, folder, use_vllm)]
    rows.append(train("co_rewarding_ii", args.steps, folder, use_vllm))
    rows.append(train("co_rewarding_ii", args.steps, folder, use_vllm, bf16=False))
    rows.append(train(
        "co_rewarding_ii", args.steps, folder, False, use_peft=True, lora_r=16,
        lora_target_modules=["all-linear"], learning_rate=1e-3,
    ))
    model_dir, data = make_reward_model(folder / "reward_model", folder / "reward_model_data.jsonl")
    rows.append(
        train(
            "cooper",
            args.steps,
            folder,
            use_vllm,
            reward_model_path=str(model_dir),
            reward_model_eval_data=str(data),
        )
    )
    problems = synthetic_problems("tiny", 256, "test", seed=0)
    backends = {"transformers": TransformersBackend.load("tiny", batch_size=256)}
    if use_vllm:
        backends["vllm"] = VLLMBackend("tiny", seed=0, gpu_memory_utilization=0.2)
    evaluations = {}
    for name, backend in backends.items():
        started = time.perf_counter()
        scores = evaluate(problems, backend, k=4, temperature=0.8, max_new_tokens=48).scores
        evaluations[name] = {
            "greedy": scores.greedy_accuracy,
            "avg@4": scores.avg_at_k,
            "seconds": time.perf_counter() - started,
        }
    table = Table(title=f"GPU check on {torch.cuda.get_device_name()} (vLLM: {use_vllm})")
    for column in ("run", "setup s", "s / step", "peak GPU MiB", "teacher moved / policy moved"):
        table.add_column(column, justify="right")
    for row in rows:
        ratio = f"{row['teacher_moved'] / row['policy_moved']:.3f}" if "teacher_moved" in row else "–"
        if "teacher_ema_error" in row:
            ratio += f" (EMA identity: max error {row['teacher_ema_error']:.1e})"
        table.add_row(
            row["method"], f"{row['setup_s']:.0f}", f"{row['step_s']:.2f}", f"{row['peak_gpu_mib']:.0f}",
            ratio,
        )
    for name, e in evaluations.items():
        table.add_row(
            f"eval ({name})",
            "",
            f"{e['seconds']:.1f} s total",
            "",
            f"greedy {100 * e['greedy']:.1f}%, avg@4 {100 * e['avg@4']:.1f}%",
        )
    Console().print(table)
    if importlib.util.find_spec("deepspeed") is not None:
        zero3 = zero3_check(folder)
        print(
            f"Co-rewarding-II under ZeRO-3: {zero3['seconds']:.0f} s for 3 steps with checkpoints; teacher's "
            f"gathered weights off the EMA identity by {zero3['ema_gap']:.1e} (target < 1e-5), moved "
            f"{zero3['moved']:.1e} per step"
        )
        rows.append(zero3)
    bf16, fp32 = (
        next(r for r in rows if r["method"] == name)
        for name in ("co_rewarding_ii", "co_rewarding_ii (float32)")
    )
    print(
        "Co-rewarding-II teacher moved in bf16 / in float32: "
        f"{bf16['teacher_moved'] / fp32['teacher_moved']:.2f}x "
        f"(target >= 0.8; master dtype {bf16['teacher_dtype']})"
    )
    lora = next(r for r in rows if r["method"].endswith("(LoRA)"))
    print(
        f"Co-rewarding-II with LoRA: the teacher adapter's EMA identity to {lora['teacher_ema_error']:.1e} "
        f"(target <= 1e-6), teacher moved {lora['teacher_moved']:.3g} (target > 0)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(),
                "vllm": use_vllm,
                "training": rows,
                "evaluation": evaluations,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
