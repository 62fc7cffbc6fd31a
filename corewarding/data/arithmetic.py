"""The real-model task: two-number addition asked in plain English, in several natural wordings.

A small instruction-tuned model (SmolLM2-135M-Instruct) never writes ``\\boxed{}`` and rambles after an
open question, but asked for one line it answers tersely (``23 + 37 = 60``), about one time in three
right: room to learn, on a laptop CPU. So every question ends with :data:`INSTRUCTION`, and its answer is
read as the completion's last number (``answer_extraction: last_number``).

A problem is an ordered pair (a, b), both in :data:`OPERAND_RANGE`; its answer is a + b. Each problem is
asked as a + b in one of :data:`WORDINGS` and rephrased as b + a in another, both drawn by the seeded
generator, so Co-rewarding-I and -III have two real views of one question::

    >>> p = arithmetic_problems(1, "train", seed=0)[0]
    >>> p.question
    'What is 50 + 34? Reply with one line: #### followed by the number.'
    >>> p.rephrasing, p.answer
    ('What is 34 plus 50? Reply with one line: #### followed by the number.', '84')

The rephrasing swaps the operands so that the two views share nothing a model can copy. With both in
the same order, Co-rewarding-I taught SmolLM2 to echo the question (``23 + 20 = ?``): the last number,
the second operand, was the same in both views, and their agreement paid it (seed 1 of the study: reward
0.97, held-out greedy 0%; docs/results.md, "A real model"). Swapped, an echo ends on b in one view and
on a in the other: only the sum agrees.

Splits are disjoint by construction, as the synthetic task's: :func:`split_of` puts a pair in ``test``
when a hash of the unordered pair {a, b} falls below :data:`TEST_FRACTION`, so neither a question nor
its operands swapped (b + a) are in both splits, whatever the seed or count.
"""

from __future__ import annotations

import hashlib
import random

from corewarding.core.errors import UserError
from corewarding.data.records import Problem

__all__ = ["ARITHMETIC", "INSTRUCTION", "OPERAND_RANGE", "TEST_FRACTION", "WORDINGS", "arithmetic_problems",
           "split_of"]

#: The task's name where a dataset is expected (``--dataset arithmetic``).
ARITHMETIC = "arithmetic"
#: The ways a question is asked; ``{a}`` and ``{b}`` are its numbers.
WORDINGS = (
    "What is {a} + {b}?",
    "What is {a} plus {b}?",
    "Compute {a} + {b}.",
    "{a} + {b} = ?",
    "Add {a} and {b}.",
)
#: What every wording ends with: the ask for one terse line, which SmolLM2-135M follows.
INSTRUCTION = "Reply with one line: #### followed by the number."
#: Inclusive range of both numbers: two digits, sums of two digits or three.
OPERAND_RANGE = (10, 50)
#: Share of the unordered pairs in the test split.
TEST_FRACTION = 0.2
SPLITS = ("train", "test")


def split_of(a: int, b: int) -> str:
    """``test`` or ``train``: from a hash of the unordered pair, so ``a + b`` and ``b + a`` share a split."""
    low, high = sorted((a, b))
    digest = hashlib.sha256(f"{ARITHMETIC}:{low}+{high}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < TEST_FRACTION else "train"


def arithmetic_problems(count: int | None, split: str, seed: int = 0) -> list[Problem]:
    """``count`` distinct problems of ``split`` (None: all of them), drawn by ``seed``, each worded in one
    of :data:`WORDINGS` and rephrased, operands swapped, in another; a :class:`UserError` when the split
    has fewer."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    low, high = OPERAND_RANGE
    pairs = [(a, b) for a in range(low, high + 1) for b in range(low, high + 1) if split_of(a, b) == split]
    count = len(pairs) if count is None else count
    if count > len(pairs):
        raise UserError(
            f"the {ARITHMETIC} task's {split} split has {len(pairs)} questions, {count} asked for"
        )
    rng = random.Random(f"{ARITHMETIC}:{split}:{seed}")
    problems = []
    for a, b in rng.sample(pairs, count):
        asked, rephrased = rng.sample(range(len(WORDINGS)), 2)
        problems.append(Problem(
            id=f"{ARITHMETIC}-{a}+{b}",
            question=f"{WORDINGS[asked].format(a=a, b=b)} {INSTRUCTION}",
            answer=str(a + b),
            rephrasing=f"{WORDINGS[rephrased].format(a=b, b=a)} {INSTRUCTION}",
            rephrasing_valid=True,
            source=ARITHMETIC,
            meta={"wordings": (asked, rephrased)},
        ))
    return problems
