"""Seconds per training step of every method on the tiny model, against TRL's plain GRPOTrainer.

The baseline is TRL's own ``GRPOTrainer`` with a per-completion ground-truth reward function, at the
same rollouts per step. For each method the table gives the step time, its ratio to the baseline,
and the *reward overhead*: the time ``_calculate_rewards`` takes minus the work a method needs by
design (the teacher's rollouts for Co-rewarding-II, the extra forward pass of the confidence rewards),
i.e. gathering, answer extraction, equivalence, voting, diagnostics and the EMA update, as a share
of the step. Target: overhead under 5% of the step time.

    python benchmarks/bench_trainer.py [--steps 6] [--model tiny] [--prompts 8] [--generations 8]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from statistics import median

from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from corewarding.core.answers import extract_answer
from corewarding.core.equivalence import answers_match
from corewarding.core.methods import METHODS
from corewarding.inference.models import load_model
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.config import CoRewardingConfig
from corewarding.training.run import training_dataset
from corewarding.training.trainer import CoRewardingTrainer, completion_text


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


class TimedTrainer(CoRewardingTrainer):
    """Times the reward computation and, inside it, the work a method needs by design."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timings = defaultdict(list)

    def _timed(self, name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        self.timings[name].append(time.perf_counter() - start)
        return out

    def _calculate_rewards(self, *args):
        return self._timed("rewards", super()._calculate_rewards, *args)

    def _confidence(self, *args):
        return self._timed("by_design", super()._confidence, *args)

    def _generate_single_turn(self, *args, **kwargs):
        if self.model_wrapped is self.teacher:
            return self._timed("by_design", super()._generate_single_turn, *args)
        return super()._generate_single_turn(*args, **kwargs)


def ground_truth_reward(completions, answer, **kwargs):
    """A plain TRL reward function: 1 when the extracted answer matches the reference."""
    answers = [extract_answer(completion_text(c)) for c in completions]
    return [float(m) for m in answers_match(list(zip(answer, answers)))]


def settings(method: str, args) -> dict:
    return dict(
        output_dir=f"runs/bench/{method}", max_steps=args.steps, num_generations=args.generations,
        per_device_train_batch_size=args.prompts * args.generations, max_completion_length=48,
        learning_rate=1e-4, report_to=[], disable_tqdm=True, logging_steps=1, seed=0, bf16=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="steps per method; the first is not timed")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    args = parser.parse_args()

    rows = []
    problems = synthetic_problems(args.model, 512, "train", seed=0)
    model, tokenizer = load_model(args.model, device="cpu")
    timer = StepTimer()
    baseline = GRPOTrainer(
        model=model, reward_funcs=ground_truth_reward, args=GRPOConfig(**settings("trl", args)),
        train_dataset=training_dataset(problems, "ground_truth", None), processing_class=tokenizer,
        callbacks=[timer],
    )
    baseline.train()
    base = median(timer.times[1:])
    rows.append(("TRL GRPOTrainer + ground-truth function", base, 1.0, None))

    for method in METHODS:
        model, tokenizer = load_model(args.model, device="cpu")
        config = CoRewardingConfig(method=method, heldout_dataset=None, **settings(method, args))
        timer = StepTimer()
        trainer = TimedTrainer(
            model=model, args=config, train_dataset=training_dataset(problems, method, config.system_prompt),
            processing_class=tokenizer, callbacks=[timer],
        )
        trainer.train()
        step = median(timer.times[1:])
        by_design = trainer.timings["by_design"]
        rewards = trainer.timings["rewards"]
        overhead = median(
            r - (by_design[i] if by_design else 0.0) for i, r in enumerate(rewards[1:], start=1)
        )
        rows.append((method, step, step / base, overhead / step))

    table = Table(
        title=f"Seconds per step, tiny model, {args.prompts} prompts x {args.generations} rollouts (median)"
    )
    for column in ("trainer / method", "s / step", "ratio to TRL", "reward overhead / step"):
        table.add_column(column, justify="right")
    for name, step, ratio, overhead in rows:
        table.add_row(
            name, f"{step:.2f}", f"{ratio:.2f}x", "–" if overhead is None else f"{100 * overhead:.1f}%"
        )
    Console().print(table)
    Console().print(
        "Co-rewarding-I trains both views of each pair: per step it has the same rollouts as the others but "
        "half as many distinct questions. Co-rewarding-II adds the teacher's rollouts (by design). "
        "Target: reward overhead < 5% of the step."
    )


if __name__ == "__main__":
    main()
