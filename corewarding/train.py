"""A training run from a :class:`~corewarding.config.CoRewardingConfig`: data, model, trainer, train.

This is what ``corewarding train --config recipe.yaml`` runs, and what the demo runs once per method.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from datasets import Dataset

from corewarding.config import CoRewardingConfig
from corewarding.data.loaders import load_problems, load_rephrased_pair
from corewarding.data.records import Problem
from corewarding.data.synthetic import generate_problems
from corewarding.models import load_model
from corewarding.prompts import chat_messages
from corewarding.rewards import COOPER_METHODS
from corewarding.tiny_model import TINY_MODEL_DIR

__all__ = ["TrainingDataError", "training_problems", "heldout_problems", "training_dataset", "build_trainer", "train"]

#: Synthetic problems drawn for training when ``max_train_problems`` is not set.
SYNTHETIC_TRAIN_SIZE = 2000


class TrainingDataError(ValueError):
    """The training data cannot be used as configured (one line, for the CLI)."""


def training_problems(config: CoRewardingConfig) -> list[Problem]:
    """The configured training problems: the synthetic train split, or a dataset file."""
    if config.dataset == "synthetic":
        return generate_problems(config.max_train_problems or SYNTHETIC_TRAIN_SIZE, "train", seed=config.seed)
    if config.dataset_rephrasings:
        problems = load_rephrased_pair(config.dataset, config.dataset_rephrasings, config.dataset_columns)
    else:
        problems = load_problems(config.dataset, config.dataset_columns)
    return problems[: config.max_train_problems] if config.max_train_problems else problems


def heldout_problems(config: CoRewardingConfig) -> list[Problem]:
    """The problems held-out accuracy is measured on (empty when none are configured)."""
    if config.heldout_dataset is None:
        return []
    if config.heldout_dataset == "synthetic":
        return generate_problems(config.max_heldout_problems, "test", seed=config.seed)
    problems = [p for p in load_problems(config.heldout_dataset) if p.answer is not None]
    return problems[: config.max_heldout_problems]


def training_dataset(
    problems: list[Problem], method: str, system_prompt: str | None, allow_invalid_rephrasings: bool = False
) -> Dataset:
    """Rows for :class:`~corewarding.trainer.CoRewardingTrainer`: prompt, question_id, view, answer.

    ``co_rewarding_i`` gets two rows per problem, its question (view 0) at row 2k and its rephrasing
    (view 1) at row 2k+1; a problem without a rephrasing, or with one the validator rejected (unless
    ``allow_invalid_rephrasings``), is refused. Other methods get one row per problem. Cooper's reward
    model reads the reference answer: a problem without one is refused.
    """
    if not problems:
        raise TrainingDataError("the training set is empty")
    if method in COOPER_METHODS:
        missing = [p.id for p in problems if p.answer is None]
        if missing:
            raise TrainingDataError(
                f"{method} reads the reference answer: {len(missing)} of {len(problems)} problems have none "
                f"(first: {missing[0]})"
            )
    rows = []
    for problem in problems:
        views = [problem.question]
        if method == "co_rewarding_i":
            views.append(problem.rephrasing)
        for view, text in enumerate(views):
            rows.append(
                {"prompt": chat_messages(text, system_prompt), "question_id": problem.id, "view": view,
                 "answer": problem.answer}
            )
    if method == "co_rewarding_i":
        missing = [p.id for p in problems if not p.rephrasing]
        if missing:
            raise TrainingDataError(
                f"co_rewarding_i needs a rephrasing of every question: {len(missing)} of {len(problems)} have none "
                f"(first: {missing[0]}); set dataset_rephrasings or use a dataset with a rephrasing column"
            )
        invalid = [p.id for p in problems if p.rephrasing_valid is False]
        if invalid and not allow_invalid_rephrasings:
            raise TrainingDataError(
                f"{len(invalid)} of {len(problems)} rephrasings were rejected by the validator (first: {invalid[0]}); "
                "drop them, or set allow_invalid_rephrasings=true to train on them anyway"
            )
    return Dataset.from_list(rows)


def build_trainer(config: CoRewardingConfig):
    """Load the model and the data of ``config`` and make the trainer (not yet trained)."""
    from corewarding.trainer import CoRewardingTrainer  # TRL is imported only when a trainer is made

    location = TINY_MODEL_DIR if config.model_name_or_path == "tiny" else config.model_name_or_path
    model, tokenizer = load_model(location, device="cpu")
    if str(location).endswith(".gguf") and config.beta > 0:
        # With a KL term TRL rebuilds the reference model from the policy's folder, which a GGUF file is
        # not: write the dequantised model once as a plain folder and train from that.
        folder = Path(config.output_dir) / "base_model"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        model, tokenizer = load_model(folder, device="cpu")
    train_data = training_dataset(
        training_problems(config), config.method, config.system_prompt, config.allow_invalid_rephrasings
    )
    heldout = heldout_problems(config)
    eval_data = training_dataset(heldout, "ground_truth", config.system_prompt) if heldout else None
    return CoRewardingTrainer(
        model=model, args=config, train_dataset=train_data, eval_dataset=eval_data,
        processing_class=tokenizer, heldout=heldout,
    )


def train(config: CoRewardingConfig, resume_from_checkpoint: str | bool | None = None):
    """Run training; the config is saved as ``config.yaml`` in the output folder. Returns the trainer."""
    trainer = build_trainer(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=True))
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer

