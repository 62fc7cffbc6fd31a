"""Whether questions are the tiny model's task, read from how well its tokenizer compresses them.

The tiny tokenizer's merges were learnt from the synthetic task (:mod:`corewarding.tiny.model`): its fixed
phrases are single tokens, so a question of the task takes at least 5 characters per token (measured over
200 questions of each shipped regime: 5.0 to 8.0, mean about 7.8), while other text falls back to bytes and
short pieces (natural-language word problems: 1.6 to 2.1). The model cannot read such text, so training
or evaluating it there measures nothing of the method.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TASK_CHARS_PER_TOKEN", "characters_per_token", "reads_as_task"]

#: Below this many characters per token, questions are not the tiny model's task (between 2.1 and 5.0).
TASK_CHARS_PER_TOKEN = 3.5


def characters_per_token(tokenizer, questions: Sequence[str]) -> float:
    """Σ characters / Σ tokens over ``questions`` (no special tokens)."""
    tokens = sum(len(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in questions)
    return sum(map(len, questions)) / max(tokens, 1)


def reads_as_task(tokenizer, questions: Sequence[str]) -> bool:
    """Whether ``questions`` compress as the tiny model's task does (:data:`TASK_CHARS_PER_TOKEN`)."""
    return characters_per_token(tokenizer, questions) >= TASK_CHARS_PER_TOKEN
