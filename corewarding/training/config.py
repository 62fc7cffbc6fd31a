"""The one configuration of a training run: TRL's ``GRPOConfig`` plus what Co-rewarding adds.

A YAML recipe maps key for key onto :class:`CoRewardingConfig`: the keys below, and every
``GRPOConfig`` / ``TrainingArguments`` key under TRL's own name (``learning_rate``, ``beta``,
``num_generations``, ``loss_type``, ``use_vllm``, ``report_to``, …). Defaults that differ from TRL's
are marked; everything else is TRL's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from trl import GRPOConfig

from corewarding.core.prompts import SYSTEM_PROMPT
from corewarding.core import metric_names
from corewarding.core.methods import METHODS
from corewarding.core.voting import MATCHING_MODES

__all__ = ["CoRewardingConfig", "RECIPES_DIR", "recipe_path", "recipe_settings", "load_recipe"]

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
            held-out evaluation (``eval_strategy``).

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

    Data and model:
        model_name_or_path: ``tiny`` (the packaged pretrained tiny model, default), a folder, a hub
            id, or a ``.gguf`` file.
        dataset: ``synthetic`` (the embedded task, default) or a dataset file/folder/hub id.
        dataset_rephrasings: for ``co_rewarding_i`` on a file dataset: a file aligned row by row with
            ``dataset`` holding the rephrasings (Co-rewarding's released ``*_rewrite_*.parquet``);
            not needed when the dataset itself has a rephrasing column.
        dataset_columns: a column preset or mapping name for the loader (None: detected).
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
    on a CPU); ``output_dir`` is ``runs/<method>``; ``logging_steps`` is 1; ``save_strategy`` is ``no``.
    """

    method: str = field(default="co_rewarding_ii", metadata={"help": f"One of {', '.join(METHODS)}."})
    answer_matching: str = field(default="equivalence", metadata={"help": "equivalence or exact."})
    min_agreement_count: int = field(default=1, metadata={"help": "Fewest votes a label needs."})
    min_agreement_ratio: float = field(default=0.0, metadata={"help": "Smallest group share a label needs."})
    no_answer_penalty: float | None = field(default=None, metadata={"help": "entropy: reward without an answer."})
    teacher_rate_start: float = field(default=0.01, metadata={"help": "co_rewarding_ii: EMA rate a_start."})
    teacher_rate_end: float = field(default=1e-5, metadata={"help": "co_rewarding_ii: EMA rate a_end."})
    teacher_update_interval: int = field(default=1, metadata={"help": "co_rewarding_ii: steps between updates."})
    allow_invalid_rephrasings: bool = field(default=False, metadata={"help": "Train on rejected rephrasings."})
    stop_on_collapse: bool = field(default=False, metadata={"help": "Stop at the first collapse signal."})
    reward_model_path: str = field(default="tiny", metadata={"help": "cooper: reward model folder, backbone or tiny."})
    reward_model_learning_rate: float = field(default=1e-5, metadata={"help": "cooper: reward model learning rate."})
    reward_threshold: float | None = field(default=None, metadata={"help": "cooper: reward 1[σ(s) ≥ t] (None: σ(s))."})
    reward_model_batch_size: int = field(default=16, metadata={"help": "cooper: reward model batch size."})
    reward_model_question_chars: int = field(default=2000, metadata={"help": "cooper: question bound (chars)."})
    reward_model_reference_chars: int = field(default=200, metadata={"help": "cooper: reference bound (chars)."})
    reward_model_completion_chars: int = field(default=4000, metadata={"help": "cooper: completion bound (chars)."})
    reward_model_eval_data: str | None = field(default=None, metadata={"help": "cooper: labelled held-out data."})
    reward_model_eval_size: int = field(default=256, metadata={"help": "cooper: held-out completions used."})
    reward_model_eval_steps: int = field(default=1, metadata={"help": "cooper: steps between held-out scores."})

    model_name_or_path: str = field(default="tiny", metadata={"help": "tiny, a folder, a hub id or a .gguf file."})
    dataset: str = field(default="synthetic", metadata={"help": "synthetic, or a dataset file/folder/hub id."})
    dataset_rephrasings: str | None = field(default=None, metadata={"help": "Row-aligned rephrasings file."})
    dataset_columns: str | None = field(default=None, metadata={"help": "Column preset of the loader."})
    max_train_problems: int | None = field(default=None, metadata={"help": "Cap on training problems."})
    heldout_dataset: str | None = field(default="synthetic", metadata={"help": "Held-out accuracy problems."})
    max_heldout_problems: int = field(default=64, metadata={"help": "Held-out problems per evaluation."})
    heldout_samples: int = field(default=4, metadata={"help": "Samples per held-out problem (sampled accuracy)."})
    heldout_temperature: float = field(default=0.8, metadata={"help": "Temperature of the held-out samples."})
    training_view: str = field(default="original", metadata={"help": "original or rephrased (one-view methods)."})
    system_prompt: str = field(default=SYSTEM_PROMPT, metadata={"help": "System turn of every prompt."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start over in a folder that holds a run."})

    output_dir: str | None = field(default=None, metadata={"help": "Run folder (default runs/<method>)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every this many steps."})
    save_strategy: str = field(default="no", metadata={"help": "TrainingArguments.save_strategy."})

    def __post_init__(self):
        # On the command line an optional setting is switched off with `--key none`.
        for name in ("dataset_rephrasings", "dataset_columns", "heldout_dataset", "reward_model_eval_data"):
            if isinstance(getattr(self, name), str) and getattr(self, name).lower() in ("none", "null", ""):
                setattr(self, name, None)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.answer_matching not in MATCHING_MODES:
            raise ValueError(f"answer_matching must be one of {', '.join(MATCHING_MODES)}, got {self.answer_matching!r}")
        if self.output_dir is None:
            self.output_dir = f"runs/{self.method}"
        if self.bf16 is None and not self.fp16 and not torch.cuda.is_available():
            self.bf16 = False
        if self.stop_on_collapse:
            if self.eval_strategy in ("no", None) or self.heldout_dataset is None:
                raise ValueError("stop_on_collapse keeps the best checkpoint by held-out accuracy: set eval_strategy and heldout_dataset")
            self.save_strategy = "best"
            self.metric_for_best_model = self.metric_for_best_model or metric_names.HELDOUT_GREEDY
        super().__post_init__()
        if self.training_view not in ("original", "rephrased"):
            raise ValueError(f"training_view must be original or rephrased, got {self.training_view!r}")
        if self.heldout_temperature <= 0:
            raise ValueError(f"heldout_temperature must be positive, got {self.heldout_temperature}")
        if METHODS[self.method].paired_views and self.generation_batch_size % (2 * self.num_generations):
            raise ValueError(
                f"co_rewarding_i samples both views of a pair in one generation batch: generation_batch_size "
                f"({self.generation_batch_size}) must be a multiple of 2 x num_generations ({2 * self.num_generations})"
            )
        if self.reward_threshold is not None and not 0.0 < self.reward_threshold < 1.0:
            raise ValueError(f"reward_threshold must be in (0, 1), got {self.reward_threshold}")
        if self.reward_model_eval_steps < 1:
            raise ValueError(f"reward_model_eval_steps must be at least 1, got {self.reward_model_eval_steps}")
        if METHODS[self.method].needs_teacher and self.sync_ref_model:
            raise ValueError("co_rewarding_ii updates its teacher (the KL reference) itself: set sync_ref_model=False")


def recipe_path(name: str | Path) -> Path:
    """A recipe file: a path, or the name of a shipped recipe (``tiny/co_rewarding_ii``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(
        str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.glob("*/*.yaml") if not p.name.startswith("_")
    )
    raise FileNotFoundError(f"no recipe at {name}: give a YAML file or one of {', '.join(names)}")


def recipe_settings(name: str | Path, _within: tuple[Path, ...] = ()) -> dict:
    """The settings of a recipe (:func:`recipe_path`), over those of the recipe its ``base`` key names.

    ``base`` is a file path relative to the recipe; bases may have bases. Shared settings live in one
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
    base = settings.pop("base", None)
    if base is None:
        return settings
    if not (path.parent / base).is_file():
        raise FileNotFoundError(f"recipe {path}: its base {base} does not exist")
    return {**recipe_settings(path.parent / base, (*_within, path)), **settings}


def load_recipe(name: str | Path, **overrides) -> CoRewardingConfig:
    """The config of a recipe (:func:`recipe_settings`), with ``overrides`` applied."""
    return CoRewardingConfig(**{**recipe_settings(name), **overrides})
