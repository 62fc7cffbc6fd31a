r"""Cooper: the reward model is optimised together with the policy (docs/method.md, "Cooper").

Each training step, on the rollouts of one generation batch:

1. **Reward.** Every rollout y of question x with reference answer a gets r = σ(RM(x, a, y))
   (:func:`corewarding.core.rewards.cooper_rewards`), from the reward model *before* this step's update.
2. **Pairs.** In each group (the G rollouts of one prompt) the rule-based verifier splits the rollouts
   into accepted (ans(y) ≡ a) and rejected ones. A group with both gives one pair
   (:func:`select_pairs`): its accepted rollout with the lowest score and its rejected rollout with
   the highest score — the pair the reward model orders worst, i.e. the blind spot the policy would
   exploit next. A group with only accepted or only rejected rollouts gives no pair and is counted as
   skipped. (The paper also writes negatives with an assistant LLM; not implemented.)
3. **Update.** One AdamW step on the Bradley–Terry loss of the pairs,
   ℓ = −(1/P) Σ_p log σ(s_pos,p − s_neg,p), gradients clipped to ``max_grad_norm``. So the policy
   cannot settle on what the reward model gets wrong: what it gets wrong is what it learns next.

``cooper_static`` skips steps 2–3: a frozen reward model, the baseline that shows reward hacking.

**Several processes.** Every process holds an identical replica of the reward model. Each scores its
own rollouts and the scores are gathered with the rest of the batch, so every process selects the
same pairs. For the update the pairs are shared out over the processes (pair p to process
p mod world); each process back-propagates its share of the mean loss, and the gradients are summed
over processes (one all-reduce, as DDP does), so every replica takes the same optimizer step and the
replicas stay identical without sending weights around.

Worked example (two groups; positions 0–3 and 4–5; scores before the update)::

    >>> selection = select_pairs([[0, 1, 2, 3], [4, 5]], accepted=[True, True, False, False, True, True],
    ...                          scores=[2.0, -1.0, 0.5, -3.0, 0.0, 0.0])
    >>> selection.pairs, selection.skipped_groups
    ([Pair(positive=1, negative=2)], 1)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from corewarding.cooper.reward_model import RewardModel, bradley_terry_loss

__all__ = ["Pair", "PairSelection", "select_pairs", "CooperRewardModel"]

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
    """The pairs of a batch, and how many groups had none (all accepted, or all rejected)."""

    pairs: list[Pair]
    skipped_groups: int


def select_pairs(
    groups: Sequence[Sequence[int]], accepted: Sequence[bool], scores: Sequence[float]
) -> PairSelection:
    """One pair per group that has both an accepted and a rejected rollout (see the module docstring).

    ``groups`` lists the batch positions of each group; ``accepted`` is the verifier's verdict and
    ``scores`` the reward model's score of every position. Ties go to the earlier position.
    """
    pairs, skipped = [], 0
    for members in groups:
        positives = [i for i in members if accepted[i]]
        negatives = [i for i in members if not accepted[i]]
        if not positives or not negatives:
            skipped += 1
            continue
        pairs.append(Pair(min(positives, key=lambda i: scores[i]), max(negatives, key=lambda i: scores[i])))
    return PairSelection(pairs, skipped)


class CooperRewardModel:
    """A :class:`~corewarding.cooper.reward_model.RewardModel` with its AdamW optimizer and step count.

    Args:
        reward_model: the model (a replica on every process).
        learning_rate: AdamW learning rate of the pairwise updates (no weight decay).
        max_grad_norm: gradient clipping norm.
        frozen: ``cooper_static``: no optimizer; :meth:`update`, :meth:`save` and :meth:`load` refuse.
    """

    def __init__(
        self,
        reward_model: RewardModel,
        learning_rate: float,
        max_grad_norm: float = 1.0,
        frozen: bool = False,
    ):
        self.reward_model = reward_model
        self.frozen = frozen
        self.max_grad_norm = max_grad_norm
        self.steps = 0
        reward_model.model.requires_grad_(not frozen)
        self.optimizer = None
        if not frozen:
            self.optimizer = torch.optim.AdamW(
                reward_model.model.parameters(), lr=learning_rate, weight_decay=0
            )

    def update(self, texts: Sequence[str], pairs: Sequence[Pair]) -> float | None:
        """One optimizer step on the Bradley–Terry loss of ``pairs`` (positions into ``texts``).

        Every process must call it with the same texts and pairs (see the module docstring). Pairs
        are scored in chunks of the reward model's ``batch_size``. Returns the loss (mean over all
        pairs, before the step), or None when there are no pairs (then there is no step).
        """
        self._refuse_if_frozen()
        if not pairs:
            return None
        rank, world = _process_index_and_count()
        model = self.reward_model
        model.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=model.device)
        mine = list(pairs)[rank::world]
        chunk = max(1, model.batch_size // 2)  # a pair is two sequences
        with torch.enable_grad():
            for start in range(0, len(mine), chunk):
                part = mine[start : start + chunk]
                scores = model.logits([texts[p.positive] for p in part] + [texts[p.negative] for p in part])
                loss = bradley_terry_loss(scores[: len(part)], scores[len(part) :]) * len(part)
                (loss / len(pairs)).backward()
                loss_sum += loss.detach()
        parameters = [p for p in model.model.parameters() if p.requires_grad]
        if world > 1:
            for p in parameters:
                if p.grad is None:  # this process had no pairs, or the parameter no gradient
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad)
            torch.distributed.all_reduce(loss_sum)
        torch.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        self.optimizer.step()
        self.steps += 1
        model.model.eval()
        return loss_sum.item() / len(pairs)

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
        self.optimizer.load_state_dict(
            torch.load(folder / OPTIMIZER_FILE, map_location=self.reward_model.device)
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
