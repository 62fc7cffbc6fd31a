"""GRPO with every reward of the paper, on TRL's ``GRPOTrainer``: the only subclass of a TRL class (the
config is TRL's ``GRPOConfig``; every TRL internal it reaches goes through
:mod:`corewarding.training.trl_internals`).

One training step is TRL's, with these hooks and two plug-ins::

    training_step: (II) the EMA teacher moves toward the policy           training/teacher.py
      generation batch ──(1) sampler keeps a question and its rephrasing together──► prompts
      ──TRL samples G completions per prompt (transformers or vLLM)──► completions
      ──(2) _calculate_rewards: this process's answers and what the method needs (core.methods.METHODS):
            the teacher's samples, the policy's token statistics, the reward model's scores
            → gathered over processes → the method's reward → Cooper learns from the batch (plug-in)
      ──TRL: advantages per group of G, clipped policy loss, KL to the reference, optimizer step
      ──(3) checkpoints hold the plug-ins too, and count only once complete (training.checkpoints)

Rewards are computed on the *gathered* batch because a group of G rollouts can be split across
processes: a vote taken per process would see part of the group. Every process computes the same
rewards from the same gathered answers, and TRL keeps its own slice. The prompt ids the teacher and the
token statistics need are TRL's own tokenization of the batch's prompts.

**Co-rewarding-I and loss aggregation.** A pair is two prompt groups (the question, its rephrasing),
each normalised on its own by TRL's per-group advantage. Both views' completions enter one loss,
aggregated by ``loss_type`` over all their tokens (TRL's default ``dapo``: a token mean over the whole
batch). The reference implementation instead *sums* the two views' token-mean losses, so its gradient
is about twice ours. AdamW is invariant to a constant scale of the loss, so both take the same steps at
the same learning rate, except where gradient clipping acts (it clips the doubled gradient sooner).

**Cooper's reward model** (:mod:`corewarding.cooper.plugin`) is updated right after it has scored
the batch: the rewards of a batch always come from the reward model *before* its update on that batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from accelerate.utils import gather_object, is_peft_model
from torch.utils.data import Sampler
from transformers import GenerationConfig
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from transformers.utils import logging
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from corewarding import checkpoints
from corewarding.cooper.annotate import read_labelled
from corewarding.cooper.co_training import CooperRewardModel
from corewarding.cooper.negatives import NegativeWriter, make_assistant
from corewarding.cooper.plugin import CooperBatch, CooperPlugin
from corewarding.cooper.reward_model import RewardModel, TemplateBounds
from corewarding.core import metric_names
from corewarding.core.answers import extract_answer, reference_answer
from corewarding.core.atomic_files import write_atomically
from corewarding.core.errors import UserError
from corewarding.core.methods import METHODS, Method, RewardInputs, is_labelled, method_rewards
from corewarding.core.prompts import question_text
from corewarding.core.rewards import Rollouts, format_rewards
from corewarding.core.equivalence import answers_match
from corewarding.core.voting import VotingConfig, majority_votes
from corewarding.data.records import Problem
from corewarding.inference.evaluate import evaluate as evaluate_problems
from corewarding.inference.generation import TransformersBackend
from corewarding.inference.model_names import model_location
from corewarding.inference.models import ModelLoadError, load_model
from corewarding.training import trl_internals
from corewarding.training.adapter_teacher import AdapterTeacher
from corewarding.training.callbacks import (
    CollapseCallback,
    FinalCheckpointCallback,
    MetricsFileCallback,
    StopOnSignalCallback,
    TaskFitCallback,
)
from corewarding.training.config import CoRewardingConfig, lora_config
from corewarding.training.model_card import model_card
from corewarding.training.pair_sampler import PairedRepeatSampler
from corewarding.training.precision import warn_if_low_precision
from corewarding.training.teacher import EMATeacher, initial_copy, local_parameters
from corewarding.training.token_statistics import rollout_statistic

__all__ = [
    "CoRewardingTrainer", "completion_text", "generate_completion_ids", "own_rewards_note", "TEACHER_PROBE_FILE",
]

#: Co-rewarding-II's teacher probe, one JSON line per step (``teacher_probe_problems``).
TEACHER_PROBE_FILE = "teacher_probe.jsonl"

logger = logging.get_logger(__name__)

#: ``cooper`` with an assistant: the cache of its negatives (:mod:`corewarding.cooper.negatives`).
NEGATIVES_FILE = "assistant_negatives.jsonl"


def completion_text(completion) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (assistant turns joined)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


@torch.no_grad()
def generate_completion_ids(
    model, prompt_ids: list[list[int]], generation_config: GenerationConfig, pad_token_id: int,
    eos_token_ids: list[int],
) -> list[list[int]]:
    """One sampled completion per prompt (left-padded into one batch), cut after its first end-of-sequence
    token — the layout of TRL's own completions."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.tensor([[pad_token_id] * (width - len(ids)) + ids for ids in prompt_ids], device=device)
    lengths = torch.tensor([len(ids) for ids in prompt_ids], device=device)
    attention_mask = (torch.arange(width, device=device) >= width - lengths[:, None]).long()
    output = model.generate(
        input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config
    )
    completions = []
    for row in output[:, width:].tolist():
        end = next((i for i, token in enumerate(row) if token in eos_token_ids), len(row) - 1)
        completions.append(row[: end + 1])
    return completions


def heldout_metrics(scores: list, k: int, prefix: str = "eval") -> dict[str, float]:
    """Held-out accuracy over every process's share (:class:`~corewarding.inference.evaluate.Scores`),
    each figure the question-weighted mean of the shares, named ``<prefix>_…``."""
    total = sum(s.num_questions for s in scores)

    def mean(value) -> float | None:
        values = [(value(s), s.num_questions) for s in scores if value(s) is not None]
        return sum(v * n for v, n in values) / total if values else None

    metrics = {
        metric_names.HELDOUT_GREEDY: mean(lambda s: s.greedy_accuracy),
        metric_names.HELDOUT_SAMPLED: mean(lambda s: s.avg_at_k),
        metric_names.HELDOUT_MAJORITY: mean(lambda s: s.maj_at_k),
        metric_names.HELDOUT_PASS: mean(lambda s: s.pass_at_k.get(k)),
        metric_names.HELDOUT_NO_ANSWER: mean(lambda s: s.no_answer_rate),
    }
    return {name.replace("eval_", f"{prefix}_", 1): v for name, v in metrics.items() if v is not None}


class GatheredReward:
    """A reward column TRL calls like any reward function, whose values were computed on the gathered batch:
    :meth:`CoRewardingTrainer._calculate_rewards` hands it this process's share just before TRL calls it."""

    def __init__(self, name: str):
        self.__name__ = name
        self.share: list[float] | None = None

    def __call__(self, prompts, **kwargs) -> list[float]:
        values, self.share = self.share, None
        if values is None or len(values) != len(prompts):
            raise RuntimeError(f"{self.__name__}: computed by CoRewardingTrainer._calculate_rewards only")
        return values


def question_id(row: dict) -> str:
    """A row's question id: its ``question_id`` column, else a digest of its prompt (a TRL dataset)."""
    if "question_id" in row:
        return str(row["question_id"])
    return hashlib.sha1(json.dumps(row["prompt"], sort_keys=True).encode()).hexdigest()[:16]


def _model_by_name(name: str, processing_class):
    """A model name as TRL takes it (a folder, a hub id: TRL loads it, with ``model_init_kwargs``), with
    the names only this project knows resolved: a shipped tiny model's name to its folder, a GGUF file
    loaded (:func:`~corewarding.inference.models.load_model`) with its tokenizer."""
    if not name.lower().endswith(".gguf"):
        return str(model_location(name)), processing_class
    model, tokenizer = load_model(name, device="cpu", dtype=torch.float32)
    return model, processing_class if processing_class is not None else tokenizer


def own_rewards_note(method: str, count: int) -> str:
    """The line that says what a run with the user's own ``reward_funcs`` trains on: the method's
    label-free reward and theirs, summed (a TRL user swapping in this class may expect theirs alone)."""
    teacher = " (an EMA teacher: one more copy of the model)" if METHODS[method].needs_teacher else ""
    return (
        f"CoRewardingTrainer trains on {method}'s label-free reward{teacher} plus your {count} reward "
        f"function{'s' if count > 1 else ''}, summed; choose the method with "
        "args=CoRewardingConfig(method=…), or weigh them with reward_weights (the format reward's 0 second)"
    )


def check_columns(columns: Sequence[str] | None, method: Method) -> None:
    """Refuse, in one line, a training set without the columns ``method`` needs (None: not known yet)."""
    if columns is None:
        return
    needed = [("prompt",)]
    if method.paired_views:
        needed += [("question_id",), ("view",)]
    if method.teacher_on_rephrasing:
        needed.append(("teacher_prompt",))
    if method.needs_references:
        needed.append(("answer", "solution"))
    for names in needed:
        if not set(names) & set(columns):
            raise UserError(
                f"{method.name} needs the column {' or '.join(names)} in the training set (it has "
                f"{', '.join(columns)}); corewarding.training.training_dataset builds one from problems"
            )


class CoRewardingTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose rewards are one of the methods of :data:`~corewarding.core.methods.METHODS`.

    A drop-in for TRL's trainer: any dataset TRL's ``GRPOTrainer`` takes trains as it is — a ``prompt``
    column (text or conversation) and, for methods that read references, an ``answer`` (or ``solution``)
    column; a rollout's question is identified by a digest of its prompt. Besides these, the columns
    ``question_id`` (shared by a question and its rephrasing), ``view`` (0 question, 1 rephrasing) and
    ``teacher_prompt`` carry what the methods with two views need: for ``co_rewarding_i`` rows 2k and 2k+1
    are the two views of pair k (:func:`corewarding.training.run.training_dataset` builds such a dataset;
    a training set without what the method needs is refused at construction, in one line).

    Reward columns, as TRL logs them: the method's reward (``rewards/<method>/mean``), a format reward
    (``rewards/format/mean``: 1 when an answer can be extracted) and TRL's own ``reward_funcs`` of the
    user, if any (callables or reward-model ids, with TRL's semantics), summed under TRL's
    ``reward_weights`` (default ``[1, 0, 1, …]``: the format reward is only watched).

    LoRA: with ``use_peft`` (a ``LoraConfig`` from the ``lora_*`` settings) or TRL's own ``peft_config``
    argument every method trains an adapter over the frozen model, as TRL does.

    Plug-ins: ``self.teacher`` (:class:`~corewarding.training.teacher.EMATeacher`, or with LoRA its
    :class:`~corewarding.training.adapter_teacher.AdapterTeacher`; methods that need a
    teacher) and ``self.cooper`` (:class:`~corewarding.cooper.plugin.CooperPlugin`, methods with a reward
    model); both are saved in and restored from checkpoints.

    Cooper's metrics: ``rm/rule_agreement``, ``rm/false_positive_rate`` and ``rm/group_auc`` (every
    batch, see :func:`~corewarding.core.rewards.cooper_rewards`); ``rm/heldout_accuracy``,
    ``_balanced_accuracy``, ``_precision``, ``_recall``, ``_auc`` and ``_group_auc`` of the reward model
    that rewards the step, on the held-out split of ``reward_model_eval_data`` (every
    ``reward_model_eval_steps`` steps); ``cooper`` only: ``rm/pairs`` (pairs of the update),
    ``rm/skipped_groups`` (groups without a pair), ``rm/loss`` (the Bradley–Terry loss before the
    update; absent without pairs) and ``rm/pointwise_loss`` (the cross-entropy term, with
    ``pointwise_weight``); with assistant negatives also ``rm/rollout_pairs``, ``rm/assistant_pairs``
    and the counts of :class:`~corewarding.cooper.negatives.AssistantNegatives` (``rm/assistant_calls``,
    ``_cached``, ``_failed``, ``_invalid``, ``_over_budget``). Both write ``samples_per_step`` rollouts
    of every step to ``samples.jsonl``.
    """

    def __init__(
        self,
        model,
        reward_funcs=None,
        args: CoRewardingConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        *,
        heldout: Sequence[Problem] = (),
        **kwargs,
    ):
        """TRL's ``GRPOTrainer(model, reward_funcs, args, train_dataset, eval_dataset, processing_class,
        …)`` in its order, and like it: ``model`` a model or a name — any name
        :func:`~corewarding.inference.models.load_model` takes, the shipped ``tiny`` models included;
        ``args`` a :class:`CoRewardingConfig` (None: its defaults, the method ``co_rewarding_ii``).
        ``reward_funcs`` are added to the method's label-free reward, never in its place; the trainer says
        so in one line. ``heldout``: problems with answers for held-out accuracy."""
        if args is None:
            args = CoRewardingConfig()
        elif not isinstance(args, CoRewardingConfig):
            raise UserError(
                f"args is a {type(args).__name__}; CoRewardingTrainer takes a CoRewardingConfig (TRL's "
                "GRPOConfig and the method's settings): CoRewardingConfig(method=…, <your settings>)"
            )
        if isinstance(model, str | Path):
            model, processing_class = _model_by_name(str(model), processing_class)
        self.method = METHODS[args.method]
        check_columns(getattr(train_dataset, "column_names", None), self.method)
        if self.method.needs_teacher and isinstance(model, str):
            model = trl_internals.create_model_from_path(model, **dict(args.model_init_kwargs or {}))
        # A model left as a name (TRL loads it) has no adapter yet; a PeftModel given already has its own.
        given_adapter = not isinstance(model, str) and is_peft_model(model)
        if args.use_peft and kwargs.get("peft_config") is None and not given_adapter:
            kwargs["peft_config"] = lora_config(args)
        adapters = given_adapter or kwargs.get("peft_config") is not None
        if self.method.needs_teacher and adapters and args.use_vllm:
            raise UserError(
                f"{args.method} with LoRA samples its teacher adapter with transformers, not vLLM: set "
                "use_vllm false (docs/launch_modes.md)"
            )
        # The teacher is a copy of the *initial* policy, taken before accelerate wraps the model. With a KL
        # term TRL's reference model is that copy already, and the teacher is the KL anchor (docs/method.md,
        # "Co-rewarding-II's teacher"). With LoRA it is a second adapter, added once TRL made the PeftModel.
        full_copy = self.method.needs_teacher and args.beta == 0.0 and not adapters
        teacher_copy = initial_copy(model) if full_copy else None
        self.method_reward, self.format_reward = GatheredReward(args.method), GatheredReward("format")
        extra = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs] if reward_funcs else []
        if extra:
            logger.warning(own_rewards_note(args.method, len(extra)))
        super().__init__(
            model=model,
            reward_funcs=[self.method_reward, self.format_reward, *extra],
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        if args.reward_weights is None:  # the format reward is only watched; a user's rewards count fully
            trl_internals.set_reward_weights(self, [1.0, 0.0] + [1.0] * len(extra))
        warn_if_low_precision(self.model, self.is_deepspeed_enabled)
        self.voting = VotingConfig(args.answer_matching, args.min_agreement_count, args.min_agreement_ratio)
        self.teacher = self._make_teacher(teacher_copy) if self.method.needs_teacher else None
        self.cooper = self._make_cooper(args) if self.method.reward_model is not None else None
        self.heldout = list(heldout)
        self.add_callback(MetricsFileCallback())
        self.add_callback(CollapseCallback(args.method, args.stop_on_collapse))
        self.add_callback(FinalCheckpointCallback())
        self.add_callback(TaskFitCallback())
        self.stop_on_signal = StopOnSignalCallback(self._largest_over_processes)
        self.add_callback(self.stop_on_signal)

    # ----------------------------------------------------------------------------------- setup

    def _largest_over_processes(self, value: int) -> int:
        """The largest of every process's ``value`` (an all-reduce; in one process, ``value``)."""
        if self.accelerator.num_processes == 1:
            return value
        largest = torch.tensor([value], device=self.accelerator.device)
        torch.distributed.all_reduce(largest, op=torch.distributed.ReduceOp.MAX)
        return int(largest.item())

    def _make_teacher(self, teacher_copy: torch.nn.Module | None) -> EMATeacher:
        """The EMA teacher: with LoRA a second adapter (:class:`~corewarding.training.adapter_teacher.
        AdapterTeacher`); else TRL's reference model when there is a KL term, or a frozen copy of the initial
        policy placed as TRL places its reference model (DeepSpeed, FSDP or plain)."""
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if self.is_fsdp_enabled and plugin.fsdp_version == 1:
            # FSDP1 flattens the teacher's parameters into per-process flat views: its samples would need
            # summon_full_params and its checkpoint a gather of those views. FSDP2 shards each tensor.
            raise UserError(
                f"{self.args.method} does not run under FSDP1 (its EMA teacher needs per-tensor shards): use "
                "FSDP2 (configs/paper/accelerate/fsdp2.yaml, fsdp_version: 2) or DeepSpeed"
            )
        schedule = self.args.teacher_schedule()
        if is_peft_model(self.model):
            return AdapterTeacher(self.model, schedule, self.accelerator)
        initial = None
        if teacher_copy is None:
            module = self.ref_model
        else:
            teacher_copy.eval()
            teacher_copy.requires_grad_(False)
            if self.is_deepspeed_enabled:
                # DeepSpeed casts the copy to the run's dtype: the float32 master starts from the weights
                # before that rounding.
                initial = [t.detach().float().clone() for t in local_parameters(teacher_copy)]
                module = trl_internals.prepare_deepspeed(teacher_copy, self.accelerator)
            elif self.is_fsdp_enabled:
                module = trl_internals.prepare_fsdp(teacher_copy, self.accelerator)
            else:
                module = self.accelerator.prepare_model(teacher_copy, evaluation_mode=True)
        return EMATeacher(module, schedule, self.accelerator, initial)

    def _make_cooper(self, args: CoRewardingConfig) -> CooperPlugin:
        """Cooper's reward model (the same replica on every process), its held-out labelled completions and,
        with assistant negatives, the assistant (on the main process)."""
        bounds = TemplateBounds(
            args.reward_model_question_chars, args.reward_model_reference_chars,
            args.reward_model_completion_chars,
        )
        try:
            reward_model = RewardModel.load(
                args.reward_model_path, bounds=bounds, batch_size=args.reward_model_batch_size,
                device=self.accelerator.device, seed=args.seed,
            )
        except ModelLoadError as error:
            raise ModelLoadError(
                f"{error} (reward_model_path: make a reward model with `corewarding rm train`, or use tiny)"
            ) from None
        model = CooperRewardModel(
            reward_model, args.reward_model_learning_rate, args.max_grad_norm,
            frozen=self.method.reward_model == "frozen", pointwise_weight=args.pointwise_weight,
        )
        heldout = []
        if args.reward_model_eval_data is not None:
            heldout = read_labelled(args.reward_model_eval_data, split="heldout")
            heldout = heldout[: args.reward_model_eval_size]
            if not heldout:
                raise UserError(f"{args.reward_model_eval_data} has no held-out completions")
        writer = None
        if args.negative_source != "rollouts" and self.accelerator.is_main_process:
            assistant = make_assistant(
                args.assistant_model, args.assistant_backend, base_url=args.assistant_base_url,
                api_key_env=args.assistant_api_key_env, timeout_s=args.assistant_timeout,
                max_new_tokens=args.assistant_max_new_tokens, seed=args.seed,
            )
            writer = NegativeWriter(
                assistant, Path(args.output_dir) / NEGATIVES_FILE, args.assistant_calls_per_step
            )
        return CooperPlugin(
            model, heldout, args.negative_source, writer, self.accelerator, args.output_dir,
            args.samples_per_step, args.reward_model_eval_steps,
        )

    def _get_train_sampler(self, dataset=None) -> Sampler:
        if not self.method.paired_views:
            return super()._get_train_sampler(dataset)
        dataset = self.train_dataset if dataset is None else dataset
        return PairedRepeatSampler(
            num_pairs=len(dataset) // 2,
            num_generations=self.num_generations,
            pairs_per_batch=self.args.generation_batch_size // self.num_generations // 2,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )

    # ----------------------------------------------------------------------------------- one step

    def training_step(self, model, inputs, num_items_in_batch):
        """TRL's step (generate, reward, loss, backward), after the EMA teacher's update for this step: the
        teacher then samples this step's labels and, with a KL term, anchors the loss as updated."""
        if self.teacher is not None:
            rate = self.teacher.update(self.model, self.state.global_step + 1, self.state.max_steps)
            if rate is not None:
                trl_internals.log_metric(self, "teacher/rate", rate)
                if self.args.teacher_probe_problems:
                    self._probe_teacher(self.state.global_step + 1)
        return super().training_step(model, inputs, num_items_in_batch)

    def _probe_teacher(self, step: int) -> None:
        """The teacher's majority over G samples of each probe question (the first
        ``teacher_probe_problems`` training rows, the same every step): ``teacher_probe/label_accuracy``
        and one line of ``teacher_probe.jsonl`` per step (question ids, references, majorities), from which
        a study can classify each label (e.g. benchmarks/teacher_drift.py: right, premature, other)."""
        probe_size = min(self.args.teacher_probe_problems, len(self.train_dataset))
        rows = self.train_dataset.select(range(probe_size))
        prompt_ids = trl_internals.prompt_token_ids(self, list(rows["prompt"]))
        answers = self._sampled_answers(self.teacher.module, prompt_ids, self.num_generations)
        groups = [answers[i : i + self.num_generations] for i in range(0, len(answers), self.num_generations)]
        labels = [vote.label for vote in majority_votes(groups, self.voting)]
        references = [x["answer"] if "answer" in x else reference_answer(x.get("solution")) for x in rows]
        right = answers_match(list(zip(references, labels)), mode=self.voting.matching)
        trl_internals.log_metric(self, "teacher_probe/label_accuracy", sum(right) / len(right))
        if self.is_world_process_zero():
            record = {"step": step, "question_ids": [question_id(x) for x in rows], "references": references,
                      "labels": labels}
            with open(Path(self.args.output_dir) / TEACHER_PROBE_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """The rewards of the whole batch: this process's inputs → gathered → the method's reward → Cooper.

        Layout (G = num_generations; Co-rewarding-I / -III: pair k is the prompts 2k and 2k + 1)::

            gathered slot:  [ q1 × G | q1' × G | q2 × G | q2' × G | … ]   every process's rollouts, in order
            teacher/votes:  per_slot samples per slot, slot-major: [s0_1 … s0_n | s1_1 … s1_n | …]

        Each process hands its share of the method's and the format reward to their columns, and TRL's own
        reward computation gathers them with the user's ``reward_funcs`` (weighted by ``reward_weights``).
        """
        local = self._local_reward_inputs(inputs, prompts, completions, completion_ids_list)
        batch = {key: gather_object(values) for key, values in local.items()}
        rollouts = Rollouts(
            batch["answers"], batch["question_ids"], batch["views"], batch["references"], batch["questions"]
        )
        result = method_rewards(self.method.name, rollouts, self._reward_inputs(batch))
        if self.cooper is not None:
            cooper_batch = CooperBatch(
                rollouts, batch["questions"], batch["completions"], batch["reward_model_scores"]
            )
            step = self.state.global_step + 1
            result.metrics.update(self.cooper.after_rewards(step, cooper_batch, result.rewards))
        for name, value in result.metrics.items():
            trl_internals.log_metric(self, name, value)
        rank, size = self.accelerator.process_index, len(prompts)  # TRL's layout: equal shares, in rank order
        mine = slice(rank * size, (rank + 1) * size)
        self.method_reward.share = result.rewards[mine]
        self.format_reward.share = format_rewards(rollouts).rewards[mine]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    @property
    def _votes_per_slot(self) -> int:
        """Vote budget: samples each rollout slot adds that only vote (N = vote_samples over G)."""
        return (self.args.vote_samples or self.num_generations) // self.num_generations - 1

    def _local_reward_inputs(self, inputs, prompts, completions, completion_ids_list) -> dict[str, list]:
        """What the method needs of this process's rollouts, each a list with one entry per rollout (per
        sample for the teacher's and the extra votes, see :meth:`_calculate_rewards`)."""
        method = self.method
        texts = [completion_text(c) for c in completions]
        local = {
            "answers": [extract_answer(t, self.args.answer_extraction) for t in texts],
            "question_ids": [question_id(x) for x in inputs],
            "views": [int(x.get("view", 0)) for x in inputs],
            "references": [
                x["answer"] if "answer" in x else reference_answer(x.get("solution")) for x in inputs
            ],
            "questions": [question_text(x["prompt"]) for x in inputs],
        }
        extra = self._votes_per_slot
        if method.needs_teacher or method.token_statistic or extra:
            prompt_ids = trl_internals.prompt_token_ids(self, prompts)
        if method.token_statistic:
            local["token_statistics"] = rollout_statistic(
                self.model, prompt_ids, completion_ids_list, method.token_statistic,
                pad_token_id=self.processing_class.pad_token_id, temperature=self.temperature,
                chunk=self.args.per_device_train_batch_size,
            )
        if method.needs_teacher:
            teacher_ids = prompt_ids
            if method.teacher_on_rephrasing:
                teacher_ids = trl_internals.prompt_token_ids(self, [x["teacher_prompt"] for x in inputs])
            with self.teacher.sampling(self.model_wrapped) as teacher:
                local["teacher_answers"] = self._sampled_answers(teacher, teacher_ids, 1 + extra)
        elif extra:
            started = time.perf_counter()
            local["extra_answers"] = self._sampled_answers(self.model_wrapped, prompt_ids, extra)
            trl_internals.log_metric(self, "votes/extra_seconds", time.perf_counter() - started)
        if self.cooper is not None:
            local["completions"] = texts
            local["reward_model_scores"] = self.cooper.scores(local["questions"], local["references"], texts)
        return local

    def _reward_inputs(self, batch: dict[str, list]) -> RewardInputs:
        """:class:`~corewarding.core.methods.RewardInputs` of the gathered batch."""

        def samples(key: str, per_slot: int) -> Rollouts | None:
            """Answers drawn ``per_slot`` times per rollout slot, with their slots' question ids and views."""
            if key not in batch:
                return None
            repeat = [x for x in batch["question_ids"] for _ in range(per_slot)]
            return Rollouts(batch[key], repeat, [v for v in batch["views"] for _ in range(per_slot)])

        labelled = None
        if self.args.labelled_fraction:
            fraction, seed = self.args.labelled_fraction, self.args.seed
            labelled = [is_labelled(q, fraction, seed) for q in batch["question_ids"]]
        extra = self._votes_per_slot
        return RewardInputs(
            voting=self.voting,
            teacher=samples("teacher_answers", 1 + extra),
            extra_votes=samples("extra_answers", extra),
            labelled=labelled,
            token_statistics=batch.get("token_statistics"),
            reward_model_scores=batch.get("reward_model_scores"),
            no_answer_penalty=self.args.no_answer_penalty,
            reward_threshold=self.args.reward_threshold,
        )

    # ----------------------------------------------------------------------------------- sampling

    def _sampled_answers(self, model, prompt_ids: list[list[int]], per_slot: int) -> list[str | None]:
        """``per_slot`` answers per prompt id from ``model``, in slot-major order (every sample of slot 0,
        then of slot 1, …)."""
        repeated = [ids for ids in prompt_ids for _ in range(per_slot)]
        texts = self.processing_class.batch_decode(self._sample(model, repeated), skip_special_tokens=True)
        return [extract_answer(t, self.args.answer_extraction) for t in texts]

    def _sample(self, model, prompt_ids: list[list[int]]) -> list[list[int]]:
        """One completion (token ids, up to and including the end of sequence) per prompt, sampled from
        ``model`` — the teacher or the policy — with the policy's sampling settings.

        With vLLM the engine serves ``model``'s weights for the call and the policy's again after it
        (two weight syncs when ``model`` is the teacher); else ``model`` generates with TRL's generation
        config.
        """
        if self.use_vllm:
            if self.accelerator.unwrap_model(model) is self.accelerator.unwrap_model(self.model):
                return trl_internals.vllm_sample(self, prompt_ids)
            with trl_internals.vllm_serving(self, model):
                return trl_internals.vllm_sample(self, prompt_ids)
        with unwrap_model_for_generation(
            model, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation
        ) as unwrapped:
            return generate_completion_ids(
                unwrapped, prompt_ids, self.generation_config, self.processing_class.pad_token_id,
                trl_internals.eos_token_ids(self),
            )

    # ----------------------------------------------------------------------------------- held-out accuracy

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Held-out accuracy of the policy (replaces TRL's reward-on-eval-prompts evaluation).

        Greedy pass@1, and with ``heldout_samples`` = k > 0 the sampled accuracy (avg@k: the paper's
        pass@1), pass@k and maj@k at ``heldout_temperature``, on the ``heldout`` problems; each process
        evaluates its share. Runs where TRL would evaluate (``eval_strategy``, ``eval_steps``,
        ``eval_on_start``), so ``metric_for_best_model: eval_greedy_accuracy`` keeps the best checkpoint.
        """
        if not self.heldout:
            return {}
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        shard = self.heldout[rank::world]
        was_training = self.model.training
        self.model.eval()
        k = self.args.heldout_samples
        with unwrap_model_for_generation(
            self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation
        ) as model:
            backend = TransformersBackend(
                model, self.processing_class, batch_size=self.args.per_device_eval_batch_size * 8,
                seed=self.args.seed,
            )
            result = evaluate_problems(
                shard, backend, k=k, temperature=self.args.heldout_temperature, top_p=self.top_p,
                max_new_tokens=self.max_completion_length, matching=self.args.answer_matching,
                system_prompt=self.args.system_prompt, answer_extraction=self.args.answer_extraction,
                pass_ks=[k] if k else None,
            )
        metrics = heldout_metrics(gather_object([result.scores]), k, metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if was_training:
            self.model.train()
        return metrics

    # ----------------------------------------------------------------------------------- checkpoints

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None):
        """``README.md`` of the run folder (:func:`~corewarding.training.model_card.model_card`)."""
        if self.is_world_process_zero():
            Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
            card = model_card(self.args, self.method.label_from, self.state, len(self.heldout))
            write_atomically(Path(self.args.output_dir) / "README.md", card)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """transformers' ``save_model``; under FSDP with sharded state dicts, where transformers writes no
        weights outside checkpoints, the final model is gathered (a collective: every process calls it) and
        written whole by the main process, so ``corewarding eval RUN`` and ``from_pretrained(RUN)`` read
        it."""
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if _internal_call or not self.is_fsdp_enabled or "SHARDED" not in str(plugin.state_dict_type):
            return super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        state_dict = self.accelerator.get_state_dict(self.model)
        if self.args.should_save:
            self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, state_dict=state_dict)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint plus the plug-ins, made complete (:mod:`~corewarding.checkpoints`)
        before any older checkpoint is rotated out."""
        run_dir = Path(trl_internals.output_dir(self, trial))
        folder = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            with checkpoints.saving(folder, self.state.global_step, self.args.method, self.args.should_save):
                super()._save_checkpoint(model, trial)
                if self.teacher is not None:
                    self.teacher.save(folder, write=self.args.should_save)
                if self.cooper is not None and self.args.should_save:
                    self.cooper.save(folder)
                self.accelerator.wait_for_everyone()  # every process's RNG state is on disk
        finally:
            self.args.save_total_limit = limit
        if self.args.should_save:
            checkpoints.remove_incomplete(run_dir)
            rotate_checkpoints(run_dir, limit, self.state.best_model_checkpoint, use_mtime=True)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        if self.cooper is not None:
            self.cooper.load(checkpoint)
        if self.teacher is not None:
            self.teacher.load(checkpoint)
