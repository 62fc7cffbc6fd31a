"""The ``README.md`` a run leaves in its folder: what was trained from what, how, and how it did."""

from __future__ import annotations

from pathlib import Path

from corewarding.core import metric_names

__all__ = ["model_card"]


def model_card(args, label_from: str, state, heldout_problems: int) -> str:
    """The card of a run with config ``args`` whose reward label comes from ``label_from``, at trainer
    ``state`` (its steps and log history), held-out accuracy measured on ``heldout_problems`` problems."""
    from corewarding import __version__

    heldout = [r for r in state.log_history if metric_names.HELDOUT_GREEDY in r]
    scores = ""
    if heldout:
        first, last = heldout[0], heldout[-1]
        scores = (
            f"\nHeld-out greedy accuracy {100 * first[metric_names.HELDOUT_GREEDY]:.1f}% at step "
            f"{first.get('step', 0)} → {100 * last[metric_names.HELDOUT_GREEDY]:.1f}% at step "
            f"{last.get('step', '?')} "
            f"({heldout_problems} problems of {args.heldout_dataset}).\n"
        )
    return f"""---
base_model: {args.model_name_or_path}
library_name: corewarding
tags: [corewarding, grpo, {args.method}]
---

# {Path(args.output_dir).name}

{args.model_name_or_path} trained with **{args.method}** (reward label from {label_from}) on
{args.dataset}, {state.global_step} steps, by corewarding {__version__} on TRL's GRPOTrainer.
Answers: `{args.answer_extraction}` extraction, `{args.answer_matching}` matching.
{scores}
Settings: `config.yaml`; metrics per step: `metrics.jsonl`; compare runs:
`corewarding report {args.output_dir}`.
"""
