"""Seconds per training step of every method on the tiny model, against TRL's plain GRPOTrainer, and
where the time goes.

Rollouts are held fixed: the learning rate is 1e-12 (no weight moves by a float32 ulp), so every step of
every trainer samples from the same initial model with the same seed, and rollout-length noise (a policy
that learns to write longer) cannot hide or fake an overhead; ``completions/mean_length`` is shown to
prove it. The baseline is TRL's own ``GRPOTrainer`` with a per-completion ground-truth reward function,
at the same rollouts per step.

Each step is split into the policy's generation (TRL's ``_generate_single_turn``), the rewards
(``_calculate_rewards``) — of which the work a method needs by design is shown apart (the teacher's
samples for Co-rewarding-II, the extra forward pass of the confidence rewards, the extra votes) — and
the rest (log-probabilities, loss, backward, optimizer, logging). Target: ground truth, majority vote
and Co-rewarding-I within 1.05x of the baseline. On a shared machine the load drifts between runs made
minutes apart, so the last column also compares each step, less the work by design, per second of the
policy's generation — the same work in every trainer when the rollouts are fixed (equal mean lengths).

With ``--vllm`` (in an environment with vLLM, e.g. ``.ci/vllm``'s; on the CPU build the runner's switches
of ``tests/vllm_cpu.py`` apply) ground truth and Co-rewarding-II are also timed with vLLM colocate:
step time, engine start (apart), and the teacher's weight swap per step (two syncs).

    python benchmarks/bench_trainer.py [--steps 6] [--methods a,b] [--vllm]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from statistics import median

from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from corewarding.core.answers import extract_answer
from corewarding.core.equivalence import answers_match
from corewarding.core.methods import METHODS
from corewarding.core.prompts import SYSTEM_PROMPT
from corewarding.inference.models import load_model
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training import trainer as trainer_module
from corewarding.training.config import CoRewardingConfig
from corewarding.training.run import training_dataset
from corewarding.training.trainer import CoRewardingTrainer, completion_text


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step, and the mean completion length TRL logged for it."""

    def __init__(self):
        self.times, self.lengths, self._start = [], [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "completions/mean_length" in logs:
            self.lengths.append(logs["completions/mean_length"])


class Phases:
    """Seconds spent in named calls, per call (wrapping methods of one trainer or functions of a module)."""

    def __init__(self):
        self.seconds, self.wrapped = defaultdict(list), []

    def wrap(self, owner, attribute: str, phase: str) -> None:
        inner = getattr(owner, attribute)
        self.wrapped.append((owner, attribute, inner))

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[phase].append(time.perf_counter() - start)

        setattr(owner, attribute, timed)

    def unwrap(self) -> None:
        for owner, attribute, inner in reversed(self.wrapped):
            setattr(owner, attribute, inner)

    def per_step(self, phase: str, steps: int) -> float:
        """Median seconds of ``phase`` per step after the first (0 when it never ran)."""
        values = self.seconds.get(phase, [])
        if not values:
            return 0.0
        per_call = len(values) // max(1, steps)
        return median(sum(values[i : i + per_call]) for i in range(per_call, len(values), per_call))


def ground_truth_reward(completions, answer, **kwargs):
    """A plain TRL reward function: 1 when the extracted answer matches the reference."""
    answers = [extract_answer(completion_text(c)) for c in completions]
    return [float(m) for m in answers_match(list(zip(answer, answers)))]


def settings(name: str, args, **extra) -> dict:
    return dict(
        output_dir=f"runs/bench/{name}",
        max_steps=args.steps,
        num_generations=args.generations,
        per_device_train_batch_size=args.prompts * args.generations,
        max_completion_length=48,
        learning_rate=1e-12,
        lr_scheduler_type="constant",
        report_to=[],
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
        bf16=False,
        save_strategy="no",
        **extra,
    )


def timed_run(trainer, steps: int) -> dict:
    """Train ``trainer`` and split its steps into phases (see the module docstring)."""
    phases, timer = Phases(), StepTimer()
    trainer.add_callback(timer)
    phases.wrap(trainer, "_generate_single_turn", "generation")
    phases.wrap(trainer, "_calculate_rewards", "rewards")
    if isinstance(trainer, CoRewardingTrainer):
        phases.wrap(trainer, "_sample", "by design")
        phases.wrap(trainer_module, "rollout_statistic", "by design")
    try:
        trainer.train()
    finally:
        phases.unwrap()
    step = median(timer.times[1:])
    generation, rewards = phases.per_step("generation", steps), phases.per_step("rewards", steps)
    by_design = phases.per_step("by design", steps)
    return {
        "step": step,
        "generation": generation,
        "by design": by_design,
        "overhead": rewards - by_design,
        "rest": step - generation - rewards,
        "length": median(timer.lengths[1:]) if timer.lengths else 0.0,
    }


def baseline(args, problems, **extra) -> dict:
    model, tokenizer = load_model("tiny", device="cpu")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=ground_truth_reward,
        args=GRPOConfig(**settings("trl", args, **extra)),
        train_dataset=training_dataset(problems, "ground_truth", SYSTEM_PROMPT),
        processing_class=tokenizer,
    )
    return timed_run(trainer, args.steps)


def ours(method: str, args, problems, **extra) -> dict:
    model, tokenizer = load_model("tiny", device="cpu")
    config = CoRewardingConfig(method=method, heldout_dataset=None, **settings(method, args, **extra))
    trainer = CoRewardingTrainer(
        model=model,
        args=config,
        train_dataset=training_dataset(problems, method, config.system_prompt),
        processing_class=tokenizer,
    )
    return timed_run(trainer, args.steps)


def trainer_table(rows: dict[str, dict]) -> Table:
    first, last = rows["TRL GRPOTrainer (first)"], rows["TRL GRPOTrainer (last)"]
    base = {"step": (first["step"] + last["step"]) / 2}
    # With fixed rollouts the policy's generation is the same work in every trainer, so seconds of step per
    # second of generation compare trainers measured minutes apart under a changing load.
    per_generation = (first["step"] / first["generation"] + last["step"] / last["generation"]) / 2
    table = Table(
        title="Seconds per step, tiny model, fixed rollouts (lr 1e-12), median over steps 2..N; "
        "x TRL: against the mean of TRL's two runs"
    )
    for column in (
        "trainer / method",
        "s / step",
        "x TRL",
        "generation",
        "by design",
        "reward overhead",
        "rest",
        "mean length",
        "x TRL per generation s, less by design",
    ):
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(
            name,
            f"{row['step']:.2f}",
            f"{row['step'] / base['step']:.2f}x",
            f"{row['generation']:.2f}",
            f"{row['by design']:.2f}",
            f"{100 * row['overhead'] / row['step']:.1f}%",
            f"{row['rest']:.2f}",
            f"{row['length']:.1f}",
            f"{(row['step'] - row['by design']) / row['generation'] / per_generation:.2f}x",
        )
    return table


def vllm_rows(args, problems) -> Table:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from vllm_cpu import cpu_vllm

    cpu_vllm()
    table = Table(title="vLLM colocate vs transformers generation (tiny model, s)")
    for column in (
        "method",
        "generation",
        "s / step",
        "x transformers",
        "engine start",
        "teacher swap / step",
    ):
        table.add_column(column, justify="right")
    for method in ("ground_truth", "co_rewarding_ii"):
        plain = ours(method, args, problems)
        syncs = Phases()
        started = time.perf_counter()
        model, tokenizer = load_model("tiny", device="cpu")
        config = CoRewardingConfig(
            method=method, heldout_dataset=None, **settings(method, args, use_vllm=True, vllm_mode="colocate")
        )
        trainer = CoRewardingTrainer(
            model=model,
            args=config,
            train_dataset=training_dataset(problems, method, config.system_prompt),
            processing_class=tokenizer,
        )
        engine_start = time.perf_counter() - started
        syncs.wrap(trainer.vllm_generation, "sync_weights", "sync")
        row = timed_run(trainer, args.steps)
        swap = syncs.per_step("sync", args.steps) if method == "co_rewarding_ii" else 0.0
        table.add_row(method, "transformers", f"{plain['step']:.2f}", "1.00x", "–", "–")
        table.add_row(
            method,
            "vLLM colocate",
            f"{row['step']:.2f}",
            f"{row['step'] / plain['step']:.2f}x",
            f"{engine_start:.0f}",
            f"{swap:.2f}" if swap else "–",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="steps per trainer; the first is not timed")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods to time")
    parser.add_argument("--vllm", action="store_true", help="also vLLM colocate (needs vLLM)")
    args = parser.parse_args()
    problems = synthetic_problems("tiny", 512, "train", seed=0)
    rows = {"TRL GRPOTrainer (first)": baseline(args, problems)}
    for method in args.methods.split(","):
        if METHODS[method].reward_model is None:  # Cooper's reward model is timed by bench_rewards
            rows[method] = ours(method, args, problems)
    # Timed again last: on a shared machine the load drifts, and the reference is the two runs' mean.
    rows["TRL GRPOTrainer (last)"] = baseline(args, problems)
    console = Console(width=160)  # a full table in a log file too
    console.print(trainer_table(rows))
    if args.vllm:
        console.print(vllm_rows(args, problems))


if __name__ == "__main__":
    main()
