"""Per-token confidence statistics of a policy's logits, averaged over the response.

The two confidence rewards of docs/method.md ("Rewards") need, for every response token t with
logits z_t ∈ R^V:

* **self-certainty** (Intuitor): KL(U ‖ p_t) = −log V − (1/V) Σ_j log p_tj
  = logsumexp(z_t) − mean(z_t) − log V.
  A uniform distribution scores 0 and a confident one scores high. (The constant log V cancels in
  GRPO's group normalisation; it is kept so the logged value is the KL itself.)
* **entropy** (RENT / EM-RL): H(p_t) = logsumexp(z_t) − Σ_j p_tj z_tj.

Both are averaged over the tokens where ``mask`` is 1 (the response, padding excluded). A rollout
with no response token gets 0. Computed in float32 whatever the logits' dtype.

Worked example (uniform logits: self-certainty 0, entropy log V)::

    >>> import torch
    >>> z = torch.zeros(1, 3, 4)
    >>> self_certainty(z, torch.ones(1, 3)).tolist(), round(entropy(z, torch.ones(1, 3)).item(), 4)
    ([0.0], 1.3863)
"""

from __future__ import annotations

import math

import torch

__all__ = ["self_certainty", "entropy", "masked_sequence_mean", "STATISTICS", "rollout_statistic"]


def masked_sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T) over positions where ``mask`` (B, T) is nonzero; 0 for an empty row."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def self_certainty(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over response tokens of KL(U ‖ p_t); logits (B, T, V), mask (B, T) → (B,)."""
    z = logits.float()
    kl = torch.logsumexp(z, dim=-1) - z.mean(dim=-1) - math.log(z.shape[-1])
    return masked_sequence_mean(kl, mask)


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over response tokens of the entropy H(p_t); logits (B, T, V), mask (B, T) → (B,)."""
    z = logits.float()
    log_p = torch.log_softmax(z, dim=-1)
    return masked_sequence_mean(-(log_p.exp() * log_p).sum(-1), mask)


#: The statistic each confidence method rewards.
STATISTICS = {"self_certainty": self_certainty, "entropy": entropy}


@torch.no_grad()
def rollout_statistic(
    model: torch.nn.Module,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    statistic: str,
    *,
    pad_token_id: int,
    temperature: float = 1.0,
    chunk: int = 64,
) -> list[float]:
    """Each rollout's mean ``statistic`` (``self_certainty`` or ``entropy``) under ``model``.

    Prompts left-padded and completions right-padded (TRL's layout), one forward pass without gradient
    per ``chunk`` rows, so only one chunk's logits (rows × completion length × vocabulary) are ever in
    memory. The logits are divided by the sampling ``temperature``, as TRL does for its log-probabilities.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}: expected one of {', '.join(STATISTICS)}")
    device = next(model.parameters()).device
    p_len = max(len(p) for p in prompt_ids)
    c_len = max(1, max(len(c) for c in completion_ids))
    rows = len(prompt_ids)
    input_ids = torch.full((rows, p_len + c_len), pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    completion_mask = torch.zeros(rows, c_len, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        input_ids[i, p_len - len(p) : p_len + len(c)] = torch.tensor(list(p) + list(c), dtype=torch.long)
        attention[i, p_len - len(p) : p_len + len(c)] = 1
        completion_mask[i, : len(c)] = 1
    input_ids, attention, completion_mask = (
        input_ids.to(device), attention.to(device), completion_mask.to(device)
    )
    values = []
    for start in range(0, rows, chunk):
        part = slice(start, start + chunk)
        logits = model(
            input_ids=input_ids[part], attention_mask=attention[part], logits_to_keep=c_len + 1
        ).logits
        values.append(STATISTICS[statistic](logits[:, :-1] / temperature, completion_mask[part]))
    return torch.cat(values).tolist()
