"""Are updates lost in bfloat16? The share of the policy's weights an optimizer step changes, and how far
Co-rewarding-II's EMA teacher moves, for each precision and launch mode that runs on this CPU.

Precisions: ``fp32`` (float32 weights, float32 compute), ``fp32 + bf16 autocast`` (float32 master
weights, bf16: true — the project's default GPU path), ``bf16 weights`` (a policy loaded in bfloat16
and trained as it is: no float32 copy anywhere). Launch modes: one process, and 2-process DDP on gloo
(``torchrun``). DeepSpeed needs an accelerator build it lacks here (not measured).

Two measurements, same seed and data for every row:
1. ``ground_truth`` at the paper's learning rate (3e-6), 3 steps: the share of policy weights changed per
   step (median over steps).
2. ``co_rewarding_ii`` at lr 1e-4, a = 0.01, 8 steps (issue 20's setting): the distance the teacher
   (its float32 master) and the policy moved from their start, as a ratio to the fp32 row.

    python benchmarks/bench_precision.py [--ddp] [--steps-gt 3] [--steps-ii 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

import torch
from transformers import TrainerCallback

from corewarding.inference.models import load_model
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.config import CoRewardingConfig
from corewarding.training.precision import changed_share
from corewarding.training.run import training_dataset

PRECISIONS = {
    "fp32": (torch.float32, False),
    "fp32 + bf16 autocast": (torch.float32, True),
    "bf16 weights": (torch.bfloat16, False),
}


class WeightWatch(TrainerCallback):
    """The policy's weights at the start and after every optimizer step."""

    def __init__(self, model):
        self.model, self.snapshots = model, []

    def snapshot(self):
        self.snapshots.append([p.detach().float().clone() for p in self.model.parameters()])

    def on_train_begin(self, args, state, control, **kwargs):
        self.snapshot()

    def on_step_end(self, args, state, control, **kwargs):
        self.snapshot()


def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return sum(float((x - y).float().pow(2).sum()) for x, y in zip(a, b)) ** 0.5


def measure(method: str, precision: str, steps: int, learning_rate: float) -> dict:
    from corewarding.training.trainer import CoRewardingTrainer

    dtype, bf16 = PRECISIONS[precision]
    model, tokenizer = load_model("tiny", device="cpu", dtype=dtype)
    config = CoRewardingConfig(
        method=method,
        output_dir=tempfile.mkdtemp(),
        max_steps=steps,
        num_generations=8,
        per_device_train_batch_size=64 // int(os.environ.get("WORLD_SIZE", 1)),
        max_completion_length=48,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        report_to=[],
        disable_tqdm=True,
        heldout_dataset=None,
        seed=0,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        save_strategy="no",
        teacher_rate_start=0.01,
        teacher_rate_end=0.01,
    )
    problems = synthetic_problems("tiny", 256, "train", seed=0)
    watch = WeightWatch(model)
    trainer = CoRewardingTrainer(
        model=model,
        args=config,
        train_dataset=training_dataset(problems, method, config.system_prompt),
        processing_class=tokenizer,
        callbacks=[watch],
    )
    teacher_start = [m.detach().clone() for m in trainer.teacher.master] if trainer.teacher else None
    trainer.train()
    shots = watch.snapshots
    result = {
        "changed_per_step": median(changed_share(a, b) for a, b in zip(shots, shots[1:])),
        "policy_moved": distance(shots[-1], shots[0]),
    }
    if teacher_start is not None:
        result["teacher_moved"] = distance(trainer.teacher.master, teacher_start)
    return result


def run_all(args) -> dict:
    results = {}
    for precision in PRECISIONS:
        results[precision] = {
            "gt": measure("ground_truth", precision, args.steps_gt, 3e-6),
            "ii": measure("co_rewarding_ii", precision, args.steps_ii, 1e-4),
        }
    return results


def table(results: dict[str, dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title)
    for column in (
        "launch / precision",
        "weights changed per step (lr 3e-6)",
        "policy moved (II, x fp32)",
        "teacher moved (II, x fp32)",
    ):
        out.add_column(column, justify="right")
    for mode, rows in results.items():
        base = rows["fp32"]["ii"]
        for precision, row in rows.items():
            out.add_row(
                f"{mode} / {precision}",
                f"{100 * row['gt']['changed_per_step']:.1f}%",
                f"{row['ii']['policy_moved'] / base['policy_moved']:.2f}x",
                f"{row['ii']['teacher_moved'] / base['teacher_moved']:.2f}x",
            )
    Console(width=160).print(out)  # a full table in a log file too


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddp", action="store_true", help="also 2-process DDP on gloo (torchrun)")
    parser.add_argument("--steps-gt", type=int, default=3)
    parser.add_argument("--steps-ii", type=int, default=8)
    parser.add_argument("--out", help="(internal) write this process's results as JSON here")
    args = parser.parse_args()
    if args.steps_ii < 2:  # the teacher's first update copies the unchanged policy: nothing to compare
        parser.error("--steps-ii must be at least 2: the teacher first moves at step 2")
    torch.set_num_threads(1)
    if args.out:  # a DDP worker
        results = run_all(args)
        if int(os.environ.get("RANK", 0)) == 0:
            Path(args.out).write_text(json.dumps(results))
        return
    results = {"1 process": run_all(args)}
    if args.ddp:
        out = Path(tempfile.mkdtemp()) / "ddp.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                __file__,
                "--out",
                str(out),
                "--steps-gt",
                str(args.steps_gt),
                "--steps-ii",
                str(args.steps_ii),
            ],
            check=True,
            env={**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"},
        )
        results["2-process DDP (gloo)"] = json.loads(out.read_text())
    table(results, "Policy and teacher updates by precision (tiny model, CPU, seed 0)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
