r"""Cooper's reference-based reward model: a one-logit classifier that reads the reference answer.

Rule-based rewards are precise but brittle (a right answer in an unexpected form scores 0); a learned
reward model is robust but can be hacked. Cooper's reward model sees the question, the reference
answer and the completion, and says how likely the completion is to be correct.

**The text it scores** (:func:`reward_model_text`)::

    <question>{question}</question>
    <reference_answer>{reference}</reference_answer>
    <completion>{completion}</completion>

**Truncation.** A field longer than its bound (:class:`TemplateBounds`, in characters: question
2,000, reference 200, completion 4,000 — about 500 + 50 + 1,000 tokens of English) keeps its head and
its tail around ``" […] "`` (:func:`truncate_middle`): the completion keeps how it starts and its
final answer, the question its setting and what it asks. The whole text is then cut to the backbone's
context in tokens, from the left (:meth:`RewardModel.logits`): the classifier reads the last token, and
the completion's end is what matters most.

**Scores and rewards.** The score s is the classifier's logit. Cooper's reward is r = σ(s), the
probability that the completion is correct, or 1[σ(s) ≥ t] with a threshold t
(:func:`corewarding.core.rewards.cooper_rewards`).

**Losses.**

* labelled completions (``corewarding rm train``): binary cross-entropy,
  ℓ(s, y) = −[y·log σ(s) + (1 − y)·log(1 − σ(s))], y = 1 for a correct completion;
* pairs during RL (Cooper): the Bradley–Terry loss ℓ = −log σ(s_pos − s_neg)
  (:func:`bradley_terry_loss`), which pushes a correct rollout's score above a wrong one's.

Worked example::

    >>> print(reward_model_text("What is 2+3?", "5", r"2+3=5. \boxed{5}"))
    <question>What is 2+3?</question>
    <reference_answer>5</reference_answer>
    <completion>2+3=5. \boxed{5}</completion>
    >>> truncate_middle("abcdefghijklmnopqrstuvwxyz", 15)
    'abcde […] vwxyz'
    >>> round(bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])).item(), 4)  # -log σ(2)
    0.1269
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from corewarding.core.errors import UserError
from corewarding.core.rewards import within_group_auc
from corewarding.inference.models import default_device, load_model

__all__ = [
    "ELLIPSIS",
    "TemplateBounds",
    "truncate_middle",
    "reward_model_text",
    "bradley_terry_loss",
    "ClassificationScores",
    "classification_scores",
    "RewardModel",
]

#: What stands for the cut-out middle of a long field.
ELLIPSIS = " […] "


@dataclass(frozen=True)
class TemplateBounds:
    """The longest each field of the template may be, in characters (see the module docstring).

    Use the same bounds to train a reward model and to score with it.
    """

    question_chars: int = 2000
    reference_chars: int = 200
    completion_chars: int = 4000

    def __post_init__(self):
        for name in ("question_chars", "reference_chars", "completion_chars"):
            if getattr(self, name) < len(ELLIPSIS) + 2:
                raise UserError(f"{name} must be at least {len(ELLIPSIS) + 2}, got {getattr(self, name)}")


def truncate_middle(text: str, max_chars: int) -> str:
    """``text`` when it has at most ``max_chars`` characters, else its head and tail around :data:`ELLIPSIS`.

    The result has exactly ``max_chars`` characters: the head ⌊(max_chars − 5)/2⌋ of them, the tail
    the rest.
    """
    if len(text) <= max_chars:
        return text
    keep = max_chars - len(ELLIPSIS)
    head = keep // 2
    return text[:head] + ELLIPSIS + text[len(text) - (keep - head) :]


def reward_model_text(
    question: str, reference: str, completion: str, bounds: TemplateBounds = TemplateBounds()
) -> str:
    """The text the reward model scores (the module docstring's template), fields cut to ``bounds``."""
    return (
        f"<question>{truncate_middle(question, bounds.question_chars)}</question>\n"
        f"<reference_answer>{truncate_middle(reference, bounds.reference_chars)}</reference_answer>\n"
        f"<completion>{truncate_middle(completion, bounds.completion_chars)}</completion>"
    )


def bradley_terry_loss(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of −log σ(s_pos − s_neg), computed as softplus(s_neg − s_pos) (cannot overflow)."""
    return F.softplus(negative - positive).mean()


@dataclass(frozen=True)
class ClassificationScores:
    """How well scores separate 1-labels from 0-labels (fractions; None where a ratio has no denominator).

    Attributes:
        count: examples scored.
        accuracy: share predicted right, predicting 1 when the score is at least the threshold.
        balanced_accuracy: mean of the recall of each class (0.5 for a constant or random guess,
            whatever the share of positives).
        precision: share of predicted positives that are positive.
        recall: share of positives predicted positive.
        auc: area under the ROC curve: the chance that a random positive scores above a random
            negative (ties count half); 0.5 for a random scorer, and independent of the threshold.
        group_auc: the same over positives and negatives of the same group only
            (:func:`~corewarding.core.rewards.within_group_auc`; None when no groups are given).
        positive_rate: share of positive labels (a constant "wrong" guess has accuracy 1 − this).
    """

    count: int
    accuracy: float | None
    balanced_accuracy: float | None
    precision: float | None
    recall: float | None
    auc: float | None
    positive_rate: float | None
    group_auc: float | None = None


def classification_scores(
    scores: Sequence[float],
    labels: Sequence[bool],
    threshold: float = 0.0,
    groups: Sequence[Sequence[int]] | None = None,
) -> ClassificationScores:
    """Accuracy, balanced accuracy, precision, recall and AUC of scores against labels; with ``groups``
    (positions of the completions of each question), also the AUC within groups.

    The default threshold 0 on a logit s is σ(s) ≥ 0.5.

    >>> s = classification_scores([2.0, 0.5, -1.0, 0.5], [True, False, False, False])
    >>> s.accuracy, round(s.balanced_accuracy, 4), s.precision, s.recall, s.auc, s.positive_rate
    (0.5, 0.6667, 0.3333333333333333, 1.0, 1.0, 0.25)
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
    pairs = [(s >= threshold, bool(y)) for s, y in zip(scores, labels)]
    tp = sum(p and y for p, y in pairs)
    tn = sum(not p and not y for p, y in pairs)
    positives = sum(y for _, y in pairs)
    predicted = sum(p for p, _ in pairs)
    negatives = len(pairs) - positives

    def ratio(a: float, b: int) -> float | None:
        return a / b if b else None

    recall, specificity = ratio(tp, positives), ratio(tn, negatives)
    recalls = [r for r in (recall, specificity) if r is not None]
    return ClassificationScores(
        count=len(pairs),
        accuracy=ratio(tp + tn, len(pairs)),
        balanced_accuracy=sum(recalls) / len(recalls) if recalls else None,
        precision=ratio(tp, predicted),
        recall=recall,
        auc=ratio(
            _positive_rank_sum(scores, labels) - positives * (positives + 1) / 2, positives * negatives
        ),
        positive_rate=ratio(positives, len(pairs)),
        group_auc=None if groups is None else within_group_auc(scores, labels, groups),
    )


def _positive_rank_sum(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Sum of the positives' ranks among all scores (1-based; tied scores share their mean rank).

    Mann–Whitney: AUC = (this − P(P + 1)/2) / (P·N) for P positives and N negatives.
    """
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    total, start = 0.0, 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        mean_rank = (start + end) / 2 + 1
        total += mean_rank * sum(bool(labels[i]) for i in order[start : end + 1])
        start = end + 1
    return total


class RewardModel:
    """A ``transformers`` sequence classifier with one logit, and the tokenizer of its backbone.

    Weights stay in float32 whatever the device, because the reward model is trained (an AdamW step
    of 1e-5 is lost in bfloat16 weights); on a GPU the forward pass runs under bfloat16 autocast.
    Sequences are right-padded (the classifier reads the last token that is not padding) and cut
    from the left to the backbone's context.

    Attributes:
        model: the classifier (``AutoModelForSequenceClassification``, ``num_labels=1``).
        tokenizer: its tokenizer.
        bounds: the template's field bounds.
        batch_size: sequences per forward pass when scoring.
    """

    def __init__(self, model, tokenizer, bounds: TemplateBounds = TemplateBounds(), batch_size: int = 16):
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        if model.config.num_labels != 1:
            raise UserError(f"a reward model has one output, this classifier has {model.config.num_labels}")
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"
        # The classifier finds each sequence's last token by the pad id; a backbone may not set it.
        self.model.config.pad_token_id = tokenizer.pad_token_id
        self.bounds = bounds
        self.batch_size = batch_size
        positions = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
        self.max_length = min(positions, tokenizer.model_max_length)

    @classmethod
    def load(
        cls,
        location: str | os.PathLike,
        *,
        bounds: TemplateBounds = TemplateBounds(),
        batch_size: int = 16,
        device: torch.device | str | None = None,
        seed: int = 0,
    ) -> RewardModel:
        """A reward model saved by :meth:`save`, or any causal LM backbone with a fresh score head.

        ``location`` is a folder, a hub id, or ``tiny`` (the packaged tiny model's backbone). A fresh
        head is drawn from ``seed``, so every process of a run starts from the same weights.
        """
        device = torch.device(device) if device is not None else default_device()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            model, tokenizer = load_model(
                location,
                device=device,
                dtype=torch.float32,
                model_class=AutoModelForSequenceClassification,
                num_labels=1,
            )
        return cls(model, tokenizer, bounds, batch_size)

    def save(self, folder: str | os.PathLike) -> Path:
        """``save_pretrained`` of the classifier and the tokenizer; :meth:`load` reads the folder back."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return folder

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def texts(
        self, questions: Sequence[str], references: Sequence[str], completions: Sequence[str]
    ) -> list[str]:
        """The template of each (question, reference, completion), with this model's bounds."""
        return [
            reward_model_text(q, r, c, self.bounds)
            for q, r, c in zip(questions, references, completions, strict=True)
        ]

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """The score s of each text, as a float32 tensor that carries gradients (one forward pass)."""
        batch = self.tokenizer(
            list(texts),
            return_tensors="pt",
            padding=True,
            padding_side="right",
            truncation=True,
            max_length=self.max_length,
        ).to(self.device)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.cuda.is_bf16_supported())
            if self.device.type == "cuda"
            else nullcontext()
        )
        with autocast:
            return self.model(**batch).logits[:, 0].float()

    def scores(self, texts: Sequence[str]) -> list[float]:
        """The score s of each text, in batches of ``batch_size``, without gradients."""
        was_training = self.model.training
        self.model.eval()
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                scores += self.logits(texts[start : start + self.batch_size]).tolist()
        self.model.train(was_training)
        return scores
