"""Cooper as a plug-in of the trainer (the shape of the EMA teacher's): score a batch, then learn from it.

The trainer calls two things per step, in this order, so the rewards of a batch always come from the
reward model *before* its update on that batch:

1. :meth:`CooperPlugin.scores` on each process's own rollouts (gathered with the rest of the batch);
2. :meth:`CooperPlugin.after_rewards` on the gathered batch, every process alike: a few telling rollouts
   to ``samples.jsonl``, the held-out scores of the reward model that rewarded the step, then (``cooper``)
   its update on the batch's pairs (:mod:`corewarding.cooper.co_training`), with assistant negatives
   written on the main process and broadcast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import broadcast_object_list
from transformers.utils import logging

from corewarding.cooper.annotate import LabelledExample
from corewarding.cooper.co_training import CooperRewardModel, Pair, select_pairs, telling_samples
from corewarding.cooper.negatives import AssistantNegatives, NegativeRequest, NegativeWriter
from corewarding.cooper.reward_model import reward_model_text
from corewarding.cooper.supervised import evaluate_reward_model
from corewarding.core.equivalence import answers_match
from corewarding.core.rewards import Rollouts
from corewarding.inference.generation import BackendError

__all__ = ["CooperBatch", "CooperPlugin", "SAMPLES_FILE", "HELDOUT_METRICS"]

logger = logging.get_logger(__name__)

#: Reward-model methods: a few rollouts of every step with their reward model score and verifier verdict.
SAMPLES_FILE = "samples.jsonl"
HELDOUT_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "auc", "group_auc")


@dataclass
class CooperBatch:
    """The gathered batch as Cooper sees it: rollouts (answers, ids, references) and, per rollout, the
    question, the completion and the reward model's score."""

    rollouts: Rollouts
    questions: list[str]
    completions: list[str]
    scores: list[float]


class CooperPlugin:
    """The co-trained (or frozen) reward model, its held-out set, the assistant that writes negatives.

    Args:
        model: the reward model with its optimizer.
        heldout: labelled completions to score every ``eval_steps`` steps (``rm/heldout_*``).
        negative_source: ``rollouts``, ``assistant`` or ``both`` (:mod:`corewarding.cooper.co_training`).
        writer: the assistant's negatives; on the main process only, None elsewhere and for ``rollouts``.
        accelerator: to tell the main process and broadcast what it wrote.
        output_dir, samples_per_step, eval_steps: where ``samples.jsonl`` goes, how many rollouts a step.
    """

    def __init__(
        self,
        model: CooperRewardModel,
        heldout: Sequence[LabelledExample],
        negative_source: str,
        writer: NegativeWriter | None,
        accelerator,
        output_dir: str,
        samples_per_step: int,
        eval_steps: int,
    ):
        self.model, self.heldout, self.negative_source = model, list(heldout), negative_source
        self.writer, self.accelerator = writer, accelerator
        self.samples_path = Path(output_dir) / SAMPLES_FILE
        self.samples_per_step, self.eval_steps = samples_per_step, eval_steps

    @property
    def reward_model(self):
        return self.model.reward_model

    def save(self, folder: str | Path) -> None:
        """The co-trained reward model and its optimizer into a checkpoint folder (nothing for a frozen one:
        it is what it was loaded from)."""
        if not self.model.frozen:
            self.model.save(folder)

    def load(self, folder: str | Path) -> None:
        """Restore what :meth:`save` wrote."""
        if not self.model.frozen:
            self.model.load(folder)

    def scores(self, questions: list[str], references: list, completions: list[str]) -> list[float]:
        """The reward model's score s of each rollout (the reward is σ(s), see ``cooper_rewards``)."""
        return self.reward_model.scores(self.reward_model.texts(questions, references, completions))

    def after_rewards(self, step: int, batch: CooperBatch, rewards: list[float]) -> dict[str, float]:
        """This step's samples, held-out scores, then the update on the batch; returns ``rm/*`` metrics."""
        accepted = answers_match(list(zip(batch.rollouts.references, batch.rollouts.answers)))
        if self.samples_per_step and self.accelerator.is_main_process:
            self._write_samples(step, batch, accepted, rewards)
        metrics = {}
        if self.heldout and (step - 1) % self.eval_steps == 0:
            heldout = evaluate_reward_model(self.reward_model, self.heldout)
            metrics = {
                f"rm/heldout_{name}": getattr(heldout, name)
                for name in HELDOUT_METRICS
                if getattr(heldout, name) is not None
            }
        if not self.model.frozen:
            metrics.update(self._update(batch, accepted))
        return metrics

    def _update(self, batch: CooperBatch, accepted: list[bool]) -> dict[str, float]:
        """One update of the reward model on pairs of the batch (and assistant negatives)."""
        groups = list(batch.rollouts.groups().values())
        selection = select_pairs(groups, accepted, batch.scores)
        texts = self.reward_model.texts(batch.questions, batch.rollouts.references, batch.completions)
        pairs = [] if self.negative_source == "assistant" else selection.pairs
        metrics = {}
        if self.negative_source != "rollouts":
            assistant_pairs, calls = self._assistant_pairs(batch, selection.positives, texts)
            metrics.update(calls)
            metrics.update({"rm/rollout_pairs": len(pairs), "rm/assistant_pairs": len(assistant_pairs)})
            pairs = pairs + assistant_pairs
        losses = self.model.update(texts, pairs, accepted)
        # A group has a pair exactly when its positive is in one: each group has one positive.
        metrics["rm/pairs"] = len(pairs)
        metrics["rm/skipped_groups"] = len(groups) - len({p.positive for p in pairs})
        if losses is not None and losses.pairwise is not None:
            metrics["rm/loss"] = losses.pairwise
        if losses is not None and losses.pointwise is not None:
            metrics["rm/pointwise_loss"] = losses.pointwise
        return metrics

    def _assistant_pairs(
        self, batch: CooperBatch, positives: list[int], texts: list[str]
    ) -> tuple[list[Pair], dict[str, float]]:
        """A pair (positive, assistant negative) per positive whose negative came back valid, and the counts
        of the assistant's calls (``rm/assistant_*``); the negatives' texts are appended to ``texts``."""
        requests = [
            NegativeRequest(
                str(batch.rollouts.question_ids[i]),
                batch.questions[i],
                batch.rollouts.references[i],
                batch.completions[i],
            )
            for i in positives
        ]
        negatives = self._assistant_negatives(requests)
        pairs = []
        for positive, request, negative in zip(positives, requests, negatives.texts):
            if negative is not None:
                texts.append(
                    reward_model_text(request.question, request.reference, negative, self.reward_model.bounds)
                )
                pairs.append(Pair(positive, len(texts) - 1))
        return pairs, negatives.metrics()

    def _assistant_negatives(self, requests: list[NegativeRequest]) -> AssistantNegatives:
        """The assistant's negatives for ``requests``, the same on every process.

        The main process alone calls the assistant (one model, one cache file, one bill) and broadcasts
        what it got, so every process ends with the same pairs; the others wait for it. An assistant that
        cannot work at all (a wrong URL, key or model; a server that is down) stops every process.
        """
        written: AssistantNegatives | BackendError | None = None
        if self.accelerator.is_main_process:
            try:
                written = self.writer.write(requests)
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
        self, step: int, batch: CooperBatch, accepted: list[bool], rewards: list[float]
    ) -> None:
        """Append ``samples_per_step`` rollouts of this step to ``samples.jsonl``: those that show best how
        the reward model errs (:func:`~corewarding.cooper.co_training.telling_samples`), each a line with
        ``step``, ``question_id``, ``question``, ``reference``, ``completion``, ``answer``, ``verdict``
        (the verifier accepts it), ``score`` (the reward model's s) and ``reward`` (what the policy got)."""
        rollouts = batch.rollouts
        lines = [
            {
                "step": step,
                "question_id": str(rollouts.question_ids[i]),
                "question": batch.questions[i],
                "reference": rollouts.references[i],
                "completion": batch.completions[i],
                "answer": rollouts.answers[i],
                "verdict": accepted[i],
                "score": batch.scores[i],
                "reward": rewards[i],
            }
            for i in telling_samples(accepted, batch.scores, self.samples_per_step)
        ]
        self.samples_path.parent.mkdir(parents=True, exist_ok=True)
        with self.samples_path.open("a", encoding="utf-8") as file:
            file.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
