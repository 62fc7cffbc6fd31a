"""Reading a dataset's rows: files (JSON lines, JSON, Parquet, CSV), folders saved by ``datasets``, or
hub datasets, as plain dicts in file order; :mod:`corewarding.data.loaders` maps their columns onto
problems. A file that cannot be read is a one-line :class:`DatasetError`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from corewarding.core.errors import UserError

__all__ = ["DatasetError", "Row", "missing_dataset_file", "read_rows"]

Row = dict


class DatasetError(UserError):
    """A dataset that cannot be read as asked; the message is one line and names the file."""


def read_rows(
    location: str | os.PathLike, *, split: str | None = None, subset: str | None = None
) -> list[Row]:
    """The rows of a dataset as dicts, in file order.

    ``location`` is a file (``.jsonl``/``.ndjson``, ``.json`` holding a list or JSON lines,
    ``.parquet``, ``.csv``), a folder written by ``datasets.save_to_disk``, or a hub id for
    ``datasets.load_dataset`` (needs a network). ``split`` picks a split of a dataset with several;
    ``subset`` is a hub dataset's configuration name (GSM8K's ``"main"``).
    """
    path = Path(location)
    if path.is_dir():
        return _read_saved_dataset(path, split)
    if path.is_file():
        reader = _FILE_READERS.get(path.suffix.lower())
        if reader is None:
            raise DatasetError(
                f"unknown dataset format {path.suffix or '(no suffix)'!r} of {path}: expected one of "
                f"{', '.join(_FILE_READERS)} or a folder saved by datasets"
            )
        try:
            return reader(path)
        except DatasetError:
            raise
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as error:
            raise DatasetError(f"cannot read {path}: {_first_line(error)}") from None
    missing = missing_dataset_file(location)
    if missing is None:
        return _read_hub_dataset(str(location), split, subset)
    raise DatasetError(missing)


def missing_dataset_file(location: str | os.PathLike) -> str | None:
    """The one-line error for a dataset location that exists nowhere: not a file or folder here, and not
    something a hub id could be (a data file's suffix, or a path's shape). None when it exists or could be
    a hub id. Cheap: ``train`` asks before seconds of imports.

        >>> missing_dataset_file("no/such/questions.jsonl")
        'no such dataset file or folder: no/such/questions.jsonl'
        >>> missing_dataset_file("openai/gsm8k") is None
        True
    """
    path = Path(location)
    if path.exists() or (_HUB_ID.fullmatch(str(location)) and path.suffix.lower() not in _FILE_READERS):
        return None
    return f"no such dataset file or folder: {path}"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path} line {number} is not valid JSON: {error}") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path} line {number} is a JSON {type(row).__name__}, not an object")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[Row]:
    """A JSON list of objects, or JSON lines under a ``.json`` name (as the hub often ships them)."""
    with path.open(encoding="utf-8") as file:
        starts_with_list = file.read(4096).lstrip().startswith("[")
    if not starts_with_list:
        return _read_jsonl(path)
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not all(isinstance(row, dict) for row in rows):
        raise DatasetError(f"{path} is a JSON list whose items are not all objects")
    return rows


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow.parquet

    return pyarrow.parquet.read_table(path).to_pylist()


def _read_csv(path: Path) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


_FILE_READERS: dict[str, Callable[[Path], list[Row]]] = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".parquet": _read_parquet,
    ".csv": _read_csv,
}

# "gsm8k" or "openai/gsm8k": what could name a hub dataset when no local path of that name exists.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?")


def _read_saved_dataset(path: Path, split: str | None) -> list[Row]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as error:
        raise DatasetError(
            f"{path} is a folder but not a dataset saved by datasets: {_first_line(error)}"
        ) from None
    return _split_rows(dataset, split, str(path))


def _read_hub_dataset(name: str, split: str | None, subset: str | None) -> list[Row]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, subset, split=split)
    except (OSError, ValueError) as error:
        raise DatasetError(
            f"{name!r} is not a local file or folder, and loading it from the hub failed: "
            f"{_first_line(error)}"
        ) from None
    return _split_rows(dataset, split, name)


def _split_rows(dataset, split: str | None, label: str) -> list[Row]:
    """The rows of a ``Dataset``, or of one split of a ``DatasetDict`` (the only one, or ``split``)."""
    if not hasattr(dataset, "keys"):
        return dataset.to_list()
    splits = list(dataset.keys())
    if split is None and len(splits) == 1:
        split = splits[0]
    if split not in splits:
        raise DatasetError(f"{label} has splits {', '.join(splits)}: choose one with split=")
    return dataset[split].to_list()
