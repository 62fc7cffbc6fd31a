"""The one configuration of a training run: TRL's ``GRPOConfig`` plus what Co-rewarding adds.

A YAML recipe maps key for key onto :class:`CoRewardingConfig`: the keys below, and every
``GRPOConfig`` / ``TrainingArguments`` key under TRL's own name (``learning_rate``, ``beta``,
``num_generations``, ``loss_type``, ``use_vllm``, ``report_to``, …). Defaults that differ from TRL's
are marked; everything else is TRL's default. :func:`config_from_args` reads a recipe and
``--key value`` overrides the way ``corewarding train`` does (an unknown key gets a close-match
suggestion), and :func:`settings_help` prints every setting by group.
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import torch
import yaml
from trl import GRPOConfig

from corewarding.cooper.negatives import ASSISTANT_BACKENDS, NEGATIVE_SOURCES, STAND_IN
from corewarding.core import metric_names
from corewarding.core.methods import METHODS
from corewarding.core.prompts import SYSTEM_PROMPT
from corewarding.core.teacher_schedule import TeacherSchedule
from corewarding.core.voting import MATCHING_MODES, VotingConfig

__all__ = [
    "CoRewardingConfig", "RECIPES_DIR", "SETTING_GROUPS", "recipe_path", "recipe_settings", "load_recipe",
    "config_from_args", "settings_help",
]

#: The recipes shipped with the package (``configs/tiny`` in the repository points here).
RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass
class CoRewardingConfig(GRPOConfig):
    """Configuration of ``corewarding train``.

    Method:
        method: ``ground_truth``, ``majority_vote``, ``self_certainty``, ``entropy``,
            ``co_rewarding_i``, ``co_rewarding_ii``, ``cooper`` or ``cooper_static``.
        answer_matching: how answers are matched when voting and rewarding against a label:
            ``equivalence`` (math-verify, default) or ``exact`` (canonical strings, as the reference).
        min_agreement_count / min_agreement_ratio: the least agreement a majority needs to be a label
            (default 1 vote and 0.0: plain plurality, as the reference).
        no_answer_penalty: ``entropy`` only: the reward of a rollout without an answer (RENT: -7);
            None (default) leaves it at minus its entropy.
        teacher_rate_start / teacher_rate_end / teacher_update_interval: ``co_rewarding_ii``'s EMA
            schedule a_start → a_end (cosine over the run) and update interval; defaults are the
            reference script's 0.01, 1e-5, every step.
        allow_invalid_rephrasings: ``co_rewarding_i`` trains on pairs the validator rejected (default
            False: they are refused).
        stop_on_collapse: stop at the first collapse signal (:mod:`corewarding.core.collapse`; default
            False: only warn and record it in ``collapse.json``). Turns on ``save_strategy: best`` by
            ``eval_greedy_accuracy``, so the best checkpoint by held-out accuracy is kept; needs
            held-out evaluation (``eval_strategy``). In test-time training the labels may not choose a
            checkpoint: the run stops at the signal and keeps its last one.
        labelled_fraction: semi-supervised: this share of the training questions (chosen by a hash of
            their id and the seed) is rewarded against its reference answer, the rest by the method
            (default 0.0: none; 1.0: every question, ground truth).
        vote_samples: the vote budget N: voting methods take their majority over N samples of each
            prompt and train on G of them (``num_generations``); the N − G extra samples are drawn
            without gradient, as the teacher's are. None (default): N = G. A multiple of G.
        test_time_training: train on the held-out questions themselves, their answers hidden from the
            reward and used only to measure (the paper's Table 9 protocol: train on a benchmark's
            questions, report avg@k / pass@k on them). Default False.

    Cooper (``cooper``: the reward model is updated every step; ``cooper_static``: it stays frozen):
        reward_model_path: the reward model: a folder made by ``corewarding rm train``, or any causal
            LM folder or hub id (a fresh one-logit head); ``tiny`` (default): the tiny model's backbone
            with a fresh head.
        reward_model_learning_rate: AdamW learning rate of its pairwise updates (default 1e-5).
        reward_threshold: None (default): reward σ(s); a value t in (0, 1): reward 1[σ(s) ≥ t].
        reward_model_batch_size: sequences per forward pass of the reward model (default 16).
        reward_model_question_chars / reward_model_reference_chars / reward_model_completion_chars:
            the template's field bounds in characters (defaults 2000, 200, 4000; use the bounds the
            reward model was trained with).
        reward_model_eval_data: labelled completions (a file made by ``corewarding rm annotate``)
            whose held-out split measures the reward model during training (None: not measured).
        reward_model_eval_size: held-out completions used, at most (default 256).
        reward_model_eval_steps: measure every this many steps (default 1).
        negative_source: ``cooper``: where each pair's negative comes from
            (:mod:`corewarding.cooper.co_training`): ``rollouts`` (default: the group's wrong rollout the
            reward model scores highest), ``assistant`` (a completely incorrect response written by an
            assistant, the paper's source; :mod:`corewarding.cooper.negatives`) or ``both`` (a pair of
            each kind).
        assistant_model: the assistant: a model name at ``assistant_base_url`` (openai), a folder or hub
            id (transformers, vllm), or ``stand-in``: an offline stand-in that corrupts the positive (one
            number or operation changed, checked wrong by the verifier; not an LLM). None (default);
            needed when ``negative_source`` is not ``rollouts``.
        assistant_backend: ``openai`` (default: an OpenAI-compatible endpoint), ``transformers`` or
            ``vllm`` (the model loaded on the main process).
        assistant_base_url: the endpoint's API root, ``/v1`` included (openai).
        assistant_api_key_env: the environment variable holding its API key (default
            ``OPENAI_API_KEY``; ``none``: no key).
        assistant_max_new_tokens: the longest negative in tokens (default 1024).
        assistant_timeout: seconds an assistant request may wait for the server (openai; default 60).
        assistant_calls_per_step: the most assistant calls per step (default 64); positives beyond them
            get no assistant negative that step.
        pointwise_weight: ``cooper``: weight w of a binary cross-entropy term on the verifier's labels of
            the batch beside the pairwise loss, which pins the score level (the pairwise loss leaves it
            free). Default 0.0 (none): on the tiny task w = 1 made held-out accuracy worse and less stable
            with every negative source (docs/results.md, Cooper); assistant negatives pin the level
            instead.
        samples_per_step: ``cooper``, ``cooper_static``: rollouts written to ``samples.jsonl`` each step
            with their reward model score and verifier verdict, the wrong ones it scores highest first
            (default 4; 0: none).

    Data and model:
        model_name_or_path: ``tiny`` (the packaged pretrained tiny model, default), a folder, a hub
            id, or a ``.gguf`` file.
        dataset: ``synthetic`` (the embedded task, default) or a dataset file/folder/hub id.
        dataset_rephrasings: for ``co_rewarding_i`` on a file dataset: a file aligned row by row with
            ``dataset`` holding the rephrasings (Co-rewarding's released ``*_rewrite_*.parquet``);
            not needed when the dataset itself has a rephrasing column.
        dataset_columns: the columns, ``question=COL[,answer=COL]`` (as ``--columns`` of the other
            commands), or a preset name; None: detected (a lone question column is enough).
        max_train_problems: use at most this many training problems (None: all).
        heldout_dataset: problems for held-out accuracy (``synthetic``: the synthetic test split;
            ``none``: no held-out evaluation).
        max_heldout_problems: held-out problems evaluated each time (default 64).
        heldout_samples: k samples per held-out problem for the sampled accuracy (default 4; 0: greedy
            only).
        heldout_temperature: temperature of those samples (default 0.8, the paper's evaluation; its
            avg@k is the paper's pass@1).
        training_view: the view that methods training on one view see: ``original`` (default) or
            ``rephrased`` (the rephrasings in place of the questions: the paper's ablation of majority
            vote on rephrased data). ``co_rewarding_i`` always trains on both.
        system_prompt: the system turn of every prompt (the reference runs').

    Run folder:
        overwrite_output_dir: start over in an ``output_dir`` that holds a run (its metrics,
            checkpoints and collapse record are deleted first); default False: such a folder is refused
            unless the run is resumed.

    Defaults changed from TRL's: ``bf16`` is off when no GPU is present (TRL turns it on and then fails
    on a CPU) and so is ``dataloader_pin_memory`` (nothing to pin to); ``output_dir`` is
    ``runs/<method>``; ``logging_steps`` is 1; checkpoints every ``save_steps`` = 50 steps and at the
    last step, the newest ``save_total_limit`` = 2 kept, so ``--resume last`` works on a default run.
    ``max_steps`` must be positive, or -1 to train ``num_train_epochs`` epochs (the paper's recipes).
    """

    method: str = field(default="co_rewarding_ii", metadata={"help": f"One of {', '.join(METHODS)}."})
    answer_matching: str = field(default="equivalence", metadata={"help": "equivalence or exact."})
    min_agreement_count: int = field(default=1, metadata={"help": "Fewest votes a label needs."})
    min_agreement_ratio: float = field(default=0.0, metadata={"help": "Smallest group share a label needs."})
    no_answer_penalty: float | None = field(
        default=None, metadata={"help": "entropy: reward without an answer."}
    )
    teacher_rate_start: float = field(default=0.01, metadata={"help": "co_rewarding_ii: EMA rate a_start."})
    teacher_rate_end: float = field(default=1e-5, metadata={"help": "co_rewarding_ii: EMA rate a_end."})
    teacher_update_interval: int = field(
        default=1, metadata={"help": "co_rewarding_ii: steps between updates."}
    )
    allow_invalid_rephrasings: bool = field(
        default=False, metadata={"help": "Train on rejected rephrasings."}
    )
    stop_on_collapse: bool = field(default=False, metadata={"help": "Stop at the first collapse signal."})
    labelled_fraction: float = field(
        default=0.0, metadata={"help": "Semi-supervised: share of questions rewarded against references."}
    )
    vote_samples: int | None = field(
        default=None, metadata={"help": "Vote budget N (a multiple of G): vote over N, train on G."}
    )
    test_time_training: bool = field(
        default=False, metadata={"help": "Train on the held-out questions (answers only measure)."}
    )
    reward_model_path: str = field(
        default="tiny", metadata={"help": "cooper: reward model folder, backbone or tiny."}
    )
    reward_model_learning_rate: float = field(
        default=1e-5, metadata={"help": "cooper: reward model learning rate."}
    )
    reward_threshold: float | None = field(
        default=None, metadata={"help": "cooper: reward 1[σ(s) ≥ t] (None: σ(s))."}
    )
    reward_model_batch_size: int = field(default=16, metadata={"help": "cooper: reward model batch size."})
    reward_model_question_chars: int = field(
        default=2000, metadata={"help": "cooper: question bound (chars)."}
    )
    reward_model_reference_chars: int = field(
        default=200, metadata={"help": "cooper: reference bound (chars)."}
    )
    reward_model_completion_chars: int = field(
        default=4000, metadata={"help": "cooper: completion bound (chars)."}
    )
    reward_model_eval_data: str | None = field(
        default=None, metadata={"help": "cooper: labelled held-out data."}
    )
    reward_model_eval_size: int = field(default=256, metadata={"help": "cooper: held-out completions used."})
    reward_model_eval_steps: int = field(
        default=1, metadata={"help": "cooper: steps between held-out scores."}
    )
    negative_source: str = field(
        default="rollouts", metadata={"help": "cooper: negatives from rollouts, assistant or both."}
    )
    assistant_model: str | None = field(
        default=None, metadata={"help": "cooper: assistant model (endpoint name, folder, hub id, stand-in)."}
    )
    assistant_backend: str = field(
        default="openai", metadata={"help": "cooper: assistant backend: openai, transformers or vllm."}
    )
    assistant_base_url: str | None = field(
        default=None, metadata={"help": "cooper: assistant endpoint (openai), /v1 included."}
    )
    assistant_api_key_env: str | None = field(
        default="OPENAI_API_KEY", metadata={"help": "cooper: variable holding the assistant's API key."}
    )
    assistant_max_new_tokens: int = field(
        default=1024, metadata={"help": "cooper: longest assistant negative (tokens)."}
    )
    assistant_timeout: float = field(
        default=60.0, metadata={"help": "cooper: seconds per assistant request (openai)."}
    )
    assistant_calls_per_step: int = field(
        default=64, metadata={"help": "cooper: most assistant calls per step."}
    )
    pointwise_weight: float = field(
        default=0.0, metadata={"help": "cooper: weight of a BCE term on the verifier's labels (0: none)."}
    )
    samples_per_step: int = field(
        default=4, metadata={"help": "cooper: rollouts logged to samples.jsonl per step."}
    )

    model_name_or_path: str = field(
        default="tiny", metadata={"help": "tiny, a folder, a hub id or a .gguf file."}
    )
    dataset: str = field(
        default="synthetic", metadata={"help": "synthetic, or a dataset file/folder/hub id."}
    )
    dataset_rephrasings: str | None = field(default=None, metadata={"help": "Row-aligned rephrasings file."})
    dataset_columns: str | None = field(
        default=None,
        metadata={"help": "question=COL[,answer=COL], or a preset (verl, pairs, svamp, asdiv, qa)."},
    )
    max_train_problems: int | None = field(default=None, metadata={"help": "Cap on training problems."})
    heldout_dataset: str | None = field(default="synthetic", metadata={"help": "Held-out accuracy problems."})
    max_heldout_problems: int = field(default=64, metadata={"help": "Held-out problems per evaluation."})
    heldout_samples: int = field(
        default=4, metadata={"help": "Samples per held-out problem (sampled accuracy)."}
    )
    heldout_temperature: float = field(default=0.8, metadata={"help": "Temperature of the held-out samples."})
    training_view: str = field(
        default="original", metadata={"help": "original or rephrased (one-view methods)."}
    )
    system_prompt: str = field(default=SYSTEM_PROMPT, metadata={"help": "System turn of every prompt."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start over in a folder that holds a run."}
    )

    output_dir: str | None = field(default=None, metadata={"help": "Run folder (default runs/<method>)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every this many steps."})
    save_strategy: str = field(
        default="steps", metadata={"help": "When to save checkpoints: steps, epoch, best, no."}
    )
    save_steps: float = field(
        default=50, metadata={"help": "Steps between checkpoints (and one at the end)."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Newest checkpoints kept (None: all)."})

    def __post_init__(self):
        # On the command line an optional setting is switched off with `--key none`.
        for name in (
            "dataset_rephrasings", "dataset_columns", "heldout_dataset", "reward_model_eval_data",
            "assistant_model", "assistant_base_url", "assistant_api_key_env",
        ):
            if isinstance(getattr(self, name), str) and getattr(self, name).lower() in ("none", "null", ""):
                setattr(self, name, None)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.answer_matching not in MATCHING_MODES:
            raise ValueError(
                f"answer_matching must be one of {', '.join(MATCHING_MODES)}, got {self.answer_matching!r}"
            )
        if self.output_dir is None:
            self.output_dir = f"runs/{self.method}"
        if not torch.cuda.is_available():
            if self.bf16 is None and not self.fp16:
                self.bf16 = False
            self.dataloader_pin_memory = False
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(
                "max_steps must be a positive number of steps, or -1 to train num_train_epochs epochs; "
                f"got {self.max_steps}"
            )
        # The settings the trainer will build objects from are checked now, before any model is loaded.
        VotingConfig(self.answer_matching, self.min_agreement_count, self.min_agreement_ratio)
        TeacherSchedule(self.teacher_rate_start, self.teacher_rate_end, self.teacher_update_interval)
        for name in ("learning_rate", "reward_model_learning_rate", "heldout_temperature", "temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name, least in (("max_heldout_problems", 1), ("heldout_samples", 0), ("num_generations", 2)):
            if getattr(self, name) is not None and getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError(f"labelled_fraction must be in [0, 1], got {self.labelled_fraction}")
        if self.vote_samples is not None and (
            self.vote_samples < self.num_generations or self.vote_samples % self.num_generations
        ):
            raise ValueError(
                f"vote_samples must be a multiple of num_generations ({self.num_generations}) and at least "
                f"it, got {self.vote_samples}"
            )
        if self.vote_samples is not None and not (
            METHODS[self.method].needs_teacher or METHODS[self.method].votes_on_own_samples
        ):
            raise ValueError(f"vote_samples: {self.method} does not vote")
        if self.test_time_training and self.heldout_dataset is None:
            raise ValueError("test_time_training trains on the held-out questions: set heldout_dataset")
        if self.stop_on_collapse and not self.test_time_training:
            if self.eval_strategy in ("no", None) or self.heldout_dataset is None:
                raise ValueError(
                    "stop_on_collapse keeps the best checkpoint by held-out accuracy: "
                    "set eval_strategy and heldout_dataset"
                )
            self.save_strategy = "best"
            self.metric_for_best_model = self.metric_for_best_model or metric_names.HELDOUT_GREEDY
        super().__post_init__()
        if self.training_view not in ("original", "rephrased"):
            raise ValueError(f"training_view must be original or rephrased, got {self.training_view!r}")
        if METHODS[self.method].paired_views and self.generation_batch_size % (2 * self.num_generations):
            raise ValueError(
                f"co_rewarding_i samples both views of a pair in one generation batch: generation_batch_size "
                f"({self.generation_batch_size}) must be a multiple of 2 x num_generations "
                f"({2 * self.num_generations})"
            )
        if self.reward_threshold is not None and not 0.0 < self.reward_threshold < 1.0:
            raise ValueError(f"reward_threshold must be in (0, 1), got {self.reward_threshold}")
        if self.reward_model_eval_steps < 1:
            raise ValueError(
                f"reward_model_eval_steps must be at least 1, got {self.reward_model_eval_steps}"
            )
        self._check_reward_model_settings()
        if METHODS[self.method].needs_teacher and self.sync_ref_model:
            raise ValueError(
                "co_rewarding_ii updates its teacher (the KL reference) itself: set sync_ref_model=False"
            )


    def _check_reward_model_settings(self) -> None:
        if self.negative_source not in NEGATIVE_SOURCES:
            raise ValueError(
                f"negative_source must be one of {', '.join(NEGATIVE_SOURCES)}, got {self.negative_source!r}"
            )
        if METHODS[self.method].reward_model != "co_trained":
            for name, default in (("negative_source", "rollouts"), ("pointwise_weight", 0.0)):
                if getattr(self, name) != default:
                    raise ValueError(f"{name}: {self.method} does not update a reward model (cooper does)")
        needs_backend = self.negative_source != "rollouts" and self.assistant_model != STAND_IN
        if self.negative_source != "rollouts" and self.assistant_model is None:
            raise ValueError(f"negative_source {self.negative_source} needs assistant_model (or stand-in)")
        if needs_backend and self.assistant_backend not in ASSISTANT_BACKENDS:
            raise ValueError(
                f"assistant_backend must be one of {', '.join(ASSISTANT_BACKENDS)}, "
                f"got {self.assistant_backend!r}"
            )
        if needs_backend and self.assistant_backend == "openai" and not self.assistant_base_url:
            raise ValueError("an assistant on the openai backend needs assistant_base_url")
        for name, least in (
            ("pointwise_weight", 0), ("samples_per_step", 0), ("assistant_calls_per_step", 1),
            ("assistant_max_new_tokens", 1),
        ):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if self.assistant_timeout <= 0:
            raise ValueError(f"assistant_timeout must be positive, got {self.assistant_timeout}")


#: How ``corewarding train --help`` groups the settings: every field of :class:`CoRewardingConfig` that
#: this project adds, and the TRL / transformers fields most runs set. Any other field of TRL's
#: ``GRPOConfig`` and transformers' ``TrainingArguments`` is accepted under its own name too.
SETTING_GROUPS = {
    "method": (
        "method", "answer_matching", "min_agreement_count", "min_agreement_ratio", "no_answer_penalty",
        "stop_on_collapse", "labelled_fraction", "vote_samples", "test_time_training",
    ),
    "data": (
        "dataset", "dataset_columns", "dataset_rephrasings", "max_train_problems", "training_view",
        "allow_invalid_rephrasings", "system_prompt",
    ),
    "model": ("model_name_or_path", "bf16", "gradient_checkpointing"),
    "held-out evaluation": (
        "heldout_dataset", "max_heldout_problems", "heldout_samples", "heldout_temperature", "eval_strategy",
        "eval_steps", "eval_on_start",
    ),
    "teacher (co_rewarding_ii)": ("teacher_rate_start", "teacher_rate_end", "teacher_update_interval"),
    "reward model (cooper, cooper_static)": (
        "reward_model_path", "reward_model_learning_rate", "reward_threshold", "reward_model_batch_size",
        "reward_model_question_chars", "reward_model_reference_chars", "reward_model_completion_chars",
        "reward_model_eval_data", "reward_model_eval_size", "reward_model_eval_steps", "negative_source",
        "assistant_model", "assistant_backend", "assistant_base_url", "assistant_api_key_env",
        "assistant_max_new_tokens", "assistant_timeout", "assistant_calls_per_step", "pointwise_weight",
        "samples_per_step",
    ),
    "GRPO (TRL)": (
        "num_generations", "per_device_train_batch_size", "generation_batch_size", "max_completion_length",
        "temperature", "top_p", "beta", "loss_type", "epsilon", "num_iterations", "reward_weights",
        "use_vllm", "vllm_mode",
    ),
    "optimisation (transformers)": (
        "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "max_steps",
        "num_train_epochs", "gradient_accumulation_steps", "seed",
    ),
    "run folder and logging": (
        "output_dir", "overwrite_output_dir", "save_strategy", "save_steps", "save_total_limit",
        "logging_steps", "report_to", "run_name",
    ),
}
_FIELDS = {f.name: f for f in fields(CoRewardingConfig)}


def _unknown_key_error(key: str, where: str) -> ValueError:
    close = difflib.get_close_matches(key, _FIELDS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else " (corewarding train --help lists the settings)"
    return ValueError(f"{where}: unknown setting {key}{hint}")


def recipe_path(name: str | Path) -> Path:
    """A recipe file: a path, or the name of a shipped recipe (``tiny/co_rewarding_ii``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(
        str(p.relative_to(RECIPES_DIR).with_suffix(""))
        for p in RECIPES_DIR.glob("*/*.yaml")
        if not p.name.startswith("_")
    )
    raise FileNotFoundError(f"no recipe at {name}: give a YAML file or one of {', '.join(names)}")


def recipe_settings(name: str | Path, _within: tuple[Path, ...] = ()) -> dict:
    """The settings of a recipe (:func:`recipe_path`), over those of the recipe its ``base`` key names.

    ``base`` is a file path relative to the recipe, or a shipped recipe's name (``tiny/_common``); bases
    may have bases; a key that is not a setting is refused with a close match. Shared settings live in one
    file (``tiny/_common.yaml``, ``paper/_reference.yaml``) and each method's recipe states only what
    differs, e.g.::

        base: _common.yaml
        method: co_rewarding_ii
        teacher_rate_start: 0.01
    """
    path = recipe_path(name).resolve()
    if path in _within:
        raise ValueError(f"recipe {_within[0]}: its bases form a cycle through {path}")
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"recipe {path} cannot be read: {error}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping of settings")
    for key in settings:
        if key != "base" and key not in _FIELDS:
            raise _unknown_key_error(key, f"recipe {path}")
    base = settings.pop("base", None)
    if base is None:
        return settings
    if (path.parent / base).is_file():
        base_path = path.parent / base
    else:
        try:  # a shipped recipe's name: `base: tiny/_common`
            base_path = recipe_path(str(base).removesuffix(".yaml"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"recipe {path}: its base {base} is neither a file beside it nor a shipped recipe"
            ) from None
    return {**recipe_settings(base_path, (*_within, path)), **settings}


def load_recipe(name: str | Path, **overrides) -> CoRewardingConfig:
    """The config of a recipe (:func:`recipe_settings`), with ``overrides`` applied."""
    return CoRewardingConfig(**{**recipe_settings(name), **overrides})


def _argument_parser(defaults: dict) -> argparse.ArgumentParser:
    from trl import TrlParser

    parser = TrlParser([CoRewardingConfig], exit_on_error=False)
    parser.set_defaults(**defaults)
    return parser


def config_from_args(recipe: str | Path | None, args: list[str]) -> CoRewardingConfig:
    """The config of ``corewarding train``: a recipe's settings, then ``--key value`` (or ``--key=value``)
    overrides. An unknown key gets a close-match suggestion; a value of the wrong type or out of range is a
    one-line ValueError, raised before any model or data is loaded."""
    settings = recipe_settings(recipe) if recipe is not None else {}
    for token in args:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0]
            if key not in _FIELDS and not (key.startswith("no_") and key[3:] in _FIELDS):
                raise _unknown_key_error("--" + key, "command line")
        elif token.startswith("-") and not _is_number(token):
            raise ValueError(f"command line: settings are given as --key value, got {token}")
    parser = _argument_parser(settings)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=args)
    except argparse.ArgumentError as error:
        raise ValueError(f"command line: {error}") from None
    return config


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def settings_help(recipe: str | Path | None = None) -> str:
    """Every setting of ``corewarding train`` by group, with its value (the recipe's, when one is given,
    else the default) and one line of help."""
    settings = recipe_settings(recipe) if recipe is not None else {}
    lines = [
        "Settings (--key value; a recipe's YAML uses the same keys)"
        + (f", with the values of {recipe}:" if recipe is not None else ", with their defaults:"),
    ]
    for group, names in SETTING_GROUPS.items():
        lines.append(f"\n{group}:")
        for name in names:
            f = _FIELDS[name]
            value = settings.get(name, f.default if f.default is not MISSING else "–")
            if name == "output_dir" and value is None:
                value = "runs/<method>"
            help_text = " ".join(str(f.metadata.get("help", "")).split())
            first = help_text.split(". ")[0].rstrip(".")
            shown = str(value) if len(str(value)) <= 18 else str(value)[:17] + "…"
            lines.append(f"  --{name:<30} {shown:<18}  {first[:70]}")
    lines.append(
        "\nAny other field of TRL's GRPOConfig or transformers' TrainingArguments is accepted under its own "
        "name (see their documentation)."
    )
    return "\n".join(lines)
