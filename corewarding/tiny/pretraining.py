"""Supervised pretraining of the tiny model on the synthetic task, to a deliberately partial skill.

Label-free RL needs a model that is right sometimes, not always, and whose mistakes RL can undo.
:func:`pretrain` trains a fresh :mod:`corewarding.tiny.model` on worked solutions of the synthetic
train split until it has learnt the arithmetic, then measures it on both splits
(:func:`~corewarding.tiny.view_diagnostics.measure_views`). The partial skill comes from the corpus:
a share of its worked solutions carry a mistake, drawn at the rates of :class:`PretrainConfig`
(:func:`corpus_solution`; :func:`~corewarding.data.synthetic.worked_solution` shows each kind):

* **slips** (``slip_rate``): one step's result off by ±1..3 at random, the later steps computed from
  it. Wrong answers scatter over many values while the right one stays the most likely, so the
  majority of samples is right more often than one sample.
* **irrelevant numbers** (``distractor_use_rate``, on forms that carry one: ``task.distractor_rate``):
  the number of an irrelevant sentence added as a last step. Only the wordings with such a sentence
  invite the mistake, so errors depend on how a question is told.
* **a shortcut** (``shortcut_rate``, ``shortcut_rate_addition``): the last step left out, at a rate
  that depends on the problem's last operation — systematic errors that every wording shares.

:mod:`corewarding.tiny.regimes` names the three corpora the shipped models were made from.

Why mistakes in the corpus rather than an undertrained model. RL on a model this small cannot teach
it arithmetic facts it does not know (a model stopped half-way through learning them, 40% right, got
*worse* under ground-truth GRPO at every learning rate tried); it can change a *behaviour*, as RL on
real LLMs mostly does (finishing the solution, ignoring an irrelevant fact, committing to the answer
it computes most often).

* **Inputs as in RL and evaluation.** The prompt is the question with the system prompt, rendered by
  :func:`corewarding.inference.models.render_prompts` (the chat template, ``add_generation_prompt=True``);
  the target is the worked solution followed by ``<|im_end|>``. The loss covers the target tokens only.
* **Every surface form.** Each example is a random train chain told in a random one of its forms,
  so the model meets questions and rephrasings alike.
* **Deterministic.** The data stream, initial weights and optimiser depend on ``seed`` only: the same
  seed, settings and torch build on the same machine give bit-identical weights (also with one or
  two torch threads). Another CPU's kernels round differently, so there the loss curve and the
  accuracies agree within noise, not bit for bit (the recorded ``loss_curve`` is what to compare).

With 800 steps of 64 examples and the 0.95 M-parameter model, training takes about 4 minutes on one
CPU core. Saves ``save_pretrained`` model and tokenizer to the output folder, plus ``pretrain.json``
(settings, seed, loss curve, the measurement on both splits, wall time, versions).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean

import torch
import transformers
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corewarding.core.errors import UserError
from corewarding.core.terminal import output_console
from corewarding.data.synthetic import (
    SPLITS,
    Chain,
    SurfaceForm,
    TaskConfig,
    generate_problems,
    render_forms,
    sample_chains,
    worked_solution,
)
from corewarding.inference.generation import TransformersBackend
from corewarding.inference.models import render_prompts
from corewarding.tiny.model import TinyModelConfig, build_model, build_tokenizer
from corewarding.tiny.view_diagnostics import measure_views

__all__ = ["PretrainConfig", "PretrainResult", "pretrain", "training_batch", "SETTINGS_FILE"]

#: The file in the output folder that records how the model was made and how well it does.
SETTINGS_FILE = "pretrain.json"
#: Steps per point of the recorded loss curve (the mean loss of each window).
LOSS_WINDOW = 50


@dataclass(frozen=True)
class PretrainConfig:
    """Pretraining settings: the corpus's mistakes, the model, the task and the optimisation. The
    defaults make a corpus without mistakes; :data:`~corewarding.tiny.regimes.REGIMES` holds the
    settings of the shipped models.

    Attributes:
        seed: seeds the data stream, the initial weights and the evaluation's sampling.
        steps: optimiser steps (default 800: the arithmetic is learnt; the shortcut stays).
        batch_size: examples per step (default 64).
        learning_rate: peak AdamW learning rate (default 3e-3; a 1 M-parameter model tolerates it).
        warmup_ratio: share of the steps spent warming up linearly from 0 to the peak (default 0.1),
            followed by a cosine decay to 0.
        weight_decay: AdamW weight decay (default 0.01).
        eval_problems: distinct problems of each split (train, test) the final measurement uses (default 500).
        eval_seed: seed of those problems (default 0: every run is measured on the same problems).
        eval_samples: sampled answers per surface form, at temperature 1.0 (default 8).
        max_new_tokens: completion limit at evaluation (default 48; a worked solution takes ~25).
        shortcut_rate: share of the solutions that stop one step early, for problems whose last
            operation is ``-`` or ``*`` (default 0.0; the ``shortcut`` regime: 0.95; ``hard``: 0.4).
        shortcut_rate_addition: the same for problems whose last operation is ``+`` (default 0.0;
            the ``shortcut`` regime: 0.25; ``hard``: 0.4, so that stopping early does not depend on the
            problem).
        slip_rate: share of the solutions with one arithmetic slip: the result of one step, chosen
            uniformly among those written, is off by ±1..``slip_max`` (never below 1), and the later
            steps compute from it (default 0.0).
        slip_max: the largest slip (default 3).
        distractor_use_rate: share of the solutions of a question with an irrelevant number
            (``task.distractor_rate``) that wrongly add it as a last step (default 0.0).
        model: the tiny model's size.
        task: the synthetic task's difficulty, and how many of its questions carry an irrelevant number.
    """

    seed: int = 0
    steps: int = 800
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    eval_problems: int = 500
    eval_seed: int = 0
    eval_samples: int = 8
    max_new_tokens: int = 48
    shortcut_rate: float = 0.0
    shortcut_rate_addition: float = 0.0
    slip_rate: float = 0.0
    slip_max: int = 3
    distractor_use_rate: float = 0.0
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise UserError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.eval_problems < 0 or self.eval_samples < 0:
            raise UserError("eval_problems and eval_samples must be non-negative")
        for name in ("shortcut_rate", "shortcut_rate_addition", "slip_rate", "distractor_use_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.slip_max < 1:
            raise UserError(f"slip_max must be at least 1, got {self.slip_max}")

    def shortcut_probability(self, chain) -> float:
        """How often the training solutions of ``chain`` stop one step early."""
        return self.shortcut_rate_addition if chain.steps[-1][0] == "+" else self.shortcut_rate

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        """The inverse of ``dataclasses.asdict`` (JSON turns tuples into lists; they are turned back)."""
        task = {k: tuple(v) if isinstance(v, list) else v for k, v in data["task"].items()}
        return cls(**{**data, "model": TinyModelConfig(**data["model"]), "task": TaskConfig(**task)})


@dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain` made: the model and tokenizer, the last step's loss, and per split the
    figures of :func:`~corewarding.tiny.view_diagnostics.measure_views` (None without evaluation)."""

    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase
    final_loss: float
    loss_curve: list[float]
    evaluation: dict | None
    train_seconds: float
    eval_seconds: float


def corpus_solution(chain: Chain, form: SurfaceForm, rng: random.Random, config: PretrainConfig) -> str:
    """The worked solution of one pretraining example: right, or with the corpus's mistakes drawn at
    the config's rates (:func:`~corewarding.data.synthetic.worked_solution` shows each kind).

    Random draws are made only for mistakes whose rate is set (the shortcut's always), so a config
    without slips or distractors draws exactly the stream the ``shortcut`` regime was made with.
    """
    stop_early = rng.random() < config.shortcut_probability(chain)
    distractor = None
    if form.distractor is not None and rng.random() < config.distractor_use_rate:
        distractor = form.distractor
    slip = None
    if config.slip_rate and rng.random() < config.slip_rate:
        results = chain.values()[:-1] if stop_early else chain.values()
        if distractor is not None:
            results.append(results[-1] + distractor if results else chain.start + distractor)
        step = rng.randrange(len(results))
        sizes = [d for d in range(-config.slip_max, config.slip_max + 1) if d and results[step] + d >= 1]
        slip = (step, rng.choice(sizes))
    return worked_solution(chain, stop_early=stop_early, slip=slip, distractor=distractor)


def training_batch(
    tokenizer, rng: random.Random, chains, batch_size: int, config: PretrainConfig = PretrainConfig()
) -> dict[str, torch.Tensor]:
    """A right-padded batch of prompt + worked solution (:func:`corpus_solution`) + end token; labels
    are -100 outside the solution. Each example is a random chain told in a random one of its forms."""
    chains = [next(chains) for _ in range(batch_size)]
    forms = [rng.choice(render_forms(chain, rng.getrandbits(32), config.task)) for chain in chains]
    solutions = [corpus_solution(chain, form, rng, config) for chain, form in zip(chains, forms)]
    prompt_ids = tokenizer(
        render_prompts(tokenizer, [f.text for f in forms]), add_special_tokens=False
    )["input_ids"]
    target_ids = tokenizer(solutions, add_special_tokens=False)["input_ids"]
    rows = [(p, t + [tokenizer.eos_token_id]) for p, t in zip(prompt_ids, target_ids)]
    length = max(len(p) + len(t) for p, t in rows)
    input_ids = torch.full((batch_size, length), tokenizer.pad_token_id)
    labels = torch.full((batch_size, length), -100)
    attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
    for i, (p, t) in enumerate(rows):
        input_ids[i, : len(p) + len(t)] = torch.tensor(p + t)
        labels[i, len(p) : len(p) + len(t)] = torch.tensor(t)
        attention_mask[i, : len(p) + len(t)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _cosine_with_warmup(warmup: int, total: int):
    """Learning-rate factor of step s: (s + 1) / warmup while warming up, then
    ½(1 + cos(π (s − warmup) / (total − warmup)))."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    return factor


def pretrain(
    config: PretrainConfig = PretrainConfig(),
    output_dir: str | Path | None = None,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> PretrainResult:
    """Train a fresh tiny model on the synthetic train split, evaluate it on the test split, save it.

    Args:
        config: the settings (recorded in ``pretrain.json``).
        output_dir: where to save model, tokenizer and ``pretrain.json``; None saves nothing.
        progress: show progress bars.
        stop_after: run only the first this many steps of ``config``'s schedule, to compare a run's
            start with a recorded loss curve in minutes rather than the whole pretraining.
    """
    started = time.perf_counter()
    tokenizer = build_tokenizer(config.task)
    model = build_model(tokenizer, config.model, seed=config.seed)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _cosine_with_warmup(round(config.warmup_ratio * config.steps), config.steps)
    )
    rng = random.Random(f"pretrain:{config.seed}")
    chains = sample_chains(rng, "train", config.task)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    losses = []
    with Progress(*columns, disable=not progress, console=output_console()) as bar:
        task = bar.add_task("pretraining", total=config.steps)
        for _ in range(config.steps if stop_after is None else min(stop_after, config.steps)):
            loss = model(**training_batch(tokenizer, rng, chains, config.batch_size, config)).loss
            losses.append(loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            bar.update(task, advance=1, description=f"pretraining (loss {loss.item():.3f})")
    model.eval()
    final_loss = losses[-1]
    # One loss is noisy; window means are what another machine's run can be compared with.
    loss_curve = [fmean(losses[i : i + LOSS_WINDOW]) for i in range(0, len(losses), LOSS_WINDOW)]
    train_seconds = time.perf_counter() - started

    evaluation = None
    if config.eval_problems:
        backend = TransformersBackend(model, tokenizer, seed=config.seed)
        evaluation = {
            split: measure_views(
                generate_problems(config.eval_problems, split, seed=config.eval_seed, config=config.task),
                backend, config.task, k=config.eval_samples, max_new_tokens=config.max_new_tokens,
                progress=progress,
            )
            for split in SPLITS
        }
    eval_seconds = time.perf_counter() - started - train_seconds

    if output_dir is not None:
        output_dir = Path(output_dir)
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        record = {
            "config": asdict(config),
            "final_loss": final_loss,
            "loss_curve": loss_curve,
            "evaluation": evaluation,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": {"training": round(train_seconds, 1), "evaluation": round(eval_seconds, 1)},
            "torch_threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        (output_dir / SETTINGS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return PretrainResult(model, tokenizer, final_loss, loss_curve, evaluation, train_seconds, eval_seconds)
