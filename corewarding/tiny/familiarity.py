"""Whether questions are the tiny model's task, read from how well its tokenizer compresses them.

The tiny tokenizer's merges were learnt from the synthetic task (:mod:`corewarding.tiny.model`): its fixed
phrases are single tokens, so the task's questions take 7.7 characters per token over a sample (2000
training questions, seed 1: each question 4.8 at the least, 5.6 at the 1st percentile), while other text
falls back to bytes and short pieces: natural-language word problems 1.6 to 2.1, and plain-English
arithmetic that borrows the task's words ("Ann has 4 apples. She buys 3 more apples. How many apples
does Ann have now?", on which the model scores 0%) 4.5, other plain-English arithmetic 1.8 to 2.9. The
model cannot read such text, so training or evaluating it there measures nothing of the method.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TASK_CHARS_PER_TOKEN", "characters_per_token", "reads_as_task"]

#: Below this many characters per token over a sample, questions are not the tiny model's task: above
#: plain-English arithmetic (4.5), below a sample of the task (7.7) and all but its shortest questions.
TASK_CHARS_PER_TOKEN = 5.0


def characters_per_token(tokenizer, questions: Sequence[str]) -> float:
    """Σ characters / Σ tokens over ``questions`` (no special tokens)."""
    tokens = sum(len(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in questions)
    return sum(map(len, questions)) / max(tokens, 1)


def reads_as_task(tokenizer, questions: Sequence[str]) -> bool:
    """Whether ``questions`` compress as the tiny model's task does (:data:`TASK_CHARS_PER_TOKEN`)."""
    return characters_per_token(tokenizer, questions) >= TASK_CHARS_PER_TOKEN
