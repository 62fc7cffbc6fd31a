"""GRPO with every reward of the paper, on TRL's ``GRPOTrainer`` — the only module that touches TRL.

One training step (TRL's flow, with the three places this class changes)::

    generation batch ──(1) sampler keeps a question and its rephrasing together──► prompts
      ──TRL samples G completions per prompt (transformers or vLLM)──► completions
      ──(2) _calculate_rewards: gather every process's completions, extract answers, (II) update the
            EMA teacher and let it sample G answers per prompt, (confidence methods) score the policy's
            tokens, (Cooper) score them with the reward model; vote per group; reward; log
            diagnostics; (Cooper) update the reward model on pairs of this batch──► gathered rewards
      ──TRL: advantages per group of G, clipped policy loss, KL to the reference, optimizer step
      ──(3) checkpoints also hold the teacher (Cooper: the reward model); resuming restores it

Rewards are computed on the *gathered* batch because a group of G rollouts can be split across
processes: a vote taken per process would see part of the group. Every process computes the same
rewards from the same gathered answers, and TRL keeps its own slice.

**Co-rewarding-I and loss aggregation.** A pair is two prompt groups (the question, its rephrasing),
each normalised on its own by TRL's per-group advantage. Both views' completions enter one loss,
aggregated by ``loss_type`` over all their tokens (TRL's default ``dapo``: a token mean over the whole
batch). The reference implementation instead *sums* the two views' token-mean losses, so its gradient
is about twice ours for the same learning rate: double ``learning_rate`` to match it.

**Cooper's reward model** (:mod:`corewarding.cooper`) is updated inside ``_calculate_rewards``, right
after it has scored the batch: the rewards of a batch always come from the reward model *before* its
update on that batch. That is one reward-model step per generation batch (per policy step with TRL's
defaults, ``num_iterations=1``). Each process holds a replica; they stay identical (see that module).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate.utils import gather_object, is_peft_model
from safetensors.torch import load_file, save_file
from torch.utils.data import Sampler
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging
from trl import GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp, unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler, create_model_from_path

from corewarding.annotate import read_labelled
from corewarding.answers import extract_answer
from corewarding.collapse import CollapseMonitor
from corewarding.config import CoRewardingConfig
from corewarding.cooper import CooperRewardModel, select_pairs
from corewarding.data.records import Problem
from corewarding.equivalence import answers_match
from corewarding.evaluate import evaluate as evaluate_problems
from corewarding.generation import TransformersBackend
from corewarding.models import ModelLoadError
from corewarding.reward_model import RewardModel, TemplateBounds
from corewarding.reward_model_training import evaluate_reward_model
from corewarding.rewards import CONFIDENCE_METHODS, COOPER_METHODS, Rollouts, format_rewards, method_rewards
from corewarding.teacher import TeacherSchedule, ema_update_
from corewarding.token_statistics import entropy, self_certainty
from corewarding.voting import VotingConfig

__all__ = [
    "CoRewardingTrainer", "PairedRepeatSampler", "MetricsFileCallback", "CollapseCallback", "completion_text",
    "question_text",
]

logger = logging.get_logger(__name__)

TEACHER_WEIGHTS = "teacher.safetensors"
TEACHER_STATE = "teacher_state.json"


def question_text(prompt) -> str:
    """The question of a TRL prompt: a string, or chat messages (the last user turn)."""
    if isinstance(prompt, str):
        return prompt
    return next(m["content"] for m in reversed(prompt) if m.get("role") == "user")


def completion_text(completion) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (assistant turns joined)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict safetensors can write: tensors sharing storage (tied embeddings) are copied."""
    seen, out = set(), {}
    for key, tensor in state.items():
        storage = tensor.untyped_storage().data_ptr()
        out[key] = tensor.clone() if storage in seen else tensor.contiguous()
        seen.add(storage)
    return out


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
        raise RuntimeError(f"the {self.__name__} reward is computed on the gathered batch by CoRewardingTrainer")


class MetricsFileCallback(TrainerCallback):
    """Appends every log record, with its step, as one JSON line to ``<output_dir>/metrics.jsonl``."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            path = Path(args.output_dir) / "metrics.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class CollapseCallback(TrainerCallback):
    """Watches every log record with :class:`~corewarding.collapse.CollapseMonitor`.

    At the first collapse it warns, writes ``<output_dir>/collapse.json`` (step and signals) and,
    with ``stop_on_collapse``, stops training (the best checkpoint by held-out accuracy is kept by
    ``save_strategy: best``, which ``stop_on_collapse`` turns on).
    """

    def __init__(self, stop_on_collapse: bool = False):
        self.monitor = CollapseMonitor()
        self.stop_on_collapse = stop_on_collapse

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or self.monitor.report.collapsed:
            return
        signals = self.monitor.update({"step": state.global_step, **logs})
        if not signals:
            return
        logger.warning("collapse at step %d: %s", state.global_step, ", ".join(signals))
        if state.is_world_process_zero:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.output_dir) / "collapse.json").write_text(json.dumps(self.monitor.report.to_dict()))
        if self.stop_on_collapse:
            control.should_training_stop = True


class CoRewardingTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose rewards are one of the label-free methods of the paper (or ground truth).

    The training dataset has, besides ``prompt``, the columns ``question_id`` (shared by a question
    and its rephrasing), ``view`` (0 question, 1 rephrasing) and ``answer`` (the hidden reference
    answer or None; it feeds diagnostics, and the reward only for ``ground_truth``). For
    ``co_rewarding_i`` rows 2k and 2k+1 are the two views of pair k
    (:func:`corewarding.train.training_dataset` builds such a dataset).

    Reward columns, as TRL logs them: the method's reward (``rewards/<method>/mean``) and a format
    reward (``rewards/format/mean``: 1 when an answer can be extracted), weighted by TRL's
    ``reward_weights`` (default ``[1.0, 0.0]``: the format reward is only watched).

    Cooper's metrics: ``rm/rule_agreement``, ``rm/false_positive_rate`` and ``rm/group_auc`` (every
    batch, see :func:`~corewarding.rewards.cooper_rewards`); ``rm/heldout_accuracy``,
    ``_balanced_accuracy``, ``_precision``, ``_recall``, ``_auc`` and ``_group_auc`` of the reward model
    that rewards the step, on the held-out split of ``reward_model_eval_data`` (every
    ``reward_model_eval_steps`` steps); ``cooper`` only: ``rm/pairs`` (pairs of the update),
    ``rm/skipped_groups`` (groups without a pair) and ``rm/loss`` (the Bradley–Terry loss before the
    update; absent without pairs).
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
        if args.method == "co_rewarding_ii" and isinstance(model, str):
            model = create_model_from_path(model, **dict(args.model_init_kwargs or {}))
        # The teacher is a copy of the *initial* policy, taken before accelerate wraps the model.
        teacher = copy.deepcopy(model) if args.method == "co_rewarding_ii" and args.beta == 0.0 else None
        if args.method == "co_rewarding_ii" and is_peft_model(model):
            raise ValueError("co_rewarding_ii does not support PEFT models: the EMA teacher needs full weights")
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
        self._teacher_step = 0  # the last training step the teacher was updated for
        if args.method == "co_rewarding_ii":
            self.teacher = self.ref_model if teacher is None else self._prepare_frozen(teacher)
            self.teacher_schedule = TeacherSchedule(
                args.teacher_rate_start, args.teacher_rate_end, args.teacher_update_interval
            )
        self.heldout = list(heldout)
        self.cooper = None
        if args.method in COOPER_METHODS:
            self.cooper, self.cooper_heldout = self._load_reward_model(args)
        self.add_callback(MetricsFileCallback())
        self.add_callback(CollapseCallback(args.stop_on_collapse))
        self._last_generation: tuple[list, list] | None = None

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
            args.reward_model_question_chars, args.reward_model_reference_chars, args.reward_model_completion_chars
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
            reward_model, args.reward_model_learning_rate, args.max_grad_norm, frozen=args.method == "cooper_static"
        )
        heldout = []
        if args.reward_model_eval_data is not None:
            heldout = read_labelled(args.reward_model_eval_data, split="heldout")[: args.reward_model_eval_size]
            if not heldout:
                raise ValueError(f"{args.reward_model_eval_data} has no held-out completions")
        return cooper, heldout

    def _get_train_sampler(self, dataset=None) -> Sampler:
        if self.args.method != "co_rewarding_i":
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

    def _generate(self, prompts):
        outputs = super()._generate(prompts)
        # Token ids of this batch, for the teacher (same prompts) and the confidence rewards.
        self._last_generation = (outputs[0], outputs[1])
        return outputs

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        mode = "train" if self.model.training else "eval"
        method = self.args.method
        local = {
            "answers": [extract_answer(completion_text(c)) for c in completions],
            "question_ids": [str(x["question_id"]) for x in inputs],
            "views": [int(x.get("view", 0)) for x in inputs],
            "references": [x.get("answer") for x in inputs],
        }
        if method in CONFIDENCE_METHODS:
            local["confidence"] = self._confidence(method)
        if method == "co_rewarding_ii":
            local["teacher_answers"] = self._teacher_answers(mode)
        if method in COOPER_METHODS:
            local["texts"] = self.cooper.reward_model.texts(
                [question_text(x["prompt"]) for x in inputs], [x["answer"] for x in inputs],
                [completion_text(c) for c in completions],
            )
            local["reward_model_scores"] = self.cooper.reward_model.scores(local["texts"])
        batch = {key: gather_object(values) for key, values in local.items()}

        rollouts = Rollouts(batch["answers"], batch["question_ids"], batch["views"], batch["references"])
        teacher = None
        if method == "co_rewarding_ii":
            teacher = Rollouts(batch["teacher_answers"], batch["question_ids"], batch["views"])
        result = method_rewards(
            method, rollouts, voting=self.voting, teacher=teacher, confidence=batch.get("confidence"),
            no_answer_penalty=self.args.no_answer_penalty, reward_model_scores=batch.get("reward_model_scores"),
            reward_threshold=self.args.reward_threshold,
        )
        if method in COOPER_METHODS and mode == "train":
            result.metrics.update(self._cooper_step(rollouts, batch["texts"], batch["reward_model_scores"]))
        for name, value in result.metrics.items():
            self._metrics[mode][name].append(value)
        columns = torch.tensor([result.rewards, format_rewards(rollouts).rewards], dtype=torch.float32).T
        return columns.to(self.accelerator.device)

    def _cooper_step(self, rollouts: Rollouts, texts: list[str], scores: list[float]) -> dict[str, float]:
        """Held-out scores of the reward model that rewarded this batch, then (``cooper``) its update."""
        metrics = {}
        step = self.state.global_step + 1
        if self.cooper_heldout and (step - 1) % self.args.reward_model_eval_steps == 0:
            heldout = evaluate_reward_model(self.cooper.reward_model, self.cooper_heldout)
            for name in ("accuracy", "balanced_accuracy", "precision", "recall", "auc", "group_auc"):
                if getattr(heldout, name) is not None:
                    metrics[f"rm/heldout_{name}"] = getattr(heldout, name)
        if self.cooper.frozen:
            return metrics
        accepted = answers_match(list(zip(rollouts.references, rollouts.answers)))
        selection = select_pairs(list(rollouts.groups().values()), accepted, scores)
        loss = self.cooper.update(texts, selection.pairs)
        metrics.update({"rm/pairs": len(selection.pairs), "rm/skipped_groups": selection.skipped_groups})
        if loss is not None:
            metrics["rm/loss"] = loss
        return metrics

    def _padded_generation(self):
        """The last generated batch as (input_ids, attention_mask, completion_mask), TRL's padding."""
        prompt_ids, completion_ids = self._last_generation
        pad_id = self.processing_class.pad_token_id
        prompts = [torch.tensor(p) for p in prompt_ids]
        completions = [torch.tensor(c, dtype=torch.long) for c in completion_ids]
        p_len, c_len = max(len(p) for p in prompts), max(1, max(len(c) for c in completions))
        input_ids = torch.full((len(prompts), p_len + c_len), pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        completion_mask = torch.zeros(len(prompts), c_len, dtype=torch.long)
        for i, (p, c) in enumerate(zip(prompts, completions)):
            input_ids[i, p_len - len(p) : p_len] = p
            input_ids[i, p_len : p_len + len(c)] = c
            attention[i, p_len - len(p) : p_len + len(c)] = 1
            completion_mask[i, : len(c)] = 1
        device = self.accelerator.device
        return input_ids.to(device), attention.to(device), completion_mask.to(device)

    @torch.no_grad()
    def _confidence(self, method: str) -> list[float]:
        """Per-rollout mean self-certainty or entropy of the policy on its own completions.

        One forward pass without gradient, in chunks of ``per_device_train_batch_size`` rows so that
        only one chunk's logits (rows × completion length × vocabulary) are ever in memory. Logits are
        divided by the sampling temperature, as TRL does for its log-probabilities.
        """
        statistic = self_certainty if method == "self_certainty" else entropy
        input_ids, attention, completion_mask = self._padded_generation()
        c_len = completion_mask.size(1)
        chunk = self.args.per_device_train_batch_size
        values = []
        for start in range(0, input_ids.size(0), chunk):
            rows = slice(start, start + chunk)
            logits = self.model(
                input_ids=input_ids[rows], attention_mask=attention[rows], logits_to_keep=c_len + 1
            ).logits[:, :-1] / self.temperature
            values.append(statistic(logits, completion_mask[rows]))
        return torch.cat(values).tolist()

    # ----------------------------------------------------------------------------------- teacher

    def _teacher_answers(self, mode: str) -> list[str | None]:
        """Update the teacher for this step, then let it sample one completion per local rollout slot.

        The local slots hold each prompt as many times as the policy sampled it here, so the gathered
        teacher answers hold G samples per prompt, like the policy's.
        """
        step = self.state.global_step + 1
        if mode == "train" and step != self._teacher_step:
            # The cosine spans the run's length, which the Trainer works out when training starts.
            rate = self.teacher_schedule.rate(step, max(1, self.state.max_steps))
            if rate is not None:
                self._update_teacher(rate)
            self._teacher_step = step
            self._metrics[mode]["teacher/rate"].append(rate or 0.0)
        prompt_ids = self._last_generation[0]
        with self._sampling_from(self.teacher):
            completion_ids, _ = self._generate_single_turn(prompt_ids, None, {}, self.num_generations)
        texts = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        return [extract_answer(t) for t in texts]

    def _update_teacher(self, rate: float) -> None:
        policy = self.accelerator.unwrap_model(self.model)
        teacher = self.accelerator.unwrap_model(self.teacher)
        plugin = self.accelerator.state.deepspeed_plugin
        if plugin is not None and plugin.zero_stage == 3:
            import deepspeed

            params = list(policy.parameters()) + list(teacher.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
                if self.accelerator.is_main_process:
                    ema_update_(teacher, policy, rate)
        else:
            ema_update_(teacher, policy, rate)

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

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Held-out accuracy of the policy (replaces TRL's reward-on-eval-prompts evaluation).

        Greedy pass@1, and with ``heldout_samples`` = k > 0 the sampled accuracy (avg@k) and maj@k
        at the training temperature, on the ``heldout`` problems; each process evaluates its share.
        Runs where TRL would evaluate (``eval_strategy``, ``eval_steps``, ``eval_on_start``), so
        ``metric_for_best_model: eval_greedy_accuracy`` keeps the best checkpoint.
        """
        if not self.heldout:
            return {}
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        shard = self.heldout[rank::world]
        was_training = self.model.training
        self.model.eval()
        with unwrap_model_for_generation(
            self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation
        ) as model:
            backend = TransformersBackend(
                model, self.processing_class, batch_size=self.args.per_device_eval_batch_size * 8,
                seed=self.args.seed,
            )
            result = evaluate_problems(
                shard, backend, k=self.args.heldout_samples, temperature=self.temperature, top_p=self.top_p,
                max_new_tokens=self.max_completion_length, matching=self.args.answer_matching,
                system_prompt=self.args.system_prompt, pass_ks=[self.args.heldout_samples] if self.args.heldout_samples else None,
            )
        scores = gather_object([result.scores])
        total = sum(s.num_questions for s in scores)

        def mean(name: str) -> float | None:
            values = [(getattr(s, name), s.num_questions) for s in scores if getattr(s, name) is not None]
            return sum(v * n for v, n in values) / total if values else None

        metrics = {
            "greedy_accuracy": mean("greedy_accuracy"),
            "sampled_accuracy": mean("avg_at_k"),
            "maj_accuracy": mean("maj_at_k"),
            "no_answer_rate": mean("no_answer_rate"),
        }
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in metrics.items() if v is not None}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if was_training:
            self.model.train()
        return metrics

    # ----------------------------------------------------------------------------------- checkpoints

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.cooper is not None and not self.cooper.frozen and self.args.should_save:
            self.cooper.save(Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.teacher is None:
            return
        state = self.accelerator.get_state_dict(self.teacher)  # gathered under DeepSpeed ZeRO-3
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_file(_unshared(state), folder / TEACHER_WEIGHTS)
            (folder / TEACHER_STATE).write_text(json.dumps({"last_update_step": self._teacher_step}))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.cooper is not None and not self.cooper.frozen and checkpoint is not None:
            self.cooper.load(checkpoint)
        if self.teacher is None or checkpoint is None:
            return
        weights = os.path.join(checkpoint, TEACHER_WEIGHTS)
        if not os.path.exists(weights):
            raise FileNotFoundError(f"checkpoint {checkpoint} has no {TEACHER_WEIGHTS}: it was not saved by co_rewarding_ii")
        teacher = self.accelerator.unwrap_model(self.teacher)
        teacher.load_state_dict(load_file(weights, device=str(next(teacher.parameters()).device)))
        self._teacher_step = json.loads(Path(checkpoint, TEACHER_STATE).read_text())["last_update_step"]
