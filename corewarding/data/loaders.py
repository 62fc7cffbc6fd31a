r"""Reading a dataset into :class:`~corewarding.data.records.Problem` records, with an explicit column map.

A dataset is a JSONL / JSON / parquet / CSV file, a folder written by ``datasets.save_to_disk``, or
(with a network) a hub id for ``datasets.load_dataset``. Which columns hold the question, the
reference answer and the id is a :class:`ColumnMap`; when none is given, it is taken from the first
:data:`PRESETS` entry whose columns are present:

============  ==========================================================  ===============================
preset        columns                                                     datasets
============  ==========================================================  ===============================
verl          ``prompt`` (chat messages), ``reward_model.ground_truth``,  Co-rewarding's MATH, DAPO, AMC
              ``extra_info.index``                                        parquet files
pairs         ``original_question``, ``rephrased_question``,              Co-rewarding's
              ``solution`` (the bare answer), ``idx``,                    ``train_pairs.parquet``; the
              ``rephrasing_valid`` when present                           pair datasets of
                                                                          ``corewarding rephrase``
svamp         ``Body`` + ``Question``, ``Answer``, ``ID``                 SVAMP
asdiv         ``body`` + ``question``, ``answer`` (``9 (apples)``)        ASDiv
qa            ``problem`` or ``question``; ``answer`` or ``solution``     GSM8K, MATH, MATH500, AIME,
                                                                          AMC, Minerva
============  ==========================================================  ===============================

GSM8K, MATH, AIME/AMC and Minerva share one preset because their columns cannot tell them apart
(GSM8K and MATH500 are both ``question`` + ``answer``) and need not: the reference answer always goes
through :func:`corewarding.core.answers.reference_answer`, which reads a GSM8K ``#### 18`` line, a MATH
``\boxed{}`` solution and a bare ``142.0`` alike. ``answer`` is preferred to ``solution`` because a
dataset with both (AIME24) keeps the bare answer in ``answer``.

Column names may be dotted paths into nested records (``reward_model.ground_truth``). A question
column may hold chat messages: the last user message is the question, the system prompt is dropped
(the project adds its own, :mod:`corewarding.core.prompts`). A question made of several columns (SVAMP's
``Body`` + ``Question``) is joined with a space, and a part that ends without punctuation gets a
period (SVAMP writes 358 of its 1,000 bodies without one).

Worked examples (on small files written here; the same calls read GSM8K's ``test.jsonl``, SVAMP,
and the Co-rewarding release's ``train.parquet`` + ``train_rewrite_Qwen3-32B.parquet``)::

    >>> import json, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> def write(name, *rows):
    ...     (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    ...     return folder / name
    >>> gsm8k = write("gsm8k.jsonl", {"question": "Janet's ducks lay 16 eggs ...",
    ...                               "answer": "... 9 * 2 = 18\n#### 18"})
    >>> problems = load_problems(gsm8k)   # preset "qa"
    >>> problems[0].answer, problems[0].id
    ('18', '0')
    >>> svamp = ColumnMap(question=("Body", "Question"), answer="Answer", id="ID")
    >>> rows = write("svamp.jsonl", {"Body": "There are 290 bananas in 2 groups",
    ...                              "Question": "How big is each group?", "Answer": 145.0, "ID": "chal-777"})
    >>> problem = load_problems(rows, svamp)[0]
    >>> problem.question, problem.answer   # the answer is written as 145.0
    ('There are 290 bananas in 2 groups. How big is each group?', '145')
    >>> def verl(question):
    ...     return {"prompt": [{"role": "user", "content": question}], "reward_model": {"ground_truth": "4"},
    ...             "extra_info": {"index": 0}}
    >>> original = write("train.jsonl", verl("What is 2+2?"))
    >>> rephrased = write("train_rewrite.jsonl", verl("Ann has 2 pens and gets 2 more. How many?"))
    >>> load_rephrased_pair(original, rephrased)[0].rephrasing
    'Ann has 2 pens and gets 2 more. How many?'
    >>> import shutil; shutil.rmtree(folder)

A question (or rephrasing) longer than :data:`MAX_QUESTION_CHARS` characters is refused: the
longest question of the shared MATH, DAPO, AMC, GSM8K and MATH500 files is under 4,400 characters, and
a 50 MB one made ``corewarding eval`` grow to 9.6 GB before it crashed. ``load_problems(...,
max_question_chars=None)`` lifts the limit. (Reference answers need no limit:
:func:`~corewarding.core.answers.reference_answer` is linear in the length of the cell.)

Every user mistake (a missing file, an unknown format, a missing column, an empty dataset, a question
over the length limit, two files that do not pair up) raises
:class:`~corewarding.data.rows.DatasetError` with a one-line message.
"""

from __future__ import annotations

import numbers
import os
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from corewarding.core.answers import reference_answer
from corewarding.core.errors import unknown_choice
from corewarding.core.prompts import question_text
from corewarding.data.records import Problem
from corewarding.data.rows import DatasetError, Row, read_rows

__all__ = [
    "MAX_QUESTION_CHARS",
    "PRESETS",
    "ColumnMap",
    "Preset",
    "detect_columns",
    "parse_columns",
    "QUESTION_COLUMNS",
    "load_problems",
    "load_rephrased_pair",
]

#: Longest question or rephrasing, in characters, that :func:`load_problems` accepts by default.
MAX_QUESTION_CHARS = 32_768


#: Column names taken as the question of a file that fits no preset and has no answer column.
QUESTION_COLUMNS = ("question", "problem", "prompt", "query")
_MAPPED_FIELDS = ("question", "answer", "id", "rephrasing", "rephrasing_valid")


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of a dataset make a :class:`Problem`.

    Attributes:
        question: the question column, or several columns joined into one question.
        answer: the reference answer column (a bare answer or a worked solution); None for a
            dataset without answers.
        id: the id column; None numbers the rows from 0.
        rephrasing: a column holding a rephrasing of the question (Co-rewarding-I), or None.
        rephrasing_valid: a column holding the rephrasing validator's verdict (true/false, or
            empty when not validated), or None.
        meta: columns copied into ``Problem.meta`` as they are.

    Every named column must exist. Names may be dotted paths into nested records::

        >>> ColumnMap(question="prompt", answer="reward_model.ground_truth").question
        ('prompt',)
    """

    question: str | tuple[str, ...]
    answer: str | None
    id: str | None = None
    rephrasing: str | None = None
    rephrasing_valid: str | None = None
    meta: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.question, str):
            object.__setattr__(self, "question", (self.question,))
        object.__setattr__(self, "meta", tuple(self.meta))
        if not self.question:
            raise DatasetError("a ColumnMap needs at least one question column")

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column this map reads."""
        named = (*self.question, self.answer, self.id, self.rephrasing, self.rephrasing_valid, *self.meta)
        return tuple(name for name in named if name is not None)


@dataclass(frozen=True)
class Preset:
    """A column layout shared by a family of datasets, with alternatives for differently named columns.

    The first alternative present is used. Question and answer are required; the id, rephrasing,
    rephrasing verdict and meta columns are used when present.
    """

    name: str
    question: tuple[tuple[str, ...], ...]
    answer: tuple[str, ...]
    id: tuple[str, ...] = ()
    rephrasing: tuple[str, ...] = ()
    rephrasing_valid: tuple[str, ...] = ()
    meta: tuple[str, ...] = ()

    def resolve(self, columns: Collection[str]) -> ColumnMap | None:
        """The column map for a dataset with these columns, or None when a required column is absent."""
        question = next((q for q in self.question if all(c in columns for c in q)), None)
        answer = _first_present(self.answer, columns)
        if question is None or answer is None:
            return None
        return ColumnMap(
            question=question,
            answer=answer,
            id=_first_present(self.id, columns),
            rephrasing=_first_present(self.rephrasing, columns),
            rephrasing_valid=_first_present(self.rephrasing_valid, columns),
            meta=tuple(c for c in self.meta if c in columns),
        )

    def describe(self) -> str:
        """What the preset needs, for error messages: ``question from 'problem' or 'question', …``."""
        questions = " or ".join(" + ".join(repr(c) for c in q) for q in self.question)
        answers = " or ".join(repr(c) for c in self.answer)
        return f"question from {questions}, answer from {answers}"


#: Presets in detection order: the more specific layouts come before the generic ``qa``.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "verl",
            question=(("prompt",),),
            answer=("reward_model.ground_truth",),
            id=("extra_info.index",),
            meta=("level", "type", "data_source"),
        ),
        Preset(
            "pairs",
            question=(("original_question",),),
            answer=("solution",),
            id=("idx",),
            rephrasing=("rephrased_question",),
            rephrasing_valid=("rephrasing_valid",),
            meta=("level", "type"),
        ),
        Preset(
            "svamp", question=(("Body", "Question"),), answer=("Answer",), id=("ID", "idx"), meta=("Type",)
        ),
        Preset(
            "asdiv",
            question=(("body", "question"),),
            answer=("answer",),
            id=("idx",),
            meta=("solution_type",),
        ),
        Preset(
            "qa",
            question=(("problem",), ("question",)),
            answer=("answer", "solution"),
            id=("id", "idx", "unique_id"),
            meta=("level", "type", "subject"),
        ),
    )
}


def detect_columns(columns: Collection[str]) -> ColumnMap:
    """The column map of the first preset that fits these columns.

    >>> detect_columns(["Body", "Question", "Answer", "ID", "Equation"])  # doctest: +NORMALIZE_WHITESPACE
    ColumnMap(question=('Body', 'Question'), answer='Answer', id='ID', rephrasing=None, rephrasing_valid=None,
              meta=())
    """
    for preset in PRESETS.values():
        column_map = preset.resolve(columns)
        if column_map is not None:
            return column_map
    question = _first_present(QUESTION_COLUMNS, columns)
    if question is not None:  # a file of questions without answers: what label-free training is for
        return ColumnMap(question=question, answer=None)
    raise DatasetError(
        f"no preset ({', '.join(PRESETS)}) fits the columns {', '.join(columns)}: name them with "
        "question=COL[,answer=COL] (--dataset-columns, or dataset_columns in a recipe)"
    )


def parse_columns(spec: ColumnMap | str | None) -> ColumnMap | str | None:
    """A column spec as commands and configs write it: None (detect), a preset name, or
    ``question=COL[,answer=COL][,id=COL][,rephrasing=COL][,rephrasing_valid=COL]`` (``question=A+B``
    joins two columns).

    >>> parse_columns("question=problem,answer=solution")
    ColumnMap(question=('problem',), answer='solution', id=None, rephrasing=None, rephrasing_valid=None, meta=())
    """
    if spec is None or isinstance(spec, ColumnMap) or "=" not in spec:
        return spec
    named = {}
    for part in spec.split(","):
        name, _, column = (text.strip() for text in part.partition("="))
        if name not in _MAPPED_FIELDS or not column:
            raise DatasetError(
                f"columns: cannot read {part.strip()!r}; expected field=column with a field among "
                f"{', '.join(_MAPPED_FIELDS)}"
            )
        named[name] = tuple(column.split("+")) if name == "question" else column
    if "question" not in named:
        raise DatasetError(f"columns {spec!r} name no question column (question=COL)")
    return ColumnMap(**{"answer": None, **named})


def load_problems(
    location: str | os.PathLike,
    columns: ColumnMap | str | None = None,
    *,
    split: str | None = None,
    subset: str | None = None,
    source: str | None = None,
    max_question_chars: int | None = MAX_QUESTION_CHARS,
) -> list[Problem]:
    """Read a dataset (see :func:`read_rows`) into problems.

    Args:
        location: the file, folder or hub id.
        columns: a :class:`ColumnMap`, a preset name from :data:`PRESETS`, a mapping string
            (:func:`parse_columns`), or None to detect a preset (or a lone question column) from the
            columns present.
        split, subset: as in :func:`read_rows`.
        source: ``Problem.source``; defaults to the file's folder and stem, e.g. ``benchmarks/gsm8k``.
        max_question_chars: longest question or rephrasing accepted, in characters (None: no limit).

    Reference answers are canonicalised by :func:`corewarding.core.answers.reference_answer`; a row whose
    answer does not parse keeps ``answer=None``. A row without a question, a question or rephrasing
    longer than ``max_question_chars``, or two rows with the same id, is an error.
    """
    rows = read_rows(location, split=split, subset=subset)
    label = str(location)
    if not rows:
        raise DatasetError(f"{label} has no rows")
    present = _column_names(rows)
    column_map = _column_map(columns, present, label)
    missing = [name for name in column_map.columns if name not in present]
    if missing:
        raise DatasetError(f"{label} has no column {missing[0]!r}; columns present: {', '.join(present)}")
    source = source if source is not None else _source_label(location)
    problems = [_problem(row, index, column_map, source, label) for index, row in enumerate(rows)]
    if max_question_chars is not None:
        _check_lengths(problems, max_question_chars, label)
    _check_unique_ids(problems, column_map, label)
    return problems


def load_rephrased_pair(
    original: str | os.PathLike,
    rephrased: str | os.PathLike,
    columns: ColumnMap | str | None = None,
    *,
    split: str | None = None,
    source: str | None = None,
    max_question_chars: int | None = MAX_QUESTION_CHARS,
) -> list[Problem]:
    """Pair two row-aligned files, row i of ``rephrased`` being the rephrasing of row i of ``original``.

    This is how Co-rewarding releases its rephrasings (``train.parquet`` +
    ``train_rewrite_Qwen3-32B.parquet``, the same for DAPO and AMC). Both files are read with the same
    column map and question length limit; the pairing is refused unless they have as many rows and
    every row has the same id and the same reference answer in both. The rephrasings are not
    validated here (the released ones include placeholder echoes): ``rephrasing_valid`` stays None.
    """
    options = {"split": split, "source": source, "max_question_chars": max_question_chars}
    originals = load_problems(original, columns, **options)
    rephrasings = load_problems(rephrased, columns, **options)
    not_aligned = f"{original} and {rephrased} are not row-aligned"
    if len(originals) != len(rephrasings):
        raise DatasetError(f"{not_aligned}: {len(originals)} rows vs {len(rephrasings)}")
    differ = [
        i for i, (a, b) in enumerate(zip(originals, rephrasings)) if (a.id, a.answer) != (b.id, b.answer)
    ]
    if differ:
        a, b = originals[differ[0]], rephrasings[differ[0]]
        raise DatasetError(
            f"{not_aligned}: {len(differ)} of {len(originals)} rows differ in id or reference answer, "
            f"first row {differ[0]} (id {a.id!r} vs {b.id!r}, answer {a.answer!r} vs {b.answer!r})"
        )
    return [replace(a, rephrasing=b.question) for a, b in zip(originals, rephrasings)]


def _first_present(candidates: Sequence[str], columns: Collection[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def _column_map(columns: ColumnMap | str | None, present: list[str], label: str) -> ColumnMap:
    columns = parse_columns(columns)
    if isinstance(columns, ColumnMap):
        return columns
    if columns is None:
        try:
            return detect_columns(present)
        except DatasetError as error:
            raise DatasetError(f"{label}: {error}") from None
    preset = PRESETS.get(columns)
    if preset is None:
        raise unknown_choice("preset", columns, PRESETS, DatasetError)
    column_map = preset.resolve(present)
    if column_map is None:
        raise DatasetError(
            f"{label} does not fit preset {columns!r} ({preset.describe()}); "
            f"columns present: {', '.join(present)}"
        )
    return column_map


def _problem(row: Row, index: int, columns: ColumnMap, source: str, label: str) -> Problem:
    cell = _CellReader(row, index, label)
    parts = [cell.text(name) for name in columns.question]
    if not all(parts):
        raise DatasetError(f"{label}: row {index} has no question in {' + '.join(columns.question)}")
    rephrasing = cell.text(columns.rephrasing) if columns.rephrasing else None
    return Problem(
        id=str(_lookup(row, columns.id)) if columns.id else str(index),
        question=_join_sentences(parts),
        answer=reference_answer(cell.answer(columns.answer)) if columns.answer else None,
        rephrasing=rephrasing or None,
        rephrasing_valid=_verdict(row, index, columns.rephrasing_valid, label),
        source=source,
        meta={name: _lookup(row, name) for name in columns.meta},
    )


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _verdict(row: Row, index: int, column: str | None, label: str) -> bool | None:
    """A validator verdict cell: a boolean, 0/1, or its text (CSV); empty or null for "not validated"."""
    if column is None:
        return None
    value = _lookup(row, column)
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if not text:
        return None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise DatasetError(f"{label}: row {index} has {value!r} in column {column!r}, expected true or false")


def _check_lengths(problems: list[Problem], limit: int, label: str) -> None:
    for index, problem in enumerate(problems):
        for name, text in (("question", problem.question), ("rephrasing", problem.rephrasing)):
            if text is not None and len(text) > limit:
                raise DatasetError(
                    f"{label}: row {index} has a {name} of {len(text):,} characters, over the limit of "
                    f"{limit:,} (max_question_chars)"
                )


def _check_unique_ids(problems: list[Problem], columns: ColumnMap, label: str) -> None:
    id_counts = Counter(problem.id for problem in problems)
    duplicate, count = id_counts.most_common(1)[0]
    if count > 1:
        raise DatasetError(
            f"{label}: id {duplicate!r} appears {count} times in column {columns.id!r}; "
            f"pick a unique id column or id=None to number the rows"
        )


def _lookup(row: Row, name: str):
    """``row[name]``, or a walk down nested dicts for a dotted name; None where absent."""
    if name in row:
        return row[name]
    value = row
    for key in name.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _column_names(rows: list[Row]) -> list[str]:
    """Every column of the rows, nested records flattened to dotted names, in order of appearance."""
    names: dict[str, None] = {}

    def visit(record: dict, prefix: str) -> None:
        for key, value in record.items():
            names[prefix + key] = None
            if isinstance(value, dict):
                visit(value, f"{prefix}{key}.")

    for row in rows:
        visit(row, "")
    return list(names)


@dataclass(frozen=True)
class _CellReader:
    """The cells of one row, type-checked: a question is text or chat messages, an answer text or a
    number. Anything else (an int question, a struct, bytes, a list answer) would otherwise become its
    Python ``str()`` and train silently on ``"{'a': 1}"``; it is refused naming the column, the type and
    the row."""

    row: Row
    index: int
    label: str

    def text(self, column: str) -> str | None:
        """A question cell as text: a string, or the last user message of a list of chat messages."""
        value = _lookup(self.row, column)
        if value is None or isinstance(value, str):
            return None if value is None else value.strip()
        if isinstance(value, list) and all(isinstance(m, dict) for m in value):
            question = question_text(value)
            if question is None or isinstance(question, str):
                return None if question is None else question.strip()
        raise self._refuse(column, value, "a question must be text or chat messages")

    def answer(self, column: str):
        value = _lookup(self.row, column)
        if value is None or isinstance(value, str) or _is_number(value):
            return value
        raise self._refuse(column, value, "a reference answer must be text or a number")

    def _refuse(self, column: str, value, rule: str) -> DatasetError:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return DatasetError(
            f"{self.label}: column {column!r} holds {type(value).__name__}, not text, in row {self.index} "
            f"({shown}); {rule}"
        )


def _is_number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, (bool, complex))


def _join_sentences(parts: list[str]) -> str:
    """``["He has 3 apples", "How many?"]`` → ``"He has 3 apples. How many?"``; punctuation stays."""
    *leading, last = parts
    return " ".join([part + "." if part[-1].isalnum() else part for part in leading] + [last])


def _source_label(location: str | os.PathLike) -> str:
    path = Path(location)
    if not path.exists():
        return str(location)
    name = path.name if path.is_dir() else path.stem
    return f"{path.parent.name}/{name}" if path.parent.name else name
