"""GRPO with every reward of the paper, on TRL's ``GRPOTrainer`` — the only module that touches TRL.

One training step is TRL's, with three hooks and two plug-ins::

    generation batch ──(1) sampler keeps a question and its rephrasing together──► prompts
      ──TRL samples G completions per prompt (transformers or vLLM)──► completions
      ──(2) _calculate_rewards: gather every process's completions, extract answers, and what the
            method needs (core.methods.METHODS): the EMA teacher's answers (plug-in, sampled through
            TRL's generation path), the policy's token statistics, the reward model's scores
            (plug-in); reward; log diagnostics; update Cooper's reward model on pairs of this batch
      ──TRL: advantages per group of G, clipped policy loss, KL to the reference, optimizer step
      ──(3) checkpoints hold the plug-ins too, and count only once complete (training.checkpoints)

Rewards are computed on the *gathered* batch because a group of G rollouts can be split across
processes: a vote taken per process would see part of the group. Every process computes the same
rewards from the same gathered answers, and TRL keeps its own slice. The prompt ids the teacher and the
token statistics need are TRL's own tokenization of the batch's prompts (``_tokenize_prompts``), passed
along explicitly.

**Co-rewarding-I and loss aggregation.** A pair is two prompt groups (the question, its rephrasing),
each normalised on its own by TRL's per-group advantage. Both views' completions enter one loss,
aggregated by ``loss_type`` over all their tokens (TRL's default ``dapo``: a token mean over the whole
batch). The reference implementation instead *sums* the two views' token-mean losses, so its gradient
is about twice ours. AdamW is invariant to a constant scale of the loss, so both take the same steps at
the same learning rate, except where gradient clipping acts (it clips the doubled gradient sooner).

**Cooper's reward model** (:mod:`corewarding.cooper.co_training`) is updated right after it has scored
the batch: the rewards of a batch always come from the reward model *before* its update on that batch.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list, gather_object, is_peft_model
from torch.utils.data import Sampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from transformers.utils import logging
from trl import GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp, unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler, create_model_from_path

from corewarding.cooper.annotate import read_labelled
from corewarding.cooper.co_training import CooperRewardModel, Pair, select_pairs, telling_samples
from corewarding.cooper.negatives import AssistantNegatives, NegativeRequest, NegativeWriter, make_assistant
from corewarding.cooper.reward_model import RewardModel, TemplateBounds, reward_model_text
from corewarding.cooper.supervised import evaluate_reward_model
from corewarding.core import metric_names
from corewarding.core.answers import extract_answer
from corewarding.core.equivalence import answers_match
from corewarding.core.methods import METHODS, RewardInputs, is_labelled, method_rewards
from corewarding.core.prompts import question_text
from corewarding.core.rewards import Rollouts, format_rewards
from corewarding.core.teacher_schedule import TeacherSchedule
from corewarding.core.voting import VotingConfig
from corewarding.data.records import Problem
from corewarding.inference.evaluate import evaluate as evaluate_problems
from corewarding.inference.generation import BackendError, TransformersBackend
from corewarding.inference.models import ModelLoadError
from corewarding.training import checkpoints
from corewarding.training.callbacks import (
    SAMPLES_FILE, CollapseCallback, FinalCheckpointCallback, MetricsFileCallback,
)
from corewarding.training.config import CoRewardingConfig
from corewarding.training.teacher import EMATeacher
from corewarding.training.token_statistics import rollout_statistic

__all__ = ["CoRewardingTrainer", "PairedRepeatSampler", "completion_text"]

logger = logging.get_logger(__name__)

#: ``cooper`` with an assistant: the cache of its negatives (:mod:`corewarding.cooper.negatives`).
NEGATIVES_FILE = "assistant_negatives.jsonl"


def completion_text(completion) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (assistant turns joined)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


class PairedRepeatSampler(Sampler[int]):
    """TRL's ``RepeatSampler`` over *pairs*: rows 2k (question) and 2k+1 (its rephrasing) stay together.

    Pairs are shuffled and batched exactly as ``RepeatSampler`` shuffles and batches prompts; each
    pair then yields its question G times and its rephrasing G times, so both views of a pair are
    in the same generation batch as two adjacent groups of G.

    >>> list(PairedRepeatSampler(num_pairs=2, num_generations=2, pairs_per_batch=1, shuffle=False))
    [0, 0, 1, 1, 2, 2, 3, 3]
    """

    def __init__(
        self,
        num_pairs: int,
        num_generations: int,
        pairs_per_batch: int,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
    ):
        self.num_generations = num_generations
        self.pairs = RepeatSampler(
            range(num_pairs), mini_repeat_count=1, batch_size=pairs_per_batch, repeat_count=repeat_count,
            shuffle=shuffle, seed=seed,
        )

    def __iter__(self):
        for pair in self.pairs:
            for row in (2 * pair, 2 * pair + 1):
                yield from [row] * self.num_generations

    def __len__(self) -> int:
        return len(self.pairs) * 2 * self.num_generations


class _GatheredReward:
    """Names a reward column for TRL's logs; the values come from ``_calculate_rewards``."""

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            f"the {self.__name__} reward is computed on the gathered batch by CoRewardingTrainer"
        )


class CoRewardingTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose rewards are one of the methods of :data:`~corewarding.core.methods.METHODS`.

    The training dataset has, besides ``prompt``, the columns ``question_id`` (shared by a question
    and its rephrasing), ``view`` (0 question, 1 rephrasing) and ``answer`` (the hidden reference
    answer or None; it feeds diagnostics, and the reward only for methods that need references). For
    ``co_rewarding_i`` rows 2k and 2k+1 are the two views of pair k
    (:func:`corewarding.training.run.training_dataset` builds such a dataset).

    Reward columns, as TRL logs them: the method's reward (``rewards/<method>/mean``) and a format
    reward (``rewards/format/mean``: 1 when an answer can be extracted), weighted by TRL's
    ``reward_weights`` (default ``[1.0, 0.0]``: the format reward is only watched).

    Plug-ins: ``self.teacher`` (:class:`~corewarding.training.teacher.EMATeacher`, methods that need a
    teacher) and ``self.cooper`` (:class:`~corewarding.cooper.co_training.CooperRewardModel`, methods with
    a reward model); both are saved in and restored from checkpoints.

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
    of every step to ``samples.jsonl`` (:meth:`_write_samples`).
    """

    def __init__(
        self,
        model,
        args: CoRewardingConfig,
        train_dataset,
        processing_class=None,
        heldout: Sequence[Problem] = (),
        **kwargs,
    ):
        self.method = METHODS[args.method]
        if self.method.needs_teacher and isinstance(model, str):
            model = create_model_from_path(model, **dict(args.model_init_kwargs or {}))
        if self.method.needs_teacher and is_peft_model(model):
            raise ValueError(
                f"{args.method} does not support PEFT models: the EMA teacher needs full weights"
            )
        # The teacher is a copy of the *initial* policy, taken before accelerate wraps the model. With a KL
        # term TRL's reference model is that copy already, and the teacher is the KL anchor (docs/method.md,
        # "Co-rewarding-II's teacher").
        teacher_copy = copy.deepcopy(model) if self.method.needs_teacher and args.beta == 0.0 else None
        if args.reward_weights is None:
            args.reward_weights = [1.0, 0.0]
        super().__init__(
            model=model,
            reward_funcs=[_GatheredReward(args.method), _GatheredReward("format")],
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        self.voting = VotingConfig(args.answer_matching, args.min_agreement_count, args.min_agreement_ratio)
        self.teacher = None
        if self.method.needs_teacher:
            module = self.ref_model if teacher_copy is None else self._prepare_frozen(teacher_copy)
            schedule = TeacherSchedule(
                args.teacher_rate_start, args.teacher_rate_end, args.teacher_update_interval
            )
            self.teacher = EMATeacher(module, schedule, self.accelerator)
        self.cooper, self.cooper_heldout = None, []
        if self.method.reward_model is not None:
            self.cooper, self.cooper_heldout = self._load_reward_model(args)
        self.negative_writer = None
        if args.negative_source != "rollouts" and self.accelerator.is_main_process:
            assistant = make_assistant(
                args.assistant_model, args.assistant_backend, base_url=args.assistant_base_url,
                api_key_env=args.assistant_api_key_env, timeout_s=args.assistant_timeout,
                max_new_tokens=args.assistant_max_new_tokens, seed=args.seed,
            )
            self.negative_writer = NegativeWriter(
                assistant, Path(args.output_dir) / NEGATIVES_FILE, args.assistant_calls_per_step
            )
        self.heldout = list(heldout)
        self.add_callback(MetricsFileCallback())
        self.add_callback(CollapseCallback(args.method, args.stop_on_collapse))
        self.add_callback(FinalCheckpointCallback())

    # ----------------------------------------------------------------------------------- setup

    def _prepare_frozen(self, model: torch.nn.Module) -> torch.nn.Module:
        """Place a frozen model as TRL places its reference model (DeepSpeed, FSDP or plain)."""
        model.eval()
        model.requires_grad_(False)
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(model, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(model, self.accelerator)
        return self.accelerator.prepare_model(model, evaluation_mode=True)

    def _load_reward_model(self, args: CoRewardingConfig) -> tuple[CooperRewardModel, list]:
        """Cooper's reward model (the same replica on every process) and its held-out labelled completions."""
        bounds = TemplateBounds(
            args.reward_model_question_chars,
            args.reward_model_reference_chars,
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
        cooper = CooperRewardModel(
            reward_model, args.reward_model_learning_rate, args.max_grad_norm,
            frozen=self.method.reward_model == "frozen", pointwise_weight=args.pointwise_weight,
        )
        heldout = []
        if args.reward_model_eval_data is not None:
            heldout = read_labelled(args.reward_model_eval_data, split="heldout")[
                : args.reward_model_eval_size
            ]
            if not heldout:
                raise ValueError(f"{args.reward_model_eval_data} has no held-out completions")
        return cooper, heldout

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

    # ----------------------------------------------------------------------------------- rewards

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        mode = "train" if self.model.training else "eval"
        method = self.method
        local = {
            "answers": [extract_answer(completion_text(c)) for c in completions],
            "question_ids": [str(x["question_id"]) for x in inputs],
            "views": [int(x.get("view", 0)) for x in inputs],
            "references": [x.get("answer") for x in inputs],
        }
        # Vote budget: each slot (one of a prompt's G rollouts here) adds this many samples that only vote.
        extra_per_slot = (self.args.vote_samples or self.num_generations) // self.num_generations - 1
        if method.needs_teacher or method.token_statistic or extra_per_slot:
            prompt_ids, _, _ = self._tokenize_prompts(prompts)
        if method.token_statistic:
            local["token_statistics"] = rollout_statistic(
                self.model, prompt_ids, completion_ids_list, method.token_statistic,
                pad_token_id=self.processing_class.pad_token_id, temperature=self.temperature,
                chunk=self.args.per_device_train_batch_size,
            )
        if method.needs_teacher:
            local["teacher_answers"] = self._teacher_answers(prompt_ids, mode, 1 + extra_per_slot)
        elif extra_per_slot:
            started = time.perf_counter()
            local["extra_answers"] = self._sampled_answers(self.model_wrapped, prompt_ids, extra_per_slot)
            self._metrics[mode]["votes/extra_seconds"].append(time.perf_counter() - started)
        if self.cooper is not None:
            local["questions"] = [question_text(x["prompt"]) for x in inputs]
            local["completions"] = [completion_text(c) for c in completions]
            local["reward_model_scores"] = self.cooper.reward_model.scores(
                self.cooper.reward_model.texts(local["questions"], local["references"], local["completions"])
            )
        batch = {key: gather_object(values) for key, values in local.items()}

        rollouts = Rollouts(batch["answers"], batch["question_ids"], batch["views"], batch["references"])

        def samples(key: str, per_slot: int) -> Rollouts | None:
            """Answers drawn ``per_slot`` times per rollout slot, with their slots' question ids and views."""
            if key not in batch:
                return None
            repeat = [x for x in batch["question_ids"] for _ in range(per_slot)]
            return Rollouts(batch[key], repeat, [v for v in batch["views"] for _ in range(per_slot)])

        labelled = None
        if self.args.labelled_fraction:
            labelled = [
                is_labelled(q, self.args.labelled_fraction, self.args.seed) for q in rollouts.question_ids
            ]
        inputs_ = RewardInputs(
            voting=self.voting,
            teacher=samples("teacher_answers", 1 + extra_per_slot),
            extra_votes=samples("extra_answers", extra_per_slot),
            labelled=labelled,
            token_statistics=batch.get("token_statistics"),
            reward_model_scores=batch.get("reward_model_scores"),
            no_answer_penalty=self.args.no_answer_penalty,
            reward_threshold=self.args.reward_threshold,
        )
        result = method_rewards(method.name, rollouts, inputs_)
        if self.cooper is not None and mode == "train":
            result.metrics.update(self._cooper_step(rollouts, batch, result.rewards))
        for name, value in result.metrics.items():
            self._metrics[mode][name].append(value)
        columns = torch.tensor([result.rewards, format_rewards(rollouts).rewards], dtype=torch.float32).T
        return columns.to(self.accelerator.device)

    def _cooper_step(self, rollouts: Rollouts, batch: dict, rewards: list[float]) -> dict[str, float]:
        """This batch's samples (``samples.jsonl``), held-out scores of the reward model that rewarded it,
        then (``cooper``) its update on pairs of the batch (:mod:`corewarding.cooper.co_training`)."""
        metrics = {}
        step = self.state.global_step + 1
        scores = batch["reward_model_scores"]
        accepted = answers_match(list(zip(rollouts.references, rollouts.answers)))
        if self.args.samples_per_step and self.accelerator.is_main_process:
            self._write_samples(step, rollouts, batch, accepted, rewards)
        if self.cooper_heldout and (step - 1) % self.args.reward_model_eval_steps == 0:
            heldout = evaluate_reward_model(self.cooper.reward_model, self.cooper_heldout)
            for name in ("accuracy", "balanced_accuracy", "precision", "recall", "auc", "group_auc"):
                if getattr(heldout, name) is not None:
                    metrics[f"rm/heldout_{name}"] = getattr(heldout, name)
        if self.cooper.frozen:
            return metrics
        groups = list(rollouts.groups().values())
        selection = select_pairs(groups, accepted, scores)
        texts = self.cooper.reward_model.texts(batch["questions"], rollouts.references, batch["completions"])
        pairs = [] if self.args.negative_source == "assistant" else selection.pairs
        if self.args.negative_source != "rollouts":
            requests = [
                NegativeRequest(
                    str(rollouts.question_ids[i]), batch["questions"][i], rollouts.references[i],
                    batch["completions"][i],
                )
                for i in selection.positives
            ]
            negatives = self._assistant_negatives(requests)
            assistant_pairs, bounds = [], self.cooper.reward_model.bounds
            for positive, request, negative in zip(selection.positives, requests, negatives.texts):
                if negative is not None:
                    texts.append(reward_model_text(request.question, request.reference, negative, bounds))
                    assistant_pairs.append(Pair(positive, len(texts) - 1))
            metrics.update(negatives.metrics())
            metrics.update({"rm/rollout_pairs": len(pairs), "rm/assistant_pairs": len(assistant_pairs)})
            pairs = pairs + assistant_pairs
        losses = self.cooper.update(texts, pairs, accepted)
        # A group has a pair exactly when its positive is in one: each group has one positive.
        metrics["rm/pairs"] = len(pairs)
        metrics["rm/skipped_groups"] = len(groups) - len({p.positive for p in pairs})
        if losses is not None and losses.pairwise is not None:
            metrics["rm/loss"] = losses.pairwise
        if losses is not None and losses.pointwise is not None:
            metrics["rm/pointwise_loss"] = losses.pointwise
        return metrics

    def _assistant_negatives(self, requests: list[NegativeRequest]) -> AssistantNegatives:
        """The assistant's negatives for ``requests``, the same on every process.

        The main process alone calls the assistant (one model, one cache file, one bill) and broadcasts
        what it got, so every process ends with the same pairs; the others wait for it. An assistant that
        cannot work at all (a wrong URL, key or model; a server that is down) stops every process.
        """
        written: AssistantNegatives | BackendError | None = None
        if self.accelerator.is_main_process:
            try:
                written = self.negative_writer.write(requests)
            except BackendError as error:
                written = error
            if isinstance(written, AssistantNegatives) and written.failures:
                cause = next(iter(written.failures))
                logger.warning("assistant: %d of %d calls failed: %s", written.failed, written.calls, cause)
        [written] = broadcast_object_list([written])
        if isinstance(written, BackendError):
            raise written
        return written

    def _write_samples(
        self, step: int, rollouts: Rollouts, batch: dict, accepted: list[bool], rewards: list[float]
    ) -> None:
        """Append ``samples_per_step`` rollouts of this step to ``samples.jsonl``: those that show best how
        the reward model errs (:func:`~corewarding.cooper.co_training.telling_samples`), each a line with
        ``step``, ``question_id``, ``question``, ``reference``, ``completion``, ``answer``, ``verdict``
        (the verifier accepts it), ``score`` (the reward model's s) and ``reward`` (what the policy got)."""
        scores = batch["reward_model_scores"]
        lines = [
            {
                "step": step, "question_id": str(rollouts.question_ids[i]), "question": batch["questions"][i],
                "reference": rollouts.references[i], "completion": batch["completions"][i],
                "answer": rollouts.answers[i], "verdict": accepted[i], "score": scores[i],
                "reward": rewards[i],
            }
            for i in telling_samples(accepted, scores, self.args.samples_per_step)
        ]
        path = Path(self.args.output_dir) / SAMPLES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as file:
            file.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)

    # ----------------------------------------------------------------------------------- teacher

    def _teacher_answers(self, prompt_ids: list[list[int]], mode: str, per_slot: int = 1) -> list[str | None]:
        """Update the teacher for this step, then let it sample ``per_slot`` completions per local rollout
        slot.

        The local slots hold each prompt as many times as the policy sampled it here, so the gathered
        teacher answers hold G samples per prompt, like the policy's (N with the vote budget).
        """
        if mode == "train":
            rate = self.teacher.update(self.model, self.state.global_step + 1, self.state.max_steps)
            if rate is not None:
                self._metrics[mode]["teacher/rate"].append(rate)
        return self._sampled_answers(self.teacher.module, prompt_ids, per_slot)

    def _sampled_answers(self, model, prompt_ids: list[list[int]], per_slot: int) -> list[str | None]:
        """``per_slot`` answers per prompt id from ``model``, sampled through TRL's generation path, in
        slot-major order (every sample of slot 0, then of slot 1, …)."""
        repeated = [ids for ids in prompt_ids for _ in range(per_slot)]
        with self._sampling_from(model):
            completion_ids, _ = self._generate_single_turn(repeated, None, {}, self.num_generations)
        texts = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        return [extract_answer(t) for t in texts]

    @contextmanager
    def _sampling_from(self, model):
        """Make TRL's generation path sample from ``model`` (the teacher) instead of the policy.

        With vLLM the engine's weights are swapped to the teacher's for the call and back to the
        policy's at the next policy generation (TRL re-syncs when ``_last_loaded_step`` differs).
        """
        policy_wrapped = self.model_wrapped
        self.model_wrapped = model
        if self.use_vllm:
            policy = self.vllm_generation.model
            self.vllm_generation.model = self.accelerator.unwrap_model(model)
            self._last_loaded_step = None
        try:
            yield
        finally:
            self.model_wrapped = policy_wrapped
            if self.use_vllm:
                self.vllm_generation.model = policy
                self._last_loaded_step = None

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
                system_prompt=self.args.system_prompt, pass_ks=[k] if k else None,
            )
        scores = gather_object([result.scores])
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
        metrics = {
            name.replace("eval_", f"{metric_key_prefix}_", 1): v
            for name, v in metrics.items()
            if v is not None
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if was_training:
            self.model.train()
        return metrics

    # ----------------------------------------------------------------------------------- checkpoints

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None):
        """``README.md`` of the run folder: what was trained from what, how, and how it did."""
        if not self.is_world_process_zero():
            return
        from corewarding import __version__

        args = self.args
        heldout = [r for r in self.state.log_history if metric_names.HELDOUT_GREEDY in r]
        scores = ""
        if heldout:
            first, last = heldout[0], heldout[-1]
            scores = (
                f"\nHeld-out greedy accuracy {100 * first[metric_names.HELDOUT_GREEDY]:.1f}% at step "
                f"{first.get('step', 0)} → {100 * last[metric_names.HELDOUT_GREEDY]:.1f}% at step "
                f"{last.get('step', '?')} "
                f"({len(self.heldout)} problems of {args.heldout_dataset}).\n"
            )
        card = f"""---
base_model: {args.model_name_or_path}
library_name: corewarding
tags: [corewarding, grpo, {args.method}]
---

# {Path(args.output_dir).name}

{args.model_name_or_path} trained with **{args.method}** (reward label from {self.method.label_from}) on
{args.dataset}, {self.state.global_step} steps, by corewarding {__version__} on TRL's GRPOTrainer.
{scores}
Settings: `config.yaml`; metrics per step: `metrics.jsonl`; compare runs:
`corewarding report {args.output_dir}`.
"""
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "README.md").write_text(card)

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint plus the plug-ins, made complete (:mod:`~corewarding.training.checkpoints`)
        before any older checkpoint is rotated out."""
        run_dir = Path(self._get_output_dir(trial=trial))
        folder = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            with checkpoints.saving(folder, self.state.global_step, self.args.method, self.args.should_save):
                super()._save_checkpoint(model, trial)
                if self.teacher is not None:
                    self.teacher.save(folder, write=self.args.should_save)
                if self.cooper is not None and not self.cooper.frozen and self.args.should_save:
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
        if self.cooper is not None and not self.cooper.frozen:
            self.cooper.load(checkpoint)
        if self.teacher is not None:
            self.teacher.load(checkpoint)
