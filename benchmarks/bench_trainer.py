"""Seconds per training step of every method on the tiny model, against TRL's plain GRPOTrainer,
measured interleaved so that a shared machine's load drift cannot fake or hide an overhead.

Every trainer is built once and trains in its own thread, parked between optimizer steps; the
benchmark then runs rounds of one step of each trainer (order rotated each round, one trainer
running at a time), and reports each method's ratio to TRL's plain ``GRPOTrainer`` as the median of
its per-round ratios with their interquartile range (``benchmarks/interleaved.py``). TRL's trainer is
built twice: the second is the self-check row, whose ratio must come out within 1.00 ± 0.03, or the
table says the machine was too noisy to judge the targets.

Each step is timed twice: wall time (what a user waits) and this process's CPU time (the work the
trainer does). On a machine shared with other jobs a step's wall time also counts the moments the
process waited for a core, which change within a round; its CPU time does not, so the targets are judged
on CPU time (whose self-check is the stricter test) and wall time is shown beside it. CPU time leaves
out other processes' work: the math-verify workers (a wall-time share of a step below 1%, see
``bench_rewards.py``).

Rollouts are held fixed: the learning rate is 1e-12 (no weight moves by a float32 ulp) and every
trainer's step k starts from the same random seed, so every step of every trainer samples the same
rollouts from the same initial model (Co-rewarding-I's pairs are other prompts); ``mean length``
shows it. The baseline is TRL's ``GRPOTrainer`` with a per-completion ground-truth reward function,
at the same rollouts per step.

Each step is split into the policy's generation (TRL's ``_generate_single_turn``), the rewards
(``_calculate_rewards``) — of which the work a method needs by design is shown apart (the teacher's
samples for Co-rewarding-II, the extra forward pass of the confidence rewards, the extra votes) — and
the rest (log-probabilities, loss, backward, optimizer). Target (issue 34): every method's step, less
its work by design, within 1.05x of TRL's step in CPU time (median of the rounds, upper quartile below
1.10): for Co-rewarding-II that is "the teacher costs one extra generation and nothing else", for the
confidence rewards "at most 5% beyond their forward pass".

With ``--vllm`` (in an environment with vLLM, e.g. ``.ci/vllm``'s; on the CPU build the runner's
switches of ``tests/vllm_cpu.py`` apply) ground truth and Co-rewarding-II are also timed with vLLM
colocate against transformers generation, interleaved the same way: step time, engine start (apart),
and the teacher's weight swap per step (two syncs).

    python benchmarks/bench_trainer.py [--rounds 12] [--methods a,b] [--vllm]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from statistics import median

import torch
from interleaved import SELF_CHECK_TOLERANCE, machine_quiet, ratio, round_robin, verdict
from rich.console import Console
from rich.table import Table
from transformers import PrinterCallback, TrainerCallback, set_seed
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

TARGET, SPREAD_LIMIT = 1.05, 1.10
REFERENCE, SELF_CHECK = "TRL GRPOTrainer (reference)", "TRL GRPOTrainer again (self-check)"


class Phases:
    """Seconds spent in named calls during the current step, across every trainer (one runs at a time):
    wall time under the phase's name, this process's CPU time under ``NAME cpu``."""

    def __init__(self):
        self.current = defaultdict(float)

    def wrap(self, owner, attribute: str, phase: str) -> None:
        inner = getattr(owner, attribute)

        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.current[phase] += time.perf_counter() - wall
                self.current[f"{phase} cpu"] += time.process_time() - cpu

        setattr(owner, attribute, timed)

    def take(self) -> dict[str, float]:
        """The current step's seconds per phase, and a fresh count for the next step."""
        taken, self.current = dict(self.current), defaultdict(float)
        return taken


PHASES = Phases()
# A module function is wrapped once: every Co-rewarding trainer calls the same one.
PHASES.wrap(trainer_module, "rollout_statistic", "by design")


class SteppedTrainer(TrainerCallback):
    """A trainer whose ``train()`` runs in its own thread, one optimizer step per call of this object.

    Between calls the thread is parked at the next step's start (after the previous step's logging), so
    nothing of it runs while another trainer's step is timed. Each step starts from the seed of its
    number, the same in every trainer. A call returns the step's wall seconds; :attr:`steps` keeps each
    step's wall and CPU seconds, its phases (see :class:`Phases`) and the mean completion length TRL
    logged for it.
    """

    def __init__(self, trainer):
        self.trainer, self.steps = trainer, []
        self._go, self._parked = threading.Semaphore(0), threading.Semaphore(0)
        self._error: BaseException | None = None
        self._start = (0.0, 0.0)
        trainer.add_callback(self)
        trainer.remove_callback(PrinterCallback)  # the table is the output, not every step's log line
        PHASES.wrap(trainer, "_generate_single_turn", "generation")
        PHASES.wrap(trainer, "_calculate_rewards", "rewards")
        if isinstance(trainer, CoRewardingTrainer):
            PHASES.wrap(trainer, "_sample", "by design")
        self._thread = threading.Thread(target=self._train, daemon=True)

    def start(self) -> None:
        """Run the trainer's set-up, up to its first step."""
        self._thread.start()
        self._wait()

    def __call__(self) -> float:
        self._go.release()
        self._wait()
        return self.steps[-1]["step"]

    def _wait(self) -> None:
        self._parked.acquire()
        if self._error is not None:
            raise RuntimeError("a benchmarked trainer failed") from self._error

    def _train(self) -> None:
        try:
            self.trainer.train()
        except BaseException as error:  # handed to the main thread by _wait
            self._error = error
        finally:
            self._parked.release()

    def on_step_begin(self, args, state, control, **kwargs):
        self._parked.release()
        self._go.acquire()
        set_seed(args.seed + state.global_step)
        PHASES.take()
        self._start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        wall, cpu = time.perf_counter() - self._start[0], time.process_time() - self._start[1]
        self.steps.append({"step": wall, "step cpu": cpu, **PHASES.take()})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "completions/mean_length" in logs and self.steps:
            self.steps[-1]["length"] = logs["completions/mean_length"]


def ground_truth_reward(completions, answer, **kwargs):
    """A plain TRL reward function: 1 when the extracted answer matches the reference."""
    answers = [extract_answer(completion_text(c)) for c in completions]
    return [float(m) for m in answers_match(list(zip(answer, answers)))]


def settings(name: str, args, **extra) -> dict:
    return dict(
        output_dir=f"runs/bench/{name}",
        max_steps=args.rounds + 1,
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


def baseline(name: str, args, problems) -> GRPOTrainer:
    model, tokenizer = load_model("tiny", device="cpu")
    return GRPOTrainer(
        model=model,
        reward_funcs=ground_truth_reward,
        args=GRPOConfig(**settings(name, args)),
        train_dataset=training_dataset(problems, "ground_truth", SYSTEM_PROMPT),
        processing_class=tokenizer,
    )


def ours(method: str, args, problems, name: str | None = None, **extra) -> CoRewardingTrainer:
    model, tokenizer = load_model("tiny", device="cpu")
    config = CoRewardingConfig(method=method, heldout_dataset=None, **settings(name or method, args, **extra))
    return CoRewardingTrainer(
        model=model,
        args=config,
        train_dataset=training_dataset(problems, method, config.system_prompt),
        processing_class=tokenizer,
    )


def interleave(trainers: dict[str, object], rounds: int) -> dict[str, SteppedTrainer]:
    """Step every trainer round-robin (the first step of each untimed); returns them with their records."""
    stepped = {name: SteppedTrainer(trainer) for name, trainer in trainers.items()}
    for one in stepped.values():
        one.start()
    round_robin(stepped, rounds, progress=True)
    return stepped


def phase(stepped: SteppedTrainer, name: str) -> float:
    """Median seconds of ``name`` per timed step (0 when it never ran)."""
    return median(step.get(name, 0.0) for step in stepped.steps[1:])


def series(stepped: SteppedTrainer, name: str, less: str | None = None) -> list[float]:
    """Seconds of ``name`` in each timed step, less those of ``less``."""
    return [step.get(name, 0.0) - (step.get(less, 0.0) if less else 0.0) for step in stepped.steps[1:]]


def trainer_table(stepped: dict[str, SteppedTrainer], rounds: int) -> tuple[Table, str]:
    reference, reference_cpu = series(stepped[REFERENCE], "step"), series(stepped[REFERENCE], "step cpu")
    wall_check = ratio(series(stepped[SELF_CHECK], "step"), reference)
    cpu_check = ratio(series(stepped[SELF_CHECK], "step cpu"), reference_cpu)
    quiet = machine_quiet(cpu_check)
    table = Table(
        title=f"Seconds per step, tiny model, fixed rollouts (lr 1e-12), {rounds} interleaved rounds; "
        "x TRL: median of per-round ratios to TRL's step [interquartile range]; CPU: this process's CPU time"
    )
    columns = (
        "trainer / method", "wall s / step", "x TRL, wall", "CPU s / step", "generation (CPU s)",
        "by design (CPU s)", "reward overhead (CPU)", "rest (CPU s)", "mean length",
        "x TRL, CPU, less by design",
        f"target <= {TARGET:.2f}x",
    )
    for column in columns:  # the names whole, so that a log can be searched for them
        table.add_column(column, justify="right", no_wrap=column == "trainer / method")
    for name, one in stepped.items():
        cpu = phase(one, "step cpu")
        overhead = median(series(one, "rewards cpu", less="by design cpu"))
        rest = median(
            s["step cpu"] - s.get("generation cpu", 0.0) - s.get("rewards cpu", 0.0) for s in one.steps[1:]
        )
        judged = ratio(series(one, "step cpu", less="by design cpu"), reference_cpu)
        table.add_row(
            name,
            f"{phase(one, 'step'):.2f}",
            str(ratio(series(one, "step"), reference)),
            f"{cpu:.2f}",
            f"{phase(one, 'generation cpu'):.2f}",
            f"{phase(one, 'by design cpu'):.2f}",
            f"{100 * overhead / cpu:.1f}%",
            f"{rest:.2f}",
            f"{phase(one, 'length'):.1f}",
            str(judged),
            "reference" if name == REFERENCE else
            ("quiet" if quiet else "TOO NOISY") if name == SELF_CHECK else
            verdict(judged, TARGET, SPREAD_LIMIT, quiet),
        )
    tolerance = f"1.00 ± {SELF_CHECK_TOLERANCE:.2f}"
    note = (
        f"self-check (TRL against TRL): CPU time {cpu_check}, wall time {wall_check}; targets are judged on "
        f"CPU time, " + (
            f"whose self-check is within {tolerance}: the machine was quiet enough" if quiet else
            f"whose self-check is outside {tolerance}: the machine was too noisy to judge targets within 5%; "
            "run again with more --rounds or on a quieter machine"
        )
    )
    return table, note


def vllm_table(args, problems) -> Table:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from vllm_cpu import cpu_vllm

    cpu_vllm()
    trainers, engine_start = {}, {}
    for method in ("ground_truth", "co_rewarding_ii"):
        trainers[(method, "transformers")] = ours(method, args, problems)
        started = time.perf_counter()
        trainers[(method, "vLLM colocate")] = ours(
            method, args, problems, name=f"{method}-vllm", use_vllm=True, vllm_mode="colocate"
        )
        engine_start[method] = time.perf_counter() - started
        PHASES.wrap(trainers[(method, "vLLM colocate")].vllm_generation, "sync_weights", "sync")
    stepped = interleave(trainers, args.rounds)
    table = Table(
        title=f"vLLM colocate vs transformers generation (tiny model, {args.rounds} interleaved rounds)"
    )
    for column in ("method", "generation", "s / step", "x transformers", "engine start (s)", "teacher swap"):
        table.add_column(column, justify="right")
    for (method, generation), one in stepped.items():
        transformers_steps = [s["step"] for s in stepped[(method, "transformers")].steps[1:]]
        swap = phase(one, "sync")
        table.add_row(
            method,
            generation,
            f"{phase(one, 'step'):.2f}",
            str(ratio([s["step"] for s in one.steps[1:]], transformers_steps)),
            f"{engine_start[method]:.0f}" if generation != "transformers" else "–",
            f"{swap:.2f}" if method == "co_rewarding_ii" and generation != "transformers" else "–",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds, after an untimed warm-up round")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument(
        "--methods", default=",".join(m for m, method in METHODS.items() if method.reward_model is None),
        help="comma-separated methods to time (Cooper's reward model is timed by bench_rewards)",
    )
    parser.add_argument("--vllm", action="store_true", help="also vLLM colocate (needs vLLM)")
    args = parser.parse_args()
    problems = synthetic_problems("tiny", 512, "train", seed=0)
    trainers = {REFERENCE: baseline("trl", args, problems), SELF_CHECK: baseline("trl-again", args, problems)}
    for method in args.methods.split(","):
        trainers[method] = ours(method, args, problems)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    stepped = interleave(trainers, args.rounds)
    table, note = trainer_table(stepped, args.rounds)
    console = Console(width=230)  # a full table in a log file too
    console.print(table)
    console.print(
        f"{note}\n{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}; 1-minute "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{time.perf_counter() - started:.0f} s of rounds"
    )
    if args.vllm:
        console.print(vllm_table(args, problems))


if __name__ == "__main__":
    main()
