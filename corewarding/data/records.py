"""The one record every dataset is normalised to."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """A question with its (hidden) reference answer and, for Co-rewarding-I, its rephrasing.

    Attributes:
        id: stable identifier, unique within a dataset (a question and its rephrasing share it).
        question: the question as the model sees it (no system prompt, no chat template).
        answer: the reference answer in canonical form (:func:`corewarding.core.answers.reference_answer`),
            or None when the dataset has none. Label-free training never reads it: it feeds
            diagnostics (label accuracy) and evaluation only.
        rephrasing: the same question in other words, same answer; None when there is none.
        rephrasing_valid: the rephrasing validator's verdict (None: not validated).
        source: where the problem comes from (a dataset name or file).
        meta: anything else worth keeping (difficulty level, subject, original index).
    """

    id: str
    question: str
    answer: str | None
    rephrasing: str | None = None
    rephrasing_valid: bool | None = None
    source: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)
