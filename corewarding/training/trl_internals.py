"""Every private member of TRL (and of transformers' ``Trainer`` beneath it) that the trainer uses.

TRL's public API is a trainer and its config; a method whose reward needs the whole gathered batch, a
second model that samples, and checkpoints that hold more than the policy must reach below it. Each such
reach goes through this module, so a TRL release that moves one breaks here, in one place, and
``tests/test_trl_internals.py`` names the member and the TRL version that lacks it.

Members used (``PRIVATE_MEMBERS`` lists them for the test):

* overridden: ``GRPOTrainer._calculate_rewards`` (rewards of the gathered batch),
  ``Trainer._get_train_sampler`` (pairs stay together), ``Trainer._save_checkpoint`` and
  ``Trainer._load_optimizer_and_scheduler`` (the plug-ins in checkpoints), ``training_step``;
* read or called: ``_tokenize_prompts`` (TRL's prompt ids), ``_metrics`` (TRL's logged metrics),
  ``reward_weights`` (set after TRL built it), ``eos_token_ids``, ``generation_config``,
  ``vllm_generation`` (its ``model``, ``sync_weights``, ``generate``), ``Trainer._get_output_dir``;
* a convention: under PEFT, the reference log-probabilities come from the adapter named ``ref`` when the
  model has one (:data:`REFERENCE_ADAPTER`; ``tests/test_adapter_teacher.py`` checks it);
* helpers outside TRL's top-level API: ``create_model_from_path``, ``prepare_deepspeed``,
  ``prepare_fsdp``, ``RepeatSampler``.

The supported range is checked at import with one line (:func:`check_trl_version`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from packaging.version import Version

__all__ = [
    "SUPPORTED_TRL",
    "REFERENCE_ADAPTER",
    "PRIVATE_MEMBERS",
    "check_trl_version",
    "prompt_token_ids",
    "log_metric",
    "eos_token_ids",
    "set_reward_weights",
    "vllm_sample",
    "vllm_serving",
    "output_dir",
    "create_model_from_path",
    "prepare_deepspeed",
    "prepare_fsdp",
    "RepeatSampler",
]

#: TRL releases this module was written and tested against: [low, high).
SUPPORTED_TRL = ("1.16", "1.17")
#: Under PEFT with ``beta`` > 0, ``GRPOTrainer`` scores the KL reference with the adapter of this name when
#: the model has one, else with the adapters disabled (``_generate_and_score_completions``).
REFERENCE_ADAPTER = "ref"


def check_trl_version(version: str | None = None) -> None:
    """Raise ImportError (one line) when the installed TRL (or ``version``) is outside
    :data:`SUPPORTED_TRL`."""
    if version is None:
        import trl

        version = trl.__version__
    low, high = SUPPORTED_TRL
    if not Version(low) <= Version(version) < Version(high):
        raise ImportError(
            f"corewarding's trainer needs trl >= {low}, < {high} (it uses TRL internals); "
            f"found trl {version}: "
            f"pip install 'trl>={low},<{high}'"
        )


check_trl_version()

# TRL 1.16 still calls transformers' gradient_checkpointing* names, which transformers 5 renamed to
# activation_checkpointing* and warns of every step; only TRL can act on it, so only these are hidden.
warnings.filterwarnings(
    "ignore", message=r"`(is_)?gradient_checkpointing\w*` is deprecated", category=FutureWarning
)

from trl.models import prepare_deepspeed, prepare_fsdp  # noqa: E402  (after the version check)
from trl.trainer.utils import RepeatSampler, create_model_from_path  # noqa: E402

#: (class name, member, what for): every private or undocumented member the trainer relies on.
PRIVATE_MEMBERS = (
    ("GRPOTrainer", "_calculate_rewards", "overridden: rewards of the gathered batch"),
    ("GRPOTrainer", "_tokenize_prompts", "the prompt ids TRL generated from"),
    ("GRPOTrainer", "_generate_single_turn", "the policy's generation (tests script it)"),
    ("GRPOTrainer", "_get_train_sampler", "overridden: a question and its rephrasing in one batch"),
    ("GRPOTrainer", "training_step", "overridden: the teacher's update before the step"),
    ("Trainer", "_save_checkpoint", "overridden: plug-ins in checkpoints"),
    ("Trainer", "_load_optimizer_and_scheduler", "overridden: plug-ins restored"),
    ("Trainer", "_get_output_dir", "the run folder of a checkpoint"),
    ("instance", "_metrics", "TRL's per-mode metric lists"),
    ("instance", "reward_weights", "the format reward is only watched"),
    ("instance", "eos_token_ids", "where a sampled completion ends"),
    ("instance", "generation_config", "the policy's sampling settings"),
    ("VLLMGeneration", "model", "the module whose weights the engine serves"),
    ("VLLMGeneration", "sync_weights", "load those weights into the engine"),
    ("VLLMGeneration", "generate", "sample from the engine"),
)


def prompt_token_ids(trainer, prompts: list) -> list[list[int]]:
    """The token ids of ``prompts`` as TRL tokenised them for generation."""
    prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
    return prompt_ids


def log_metric(trainer, name: str, value: float) -> None:
    """Log ``value`` under ``name`` with TRL's training metrics (averaged per logging step)."""
    trainer._metrics["train"][name].append(value)


def eos_token_ids(trainer) -> list[int]:
    return list(trainer.eos_token_ids)


def set_reward_weights(trainer, weights: list[float]) -> None:
    """The weights TRL sums the reward columns with (``args.reward_weights`` stays as the user left it)."""
    trainer.reward_weights = torch.tensor(weights, dtype=torch.float32)


def output_dir(trainer, trial) -> str:
    return trainer._get_output_dir(trial=trial)


def vllm_sample(trainer, prompt_ids: list[list[int]]) -> list[list[int]]:
    """One completion per prompt from the vLLM engine, with the policy's sampling settings. ``prompt_ids``
    holds each prompt ``num_generations`` times in a row, as TRL's own calls do (server mode relies on it)."""
    _, completion_ids, _, _ = trainer.vllm_generation.generate(
        prompts=prompt_ids, images=None, num_generations=trainer.num_generations
    )
    return completion_ids


@contextmanager
def vllm_serving(trainer, model: torch.nn.Module):
    """The vLLM engine serves ``model``'s weights inside the block and the policy's again after it: one
    weight sync in, one out (every process takes part, as in TRL's own sync)."""
    generation = trainer.vllm_generation
    policy = generation.model
    generation.model = trainer.accelerator.unwrap_model(model)
    try:
        generation.sync_weights()
        yield
    finally:
        generation.model = policy
        generation.sync_weights()
