"""The policy's numerics: AdamW's updates are lost on bfloat16 weights, so the policy trains in float32.

An AdamW step changes a weight by about the learning rate (Adam's update is normalised: |Δθ| ≈ lr at
first). bfloat16 keeps 8 bits of mantissa, so a weight w changes only when lr exceeds half its spacing,
about |w|·2⁻⁹: at the paper's lr = 3e-6 no weight above |w| ≈ 1.5e-3 can move. Trained in bfloat16 with
no float32 copy (transformers' Trainer on a model loaded in bfloat16), most updates are rounded away;
``benchmarks/bench_precision.py`` measures the share of weights an optimizer step changes.

So the project's training paths keep float32 *master weights*: ``corewarding train`` and TRL (a model
given by name, ``model_init_kwargs`` without ``dtype``) load the policy in float32, and ``bf16: true``
makes the forward and backward passes compute in bfloat16 under autocast; DeepSpeed keeps its own
float32 master copy of a bfloat16 model. A policy handed to the trainer in bfloat16 outside DeepSpeed
is trained as given, with a warning (:func:`warn_if_low_precision`).

    >>> changed_share([torch.tensor([1.0, 2.0])], [torch.tensor([1.0, 2.5])])
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.utils import logging

__all__ = ["changed_share", "low_precision_dtype", "warn_if_low_precision"]

logger = logging.get_logger(__name__)


def changed_share(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> float:
    """The share of scalar weights that differ between ``before`` and ``after`` (tensor lists alike)."""
    changed = sum(int((a != b).sum()) for a, b in zip(after, before))
    return changed / max(1, sum(t.numel() for t in before))


def low_precision_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """bfloat16 or float16 when that is the dtype of a trainable parameter of ``model``, else None."""
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            return param.dtype
    return None


def warn_if_low_precision(model: torch.nn.Module, has_master_copy: bool) -> None:
    """Warn once when the policy's trainable weights are 16-bit and nothing keeps a float32 copy."""
    dtype = low_precision_dtype(model)
    if dtype is not None and not has_master_copy:
        logger.warning(
            "the policy's weights are %s and no float32 master copy is kept: AdamW's small updates are "
            "rounded away (benchmarks/bench_precision.py); load it in float32 and set bf16: true",
            str(dtype).removeprefix("torch."),
        )
