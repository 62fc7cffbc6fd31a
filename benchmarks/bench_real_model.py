"""Where a real model's training step goes on a CPU, and what cuts it: SmolLM2-135M-Instruct on the
arithmetic task (recipe ``smollm2/majority_vote``: 4 questions x 8 rollouts of at most 32 tokens).

A step is split into generation (TRL's ``_generate``: the rollouts), rewards (``_calculate_rewards``),
the loss's forward pass (``_get_per_token_logps_and_entropies``: the log-probabilities), backward
(``accelerator.backward``), the optimizer (AdamW's step, from ``on_pre_optimizer_step`` to
``on_optimizer_step``) and the rest. Variants, each in a fresh process, one after another (one
SmolLM2 process at a time: 5-7 GB each):

* ``fp32``: the recipe as shipped, float32, one thread (the baseline);
* ``bf16-autocast``: float32 weights, bfloat16 autocast on the CPU (``bf16: true``);
* ``threads-2``: two torch threads;
* ``rollouts-4``: 4 questions x 4 rollouts a step (half the rollouts; the fast budget's choice);
* ``rollouts-4-threads-2``: the same with two torch threads (the demo's setting on 2 idle cores);
* ``micro-batch-8``: the same 32 rollouts a step in micro-batches of 8 (gradient accumulation 4);
* ``checkpointing``: with TRL's default gradient checkpointing, which recomputes the forward pass during
  backward to save memory that a 135M model on a laptop does not need (the recipes turn it off: this
  variant measures what that saves);
* ``lora``: LoRA adapters (peft, r = 16 on every projection) instead of full fine-tuning.

Steps after the first are timed (the first pays one-off costs); the table shows each variant's median
step and sections, and the ratio of its step to the baseline's. Under load the ratios carry the load's
noise: state the machine and its load with the numbers.

    python benchmarks/bench_real_model.py [--steps 3] [--variants fp32,bf16-autocast,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import median

VARIANTS = {
    "fp32": {},
    "bf16-autocast": {"bf16": True},
    "threads-2": {"threads": 2},
    "rollouts-4": {"num_generations": 4, "per_device_train_batch_size": 16},
    "rollouts-4-threads-2": {"num_generations": 4, "per_device_train_batch_size": 16, "threads": 2},
    "micro-batch-8": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4},
    "checkpointing": {"gradient_checkpointing": True},
    "lora": {"lora": True},
}
SECTIONS = ("generation", "rewards", "forward", "backward", "optimizer")


def timed(sections: dict, name: str, function):
    """``function`` with its wall time added to ``sections[name]`` (of the step in progress)."""

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            sections[name] += time.perf_counter() - started

    return wrapper


def with_lora(load_model):
    """``load_model`` whose model comes wrapped in LoRA adapters (r = 16 on every projection)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM", target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])

    def load_with_lora(*args, **kwargs):
        model, tokenizer = load_model(*args, **kwargs)
        return get_peft_model(model, lora), tokenizer

    return load_with_lora


def measure(variant: str, steps: int, model: str) -> list[dict]:
    """Train ``steps`` steps of the variant; each step's seconds by section (``step``: the whole)."""
    import torch
    from transformers import TrainerCallback

    from corewarding.training import run
    from corewarding.training.settings import load_recipe

    settings = dict(VARIANTS[variant])
    torch.set_num_threads(settings.pop("threads", 1))
    lora = settings.pop("lora", False)
    if lora:
        run.load_model = with_lora(run.load_model)
    config = load_recipe(
        "smollm2/majority_vote", output_dir=tempfile.mkdtemp(prefix="bench-real-"), max_steps=steps,
        heldout_dataset=None, eval_strategy="no", eval_on_start=False, disable_tqdm=True, use_cpu=True,
        model_name_or_path=model, **settings,
    )
    trainer = run.build_trainer(config)
    current: dict[str, float] = defaultdict(float)
    records: list[dict] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            current.clear()
            self.started = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.optimizer_started = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kwargs):
            current["optimizer"] += time.perf_counter() - self.optimizer_started

        def on_step_end(self, args, state, control, **kwargs):
            records.append({**current, "step": time.perf_counter() - self.started})

    trainer._generate = timed(current, "generation", trainer._generate)
    trainer._calculate_rewards = timed(current, "rewards", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = timed(
        current, "forward", trainer._get_per_token_logps_and_entropies
    )
    trainer.accelerator.backward = timed(current, "backward", trainer.accelerator.backward)
    trainer.add_callback(StepClock())
    trainer.train()
    return records


def table(results: dict[str, list[dict]]) -> str:
    """Median seconds of the steps after the first, by section, and each variant's step over the first
    variant's."""
    header = " ".join(f"{s:>10}" for s in SECTIONS)
    rows = [f"{'variant':16} {'step s':>7} {header} {'other':>7} {'ratio':>6}"]
    baseline = None
    for variant, records in results.items():
        timed_steps = records[1:] or records
        step = median(r["step"] for r in timed_steps)
        parts = [median(r.get(s, 0.0) for r in timed_steps) for s in SECTIONS]
        baseline = baseline or step
        rows.append(f"{variant:16} {step:7.1f} " + " ".join(f"{p:10.1f}" for p in parts)
                    + f" {step - sum(parts):7.1f} {step / baseline:5.2f}x")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps per variant (the first is not timed)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--json", help="also write every step's sections here")
    parser.add_argument("--model", default="smollm2",
                        help="the model profiled (another name than smollm2 only to check the script: tiny)")
    parser.add_argument("--out", help="(internal) measure one variant in this process, write it here")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}: choose from {', '.join(VARIANTS)}")
    if args.out:
        Path(args.out).write_text(json.dumps(measure(variants[0], args.steps, args.model)))
        return
    results = {}
    for variant in variants:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            print(f"{variant}: {args.steps} steps ...", file=sys.stderr, flush=True)
            env = {**os.environ, "OMP_NUM_THREADS": str(VARIANTS[variant].get("threads", 1))}
            subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--variants", variant,
                            "--model", args.model, "--out", out.name], check=True, env=env)
            results[variant] = json.loads(Path(out.name).read_text())
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
