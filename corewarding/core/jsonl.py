"""Reading append-only JSONL files that a killed process or a bad disk may have damaged.

The project's resumable files (the rephrasing cache, labelled completions) are appended to line by
line. A process killed in the middle of a write leaves a last line without its newline, possibly cut
inside a multibyte UTF-8 character; a bad disk or an editor may leave a junk byte anywhere.
:func:`read_jsonl` reads such a file in binary, so one such line costs that line only: it is
skipped and described (:class:`SkippedLine`), and the caller decides whether that is acceptable.

Worked example::

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "rows.jsonl"
    >>> _ = path.write_bytes(b'{"a": 1}\\n\\xff\\n{"a": 2}\\n{"a": "\\xe6\\x97')
    >>> records, skipped = read_jsonl(path)
    >>> records
    [{'a': 1}, {'a': 2}]
    >>> [(line.number, line.last) for line in skipped]
    [(2, False), (4, True)]
    >>> describe_skipped(path, skipped).endswith("(line 2: not UTF-8; line 4: not UTF-8, cut off)")
    True
    >>> unterminated(path)
    True
    >>> folder.cleanup()
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["SkippedLine", "describe_skipped", "read_jsonl", "unterminated"]

T = TypeVar("T")


@dataclass(frozen=True)
class SkippedLine:
    """A line :func:`read_jsonl` could not read.

    Attributes:
        number: the line's number, from 1.
        reason: why: ``not UTF-8``, ``not JSON``, or what ``parse`` said.
        last: the file's last line, without a newline: a write cut off by a killed process.
    """

    number: int
    reason: str
    last: bool


def read_jsonl(
    path: str | os.PathLike, parse: Callable[[Any], T] = lambda value: value
) -> tuple[list[T], list[SkippedLine]]:
    """The JSON value of each line of ``path`` through ``parse``, and the lines skipped.

    A line is skipped when it is not UTF-8, not JSON, or ``parse`` raises ``ValueError`` or
    ``TypeError`` on its value (e.g. ``lambda row: Record(**row)`` on a row that is not a record).
    Blank lines are ignored. Lines end at ``\\n`` only (JSON text escapes every other line break).
    A path ending in ``.gz`` is read through gzip (the stored runs of ``docs/results`` are kept so).
    """
    records: list[T] = []
    skipped: list[SkippedLine] = []
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            last = not raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped.append(SkippedLine(number, "not UTF-8", last))
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError:
                skipped.append(SkippedLine(number, "not JSON", last))
                continue
            try:
                records.append(parse(value))
            except (ValueError, TypeError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                skipped.append(SkippedLine(number, reason, last))
    return records, skipped


def describe_skipped(path: str | os.PathLike, skipped: list[SkippedLine], shown: int = 3) -> str:
    """One line naming the file, how many lines were skipped, and the first ``shown`` of them with why."""
    details = "; ".join(
        f"line {line.number}: {line.reason}{', cut off' if line.last else ''}" for line in skipped[:shown]
    )
    more = f"; {len(skipped) - shown:,} more" if len(skipped) > shown else ""
    noun = "line" if len(skipped) == 1 else "lines"
    return f"skipped {len(skipped):,} unreadable {noun} of {path} ({details}{more})"


def unterminated(path: str | os.PathLike) -> bool:
    """The file exists, is not empty and does not end in a newline: its last write was cut off, and
    the next append must start on a new line."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) != b"\n"
