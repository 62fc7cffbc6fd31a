"""Crash-safe checkpoints: a checkpoint counts only once all of it is on disk.

TRL / transformers write a checkpoint folder file by file (model, optimizer, scheduler, RNG states,
trainer state) and then delete older checkpoints; the trainer adds the EMA teacher or Cooper's reward
model. A crash in between used to leave a folder that looked like a checkpoint but was not one, after
the good one before it had been deleted. Here:

1. older checkpoints are rotated out only *after* the new one is complete;
2. the last file written is ``checkpoint_complete.json`` (:data:`MARKER`), itself written to a
   temporary name, flushed and renamed, after every other file has been flushed to disk; it lists
   every file with its size, the step and the method;
3. ``--resume last`` takes the newest checkpoint with a marker, and any checkpoint to resume from is
   checked against its marker first (a missing or truncated file is named), so no crash point loses the
   previous good checkpoint, and an unfinished one is never resumed from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from corewarding.core.errors import UserError

__all__ = [
    "MARKER", "CheckpointError", "mark_complete", "is_complete", "verify", "complete_checkpoints",
    "remove_incomplete", "resolve_resume",
]

MARKER = "checkpoint_complete.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


class CheckpointError(UserError):
    """A checkpoint cannot be resumed from (one line, for the CLI)."""


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def mark_complete(folder: str | Path, step: int, method: str) -> None:
    """Flush every file of ``folder`` to disk, then write its marker atomically (the last write)."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        _fsync(path)
        files[path.relative_to(folder).as_posix()] = path.stat().st_size
    staging = folder / (MARKER + ".tmp")
    staging.write_text(json.dumps({"step": step, "method": method, "files": files}, indent=1))
    _fsync(staging)
    staging.replace(folder / MARKER)


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def verify(folder: str | Path, method: str) -> None:
    """Check a checkpoint against its marker: complete, of ``method``, every file there at its size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint folder {folder}")
    if not is_complete(folder):
        raise CheckpointError(
            f"{folder} is not a complete checkpoint (no {MARKER}: the run stopped while saving it, or it was "
            "not saved by corewarding); resume from an earlier one, or use --resume last"
        )
    try:
        record = json.loads((folder / MARKER).read_text())
        files, saved_by = dict(record["files"]), record["method"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{folder / MARKER} cannot be read: {error}") from None
    if saved_by != method:
        raise CheckpointError(f"{folder} was saved by a {saved_by} run; this run's method is {method}")
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing")
        if path.stat().st_size != size:
            raise CheckpointError(
                f"checkpoint file {path} is damaged: {path.stat().st_size:,} bytes, saved as {size:,}"
            )


def _step(folder: Path) -> int:
    return int(_CHECKPOINT.match(folder.name).group(1))


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoint folders of a run, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name) and is_complete(p)]
    return sorted(found, key=_step)


def remove_incomplete(output_dir: str | Path) -> list[Path]:
    """Delete checkpoint folders without a marker (what a crash while saving left); returns them."""
    root = Path(output_dir)
    removed = [p for p in root.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name) and not is_complete(p)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def resolve_resume(resume: str | None, output_dir: str | Path, method: str) -> str | None:
    """The checkpoint to resume from: None, ``"last"`` (the newest complete one in ``output_dir``) or a
    folder, checked by :func:`verify`."""
    if resume is None:
        return None
    if resume == "last":
        found = complete_checkpoints(output_dir)
        if not found:
            raise CheckpointError(
                f"--resume last: {output_dir} has no complete checkpoint yet (runs save one every "
                "save_steps steps and at the end)"
            )
        resume = str(found[-1])
    verify(resume, method)
    return resume
