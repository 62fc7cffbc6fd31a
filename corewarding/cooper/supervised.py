"""Training Cooper's reward model on labelled completions: binary cross-entropy, held-out scores, resumable.

The loss of a batch of scores s_i with labels y_i ∈ {0, 1} (1: the completion is correct) is the mean
binary cross-entropy

    ℓ = −(1/B) Σ_i [y_i·log σ(s_i) + (1 − y_i)·log(1 − σ(s_i))]

minimised by AdamW with a linear warm-up and cosine decay, gradients clipped to norm 1. After every
epoch the model is scored on the held-out completions (:func:`evaluate_reward_model`: accuracy,
balanced accuracy, precision and recall of σ(s) ≥ 0.5, and the threshold-free AUC).

**Resuming.** Every ``save_steps`` steps the model, the optimizer (a torch file of tensors) and the
schedule, step and scores so far (JSON) are saved to ``<output>/checkpoint-<step>``, crash-safe as
``train``'s checkpoints are (:mod:`corewarding.checkpoints`: complete only once its marker
is written, checksummed, removed when saving fails); a rerun with the same settings continues from
the newest complete one and ends with the weights an uninterrupted run ends with (the order of the
examples in epoch e is fixed by the seed and e; the backbones used here have no dropout). At the end
the model and tokenizer replace those in ``<output>`` file by file (``RewardModel.load`` reads it),
then ``rm_train.json`` (settings, data sizes, the scores after every epoch, time) is written, last;
a rerun then only reports them. The output folder is locked for the run
(:mod:`corewarding.core.folder_lock`). A stop signal (SIGINT, SIGTERM, SIGUSR1:
:mod:`corewarding.core.stop_signals`) ends the run at the end of the step it is in, with a checkpoint
there and :class:`~corewarding.core.stop_signals.StoppedBySignal`.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import get_cosine_schedule_with_warmup

from corewarding import checkpoints
from corewarding.cooper.annotate import LabelledExample
from corewarding.cooper.reward_model import ClassificationScores, RewardModel, classification_scores
from corewarding.core.atomic_files import write_atomically
from corewarding.core.errors import UserError
from corewarding.core.folder_lock import locked_folder
from corewarding.core.stop_signals import StoppedBySignal, requested, stopping_on
from corewarding.core.terminal import output_console

__all__ = [
    "RewardTrainingConfig",
    "RewardTrainingResult",
    "RESULT_FILE",
    "evaluate_reward_model",
    "train_reward_model",
]

#: The file in the output folder that records the training run and its scores.
RESULT_FILE = "rm_train.json"
_CHECKPOINT = "checkpoint"
_OPTIMIZER = "optimizer.pt"
_STATE = "training_state.json"
#: The method a checkpoint's completion marker names.
_METHOD = "rm_train"


@dataclass(frozen=True)
class RewardTrainingConfig:
    """Settings of ``corewarding rm train``; the defaults suit the tiny model on the synthetic task.

    Attributes:
        epochs: passes over the training completions (default 4).
        batch_size: completions per optimizer step (default 32).
        learning_rate: peak AdamW learning rate (default 1e-3 for the 1 M-parameter tiny backbone;
            about 1e-5 suits an LLM backbone).
        weight_decay: AdamW weight decay (default 0.01).
        warmup_ratio: share of the steps with a linear warm-up (default 0.1), then cosine decay to 0.
        max_grad_norm: gradient clipping norm (default 1.0).
        save_steps: steps between checkpoints (default 100).
        seed: seeds the fresh head and the order of the examples.
    """

    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    save_steps: int = 100
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "save_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise UserError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UserError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class RewardTrainingResult:
    """What ``rm_train.json`` holds.

    Attributes:
        config: the settings.
        train_examples, heldout_examples: completions trained and scored on.
        epochs: after each epoch, ``{"epoch": e, "loss": mean training loss, **held-out scores}``
            (:class:`~corewarding.cooper.reward_model.ClassificationScores`); the last is the saved model's.
        seconds: training time of this call (0 when it only reported a finished run).
        resumed_from_step: the checkpoint's step this call started from (0: from the start).
    """

    config: dict
    train_examples: int
    heldout_examples: int
    epochs: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from_step: int = 0


def evaluate_reward_model(model: RewardModel, examples: Sequence[LabelledExample]) -> ClassificationScores:
    """How well the scores s separate the examples' labels: the prediction σ(s) ≥ 0.5 (s ≥ 0), the AUC,
    and the AUC among the completions of each question."""
    texts = model.texts(
        [e.question for e in examples], [e.reference for e in examples], [e.completion for e in examples]
    )
    groups: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(example.question_id, []).append(i)
    return classification_scores(
        model.scores(texts), [e.label for e in examples], groups=list(groups.values())
    )


def _epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(f"rm-train:{seed}:{epoch}").shuffle(order)
    return order


def train_reward_model(
    model: RewardModel,
    train: Sequence[LabelledExample],
    heldout: Sequence[LabelledExample],
    output_dir: str | Path,
    config: RewardTrainingConfig = RewardTrainingConfig(),
    *,
    progress: bool = True,
) -> RewardTrainingResult:
    """Train ``model`` on ``train`` (BCE), score it on ``heldout``, and save it to ``output_dir``.

    ``model`` is the starting point (a fresh head, or a reward model to train further); on resuming,
    its weights are replaced by the checkpoint's.
    """
    if not train:
        raise UserError("no training completions: the labelled data has no rows of the train split")
    output = Path(output_dir)
    with locked_folder(output, "choose another --output"):
        return _train(model, train, heldout, output, config, progress)


def _train(
    model: RewardModel, train: Sequence[LabelledExample], heldout: Sequence[LabelledExample], output: Path,
    config: RewardTrainingConfig, progress: bool,
) -> RewardTrainingResult:
    settings = asdict(config) | {"bounds": asdict(model.bounds)}
    finished = output / RESULT_FILE
    if finished.is_file():
        result = RewardTrainingResult(**json.loads(finished.read_text()))
        _check_same(result.config, settings, output)
        return result

    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, round(config.warmup_ratio * total), total)
    result = RewardTrainingResult(settings, len(train), len(heldout))
    epoch_losses: list[float] = []
    checkpoint = checkpoints.last_intact(
        output, _METHOD, use_older="delete the checkpoints after it and run the same command again"
    )
    if checkpoint is not None:
        state = json.loads((checkpoint / _STATE).read_text())
        _check_same(state["result"]["config"], settings, output)
        model.model.load_state_dict(RewardModel.load(checkpoint, device=model.device).model.state_dict())
        optimizer.load_state_dict(
            torch.load(checkpoint / _OPTIMIZER, map_location=model.device, weights_only=True)
        )
        schedule.load_state_dict(state["schedule"])
        epoch_losses = state["epoch_losses"]
        result = RewardTrainingResult(**state["result"])
        result.resumed_from_step = state["step"]
    step = result.resumed_from_step
    labels = torch.tensor([float(e.label) for e in train])
    texts = model.texts(
        [e.question for e in train], [e.reference for e in train], [e.completion for e in train]
    )

    started = time.perf_counter()
    model.model.train()
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
    )
    with stopping_on(), Progress(*columns, disable=not progress, console=output_console()) as bar:
        task = bar.add_task("training the reward model", total=total, completed=step, loss=float("nan"))
        while step < total:
            epoch, position = divmod(step, steps_per_epoch)
            order = _epoch_order(len(train), config.seed, epoch)
            rows = order[position * config.batch_size : (position + 1) * config.batch_size]
            loss = F.binary_cross_entropy_with_logits(
                model.logits([texts[i] for i in rows]), labels[rows].to(model.device)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.model.parameters(), config.max_grad_norm)
            optimizer.step()
            schedule.step()
            step += 1
            epoch_losses.append(loss.item())
            bar.update(task, advance=1, loss=loss.item())
            if step % steps_per_epoch == 0:
                scores = asdict(evaluate_reward_model(model, heldout)) if heldout else {}
                result.epochs.append(
                    {"epoch": epoch + 1, "loss": sum(epoch_losses) / len(epoch_losses), **scores}
                )
                epoch_losses = []
                model.model.train()
            stop = requested()
            if (stop or step % config.save_steps == 0) and step < total:
                _save_checkpoint(output, step, model, optimizer, schedule, epoch_losses, result)
            if stop and step < total:
                raise StoppedBySignal(
                    f"stopped by {stop} at step {step} of {total}: checkpoint {output}/{_CHECKPOINT}-{step} "
                    "written; run the same command to go on"
                )

    result.seconds = time.perf_counter() - started
    _save_final(output, model, result)
    return result


def _save_checkpoint(output: Path, step, model, optimizer, schedule, epoch_losses, result) -> None:
    """``checkpoint-<step>``: the model, the optimizer, then the rest of the state as JSON; complete
    (:func:`~corewarding.checkpoints.saving`) before older checkpoints go."""
    folder = output / f"{_CHECKPOINT}-{step}"
    with checkpoints.saving(folder, step, _METHOD):
        model.save(folder)
        torch.save(optimizer.state_dict(), folder / _OPTIMIZER)
        state = {
            "schedule": schedule.state_dict(), "step": step, "epoch_losses": epoch_losses,
            "result": asdict(result),
        }
        (folder / _STATE).write_text(json.dumps(state))
    for older in output.glob(f"{_CHECKPOINT}-*"):
        if older != folder:
            shutil.rmtree(older)


def _save_final(output: Path, model: RewardModel, result: RewardTrainingResult) -> None:
    """The trained model into ``output``, each file replacing its old version in one rename; then
    ``rm_train.json``, the mark of a finished run, and the checkpoints go."""
    with checkpoints.published_into(output) as staging:
        model.save(staging)
    write_atomically(output / RESULT_FILE, json.dumps(asdict(result), indent=2))
    for folder in output.glob(f"{_CHECKPOINT}-*"):
        shutil.rmtree(folder)


def _check_same(before: dict, now: dict, output: Path) -> None:
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        raise UserError(
            f"{output} holds a reward model trained with other settings ({', '.join(changed)}); "
            "use another output folder"
        )
