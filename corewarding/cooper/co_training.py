r"""Cooper: the reward model is optimised together with the policy (docs/method.md, "Cooper").

Each training step, on the rollouts of one generation batch:

1. **Reward.** Every rollout y of question x with reference answer a gets r = σ(RM(x, a, y))
   (:func:`corewarding.core.rewards.cooper_rewards`), from the reward model *before* this step's update.
2. **Pairs.** In each group (the G rollouts of one prompt) the rule-based verifier splits the rollouts
   into accepted (ans(y) ≡ a) and rejected ones. The group's *positive* is its accepted rollout with the
   lowest score (:func:`select_pairs`). Its negative comes from ``negative_source``:

   * ``rollouts`` (default): the group's rejected rollout with the highest score — with the positive,
     the pair the reward model orders worst, i.e. the blind spot the policy would exploit next;
   * ``assistant``: a completely incorrect response of about the positive's length, written by an
     assistant (:mod:`corewarding.cooper.negatives`; the paper's source), masked when the call failed
     or the verifier accepts it;
   * ``both``: both pairs.

   A group that ends without a pair (no accepted rollout; no rejected one, or no valid assistant
   negative) is counted as skipped.
3. **Update.** One AdamW step on the Bradley–Terry loss of the P pairs, plus, with ``pointwise_weight``
   w > 0, the binary cross-entropy of every rollout's score against its verifier label y_i:

       ℓ = −(1/P) Σ_p log σ(s_pos,p − s_neg,p) − w·(1/N) Σ_i [y_i log σ(s_i) + (1 − y_i) log(1 − σ(s_i))]

   gradients clipped to ``max_grad_norm``. So the policy cannot settle on what the reward model gets
   wrong: what it gets wrong is what it learns next. The pairwise term only orders scores: adding a
   constant to every score leaves it unchanged, so the level σ(s) drifts freely, and with a reward
   1[σ(s) ≥ t] wrong completions can drift above t. The pointwise term pins the level to the labels.

``cooper_static`` skips steps 2–3: a frozen reward model, the baseline that shows reward hacking.

**Several processes.** Every process holds an identical replica of the reward model. Each scores its
own rollouts and the scores are gathered with the rest of the batch, so every process selects the
same pairs; assistant negatives are written on the main process and broadcast (the trainer's
``_assistant_negatives``). For the update the pairs and the labelled rollouts are shared out over the
processes (item k to process k mod world); each process back-propagates its share of the mean losses,
and the gradients are summed over processes (one all-reduce, as DDP does), so every replica takes the
same optimizer step and the replicas stay identical without sending weights around.

Worked example (two groups; positions 0–3 and 4–5; scores before the update)::

    >>> selection = select_pairs([[0, 1, 2, 3], [4, 5]], accepted=[True, True, False, False, True, True],
    ...                          scores=[2.0, -1.0, 0.5, -3.0, 0.0, 0.0])
    >>> selection.pairs, selection.skipped_groups, selection.positives
    ([Pair(positive=1, negative=2)], 1, [1, 4])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from corewarding.cooper.reward_model import RewardModel, bradley_terry_loss

__all__ = ["Pair", "PairSelection", "select_pairs", "telling_samples", "UpdateLosses", "CooperRewardModel"]

REWARD_MODEL_DIR = "reward_model"
OPTIMIZER_FILE = "reward_model_optimizer.pt"
STATE_FILE = "reward_model_state.json"


@dataclass(frozen=True)
class Pair:
    """Positions in the batch of a rollout the verifier accepts and one of the same group it rejects."""

    positive: int
    negative: int


@dataclass(frozen=True)
class PairSelection:
    """The rollout pairs of a batch, how many groups had none (all accepted, or all rejected), and the
    positive of every group that has an accepted rollout (what an assistant writes negatives for)."""

    pairs: list[Pair]
    skipped_groups: int
    positives: list[int]


def select_pairs(
    groups: Sequence[Sequence[int]], accepted: Sequence[bool], scores: Sequence[float]
) -> PairSelection:
    """Each group's positive (its accepted rollout scored lowest), and a pair with its rejected rollout
    scored highest where it has one (see the module docstring).

    ``groups`` lists the batch positions of each group; ``accepted`` is the verifier's verdict and
    ``scores`` the reward model's score of every position. Ties go to the earlier position.
    """
    pairs, skipped, chosen = [], 0, []
    for members in groups:
        positives = [i for i in members if accepted[i]]
        negatives = [i for i in members if not accepted[i]]
        if positives:
            chosen.append(min(positives, key=lambda i: scores[i]))
        if not positives or not negatives:
            skipped += 1
            continue
        pairs.append(Pair(chosen[-1], max(negatives, key=lambda i: scores[i])))
    return PairSelection(pairs, skipped, chosen)


def telling_samples(accepted: Sequence[bool], scores: Sequence[float], count: int) -> list[int]:
    """The ``count`` rollouts that show best how the reward model errs: the rejected ones it scores
    highest (reward hacking: wrong completions it rewards) taking turns with the accepted ones it scores
    lowest; when one kind runs out, more of the other. Ties go to the earlier position.

    >>> telling_samples([True, False, False, True, False], [2.0, 1.5, -1.0, 0.5, 0.3], 3)
    [1, 3, 4]
    """
    wrong = sorted((i for i, a in enumerate(accepted) if not a), key=lambda i: -scores[i])
    right = sorted((i for i, a in enumerate(accepted) if a), key=lambda i: scores[i])
    turns = [i for pair in zip(wrong, right) for i in pair]
    rest = wrong[len(right) :] + right[len(wrong) :]
    return (turns + rest)[:count]


@dataclass(frozen=True)
class UpdateLosses:
    """The losses of one update, before its step: the Bradley–Terry loss of the pairs and the
    pointwise binary cross-entropy (each None when the update had none of its terms)."""

    pairwise: float | None
    pointwise: float | None


class CooperRewardModel:
    """A :class:`~corewarding.cooper.reward_model.RewardModel` with its AdamW optimizer and step count.

    Args:
        reward_model: the model (a replica on every process).
        learning_rate: AdamW learning rate of the updates (no weight decay).
        max_grad_norm: gradient clipping norm.
        frozen: ``cooper_static``: no optimizer; :meth:`update`, :meth:`save` and :meth:`load` refuse.
        pointwise_weight: w, the weight of the pointwise term of the update (module docstring); 0: none.
    """

    def __init__(
        self,
        reward_model: RewardModel,
        learning_rate: float,
        max_grad_norm: float = 1.0,
        frozen: bool = False,
        pointwise_weight: float = 0.0,
    ):
        if pointwise_weight < 0:
            raise ValueError(f"pointwise_weight must be at least 0, got {pointwise_weight}")
        self.reward_model = reward_model
        self.frozen = frozen
        self.max_grad_norm = max_grad_norm
        self.pointwise_weight = pointwise_weight
        self.steps = 0
        reward_model.model.requires_grad_(not frozen)
        self.optimizer = None
        if not frozen:
            self.optimizer = torch.optim.AdamW(
                reward_model.model.parameters(), lr=learning_rate, weight_decay=0
            )

    def update(
        self, texts: Sequence[str], pairs: Sequence[Pair], labels: Sequence[bool] = ()
    ) -> UpdateLosses | None:
        """One optimizer step on the loss of the module docstring: the Bradley–Terry loss of ``pairs``
        (positions into ``texts``) plus, with a pointwise weight, the cross-entropy of ``labels`` (the
        verifier's label of ``texts[i]`` for every i < len(labels)).

        Every process must call it with the same texts, pairs and labels (see the module docstring).
        Texts are scored in chunks of the reward model's ``batch_size``. Returns the losses (means,
        before the step), or None when there is nothing to learn from (then there is no step).
        """
        self._refuse_if_frozen()
        labelled = list(enumerate(labels)) if self.pointwise_weight > 0 else []
        if not pairs and not labelled:
            return None
        rank, world = _process_index_and_count()
        model = self.reward_model
        model.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums = torch.zeros(2, device=model.device)  # the pairwise and pointwise loss sums
        chunk = max(1, model.batch_size // 2)  # a pair is two sequences
        mine = list(pairs)[rank::world]
        with torch.enable_grad():
            for start in range(0, len(mine), chunk):
                part = mine[start : start + chunk]
                scores = model.logits([texts[p.positive] for p in part] + [texts[p.negative] for p in part])
                loss = bradley_terry_loss(scores[: len(part)], scores[len(part) :]) * len(part)
                (loss / len(pairs)).backward()
                sums[0] += loss.detach()
            mine_labelled = labelled[rank::world]
            for start in range(0, len(mine_labelled), model.batch_size):
                part = mine_labelled[start : start + model.batch_size]
                targets = torch.tensor([float(y) for _, y in part], device=model.device)
                scores = model.logits([texts[i] for i, _ in part])
                loss = F.binary_cross_entropy_with_logits(scores, targets, reduction="sum")
                (self.pointwise_weight * loss / len(labelled)).backward()
                sums[1] += loss.detach()
        parameters = [p for p in model.model.parameters() if p.requires_grad]
        if world > 1:
            for p in parameters:
                if p.grad is None:  # this process had no pairs, or the parameter no gradient
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad)
            torch.distributed.all_reduce(sums)
        torch.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        self.optimizer.step()
        self.steps += 1
        model.model.eval()
        pairwise, pointwise = sums.tolist()
        return UpdateLosses(
            pairwise / len(pairs) if pairs else None, pointwise / len(labelled) if labelled else None
        )

    def save(self, checkpoint: str | os.PathLike) -> None:
        """Write the reward model, its optimizer and its step count into a checkpoint folder.

        Only a trained reward model is saved: a frozen one is the same as where it was loaded from.
        """
        self._refuse_if_frozen()
        folder = Path(checkpoint)
        self.reward_model.save(folder / REWARD_MODEL_DIR)
        torch.save(self.optimizer.state_dict(), folder / OPTIMIZER_FILE)
        (folder / STATE_FILE).write_text(json.dumps({"steps": self.steps}))

    def load(self, checkpoint: str | os.PathLike) -> None:
        """Restore what :meth:`save` wrote into ``checkpoint``."""
        self._refuse_if_frozen()
        folder = Path(checkpoint)
        if not (folder / STATE_FILE).is_file():
            raise FileNotFoundError(
                f"checkpoint {folder} has no {STATE_FILE}: it was not saved by a cooper run"
            )
        saved = RewardModel.load(folder / REWARD_MODEL_DIR, device=self.reward_model.device)
        self.reward_model.model.load_state_dict(saved.model.state_dict())
        # weights_only: tensors and plain values only; a pickle that would run code is refused.
        self.optimizer.load_state_dict(
            torch.load(folder / OPTIMIZER_FILE, map_location=self.reward_model.device, weights_only=True)
        )
        self.steps = json.loads((folder / STATE_FILE).read_text())["steps"]

    def _refuse_if_frozen(self) -> None:
        if self.frozen:
            raise RuntimeError(
                "the reward model of cooper_static is frozen: it is neither updated nor checkpointed"
            )


def _process_index_and_count() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
