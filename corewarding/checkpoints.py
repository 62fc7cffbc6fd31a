"""Crash-safe checkpoints: a checkpoint counts only once all of it is on disk, intact, and safe to load.

TRL / transformers write a checkpoint folder file by file (model, optimizer, scheduler, RNG states,
trainer state) and then delete older checkpoints; the trainer adds the EMA teacher or Cooper's reward
model, and ``rm train`` writes its own. A crash in between used to leave a folder that looked like a
checkpoint but was not one, after the good one before it had been deleted. Here, for ``train`` and
``rm train`` alike (:func:`saving`):

1. a checkpoint is written inside ``with saving(folder, step, method):``; any failure while saving
   (a full disk: ``OSError``, safetensors' ``SafetensorError``, torch's ``RuntimeError`` from its zip
   writer) removes what was written, giving the space back, and is raised as one
   :class:`CheckpointSaveError`; older checkpoints are rotated out only *after* the new one is complete;
2. the last file written is ``checkpoint_complete.json`` (:data:`MARKER`), replaced atomically after
   every other file has been flushed to disk; it lists every file with its size and CRC-32 (a fast
   checksum: it is there to catch damage, not forgery), the step and the method;
3. ``--resume last`` takes the newest checkpoint with a marker, and any checkpoint to resume from is
   checked first (:func:`verify`): every file there, at its size, with its checksum, and every torch
   pickle in it loadable with ``weights_only=True`` (tensors and plain values, and in DeepSpeed's
   optimizer states the few classes DeepSpeed itself pickles: a planted pickle that would run code is
   named and never loaded). A damaged newest checkpoint is named with the older
   complete one that passes the check.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError

from corewarding.core.atomic_files import write_atomically
from corewarding.core.errors import UserError

__all__ = [
    "MARKER", "SAVE_ERRORS", "CheckpointError", "CheckpointSaveError", "OtherMethodCheckpoint",
    "saving", "removed_on_failure", "mark_complete",
    "is_complete", "verify", "complete_checkpoints", "last_intact", "remove_incomplete", "resolve_resume",
]

MARKER = "checkpoint_complete.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
#: What saving a checkpoint raises when the disk is full or gone (torch reports a failed write of its zip
#: archive as a RuntimeError, safetensors as a SafetensorError).
SAVE_ERRORS = (OSError, SafetensorError, RuntimeError)
#: Files of a checkpoint that torch unpickles on resume (optimizer, scheduler, RNG states).
_PICKLED = (".pt", ".pth")
_CHUNK = 1 << 22


class CheckpointError(UserError):
    """A checkpoint cannot be resumed from (one line, for the CLI)."""


class OtherMethodCheckpoint(CheckpointError):
    """A sound checkpoint of another method's run: not damage, a folder of another run."""


class CheckpointSaveError(OSError):
    """Saving a checkpoint failed; what was written of it is removed (one line, for the CLI)."""


@contextmanager
def saving(folder: str | Path, step: int, method: str, write: bool = True) -> Iterator[Path]:
    """Write a checkpoint into ``folder`` inside the ``with`` block; then mark it complete.

    A folder of that name left from before (a crash's leftover, or a checkpoint of another history at
    this step) is removed first; a failure while saving is :func:`removed_on_failure`. Processes that
    do not write (``write=False``, in a multi-process run) only run the block.
    """
    folder = Path(folder)
    if not write:
        yield folder
        return
    if folder.exists():
        shutil.rmtree(folder)
    with removed_on_failure(folder):
        yield folder
        mark_complete(folder, step, method)


@contextmanager
def removed_on_failure(folder: str | Path) -> Iterator[Path]:
    """Inside the ``with`` block files are saved into ``folder``; on any of :data:`SAVE_ERRORS` the
    folder is removed (the space given back) and :class:`CheckpointSaveError` raised, naming the last
    complete checkpoint beside it."""
    folder = Path(folder)
    try:
        yield folder
    except SAVE_ERRORS as error:
        shutil.rmtree(folder, ignore_errors=True)
        kept = complete_checkpoints(folder.parent)
        last = f"the last complete checkpoint is {kept[-1].name}" if kept else "no checkpoint is complete yet"
        # torch and safetensors word a full disk as an internal error: say what it most likely is.
        reason = _first_line(error) if isinstance(error, OSError) else f"{_first_line(error)}; a full disk?"
        raise CheckpointSaveError(
            f"saving {folder} failed ({reason}); what was written of it is removed, {last}"
        ) from error


@contextmanager
def published_into(
    output_dir: str | Path, main: bool = True, wait: Callable[[], None] | None = None
) -> Iterator[Path]:
    """A staging folder ``<output_dir>/.final-model`` to save a final model into; when the block ends, each of
    its files and folders (a LoRA run's teacher adapter, ``ref/``) replaces its namesake in ``output_dir`` in
    one rename, so nothing there is ever half-written (a failed save is removed as in
    :func:`removed_on_failure`). A folder cannot be renamed onto a full one: the old one is moved aside
    first (absent for a moment, never mixed).

    In a multi-process run every process enters it and may write its part (FSDP's and DeepSpeed's shards):
    ``main`` says which one clears and publishes, and ``wait`` (a barrier of every process) is called once
    the folder is cleared and again once each process has written, so that the main process neither clears
    nor moves the folder while another still writes into it.
    """
    output_dir = Path(output_dir)
    staging = output_dir / ".final-model"
    wait = wait or (lambda: None)
    if main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    wait()
    if not main:
        yield staging
        wait()
        return
    with removed_on_failure(staging):
        yield staging
        wait()
    for path in staging.iterdir():
        target = output_dir / path.name
        if path.is_dir() and target.is_dir():
            replaced = output_dir / f".replaced-{path.name}"
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(target, replaced)
            os.replace(path, target)
            shutil.rmtree(replaced)
        else:
            os.replace(path, target)
    staging.rmdir()


def _first_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _checksum(path: Path) -> tuple[int, str]:
    """Size and CRC-32 of a file, flushed to disk on the way (one read)."""
    crc = 0
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            crc = zlib.crc32(chunk, crc)
        os.fsync(file.fileno())
    return path.stat().st_size, f"{crc:08x}"


def mark_complete(folder: str | Path, step: int, method: str) -> None:
    """Flush every file of ``folder`` to disk, then write its marker atomically (the last write)."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        size, crc = _checksum(path)
        files[path.relative_to(folder).as_posix()] = {"size": size, "crc32": crc}
    write_atomically(folder / MARKER, json.dumps({"step": step, "method": method, "files": files}, indent=1))


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def verify(folder: str | Path, method: str) -> None:
    """Check a checkpoint against its marker: complete, of ``method``, every file there at its size and
    checksum, and every torch pickle loadable without running code."""
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
        raise OtherMethodCheckpoint(
            f"{folder} was saved by a {saved_by} run and this run's method is {method}: resume it with "
            f"--method {saved_by}, or choose another --output_dir"
        )
    for name, saved in files.items():
        # Markers written before checksums were recorded hold the size alone.
        expected = saved if isinstance(saved, dict) else {"size": saved}
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing")
        if path.stat().st_size != expected["size"]:
            raise CheckpointError(
                f"checkpoint file {path} is damaged: {path.stat().st_size:,} bytes, saved as "
                f"{expected['size']:,}"
            )
        if "crc32" in expected and _checksum(path)[1] != expected["crc32"]:
            raise CheckpointError(
                f"checkpoint file {path} is damaged: its content changed since it was saved (checksum)"
            )
        if path.suffix in _PICKLED:
            _check_loads_safely(path)


#: The classes DeepSpeed pickles into its own optimizer states (``global_stepN/*optim_states.pt``: ZeRO's
#: stage, the loss scaler, ZeRO-2's record of where each parameter lies in its flat partition: two ints),
#: each loaded by name for that file's check only, besides tensors and plain values. Nothing else of
#: DeepSpeed, and nothing broader, is allowed.
DEEPSPEED_STATE_CLASSES = (
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


def _check_loads_safely(path: Path) -> None:
    """Refuse a torch pickle that ``weights_only=True`` would not load (one that names code to run, or
    not a torch file at all) without running it; the tensors are memory-mapped, not read. A class of
    :data:`DEEPSPEED_STATE_CLASSES` that the file names is allowed for this load."""
    from transformers.trainer_pt_utils import safe_globals  # numpy's RNG state, as transformers loads it

    allowed: list[type] = []
    while True:
        try:
            with safe_globals(), torch.serialization.safe_globals(allowed):
                torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
            return
        except pickle.UnpicklingError as error:
            names = re.findall(r"GLOBAL (\S+)", str(error))
            if names and names[0] in DEEPSPEED_STATE_CLASSES and not _named(allowed, names[0]):
                allowed.append(_deepspeed_class(path, names[0]))
                continue
            why = "it holds more than tensors and numbers"
            if names:
                why = f"loading it would run code ({names[0]})"
            raise CheckpointError(
                f"checkpoint file {path} is refused: {why}; it was not saved by corewarding"
            ) from None
        except (RuntimeError, EOFError, ValueError) as error:
            raise CheckpointError(
                f"checkpoint file {path} is not a torch file: {_first_line(error)}"
            ) from None


def _named(classes: list[type], name: str) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" == name for c in classes)


def _deepspeed_class(path: Path, name: str) -> type:
    """The class ``name`` (one of :data:`DEEPSPEED_STATE_CLASSES`) from the installed DeepSpeed."""
    module, _, qualname = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        raise CheckpointError(
            f"checkpoint file {path} is DeepSpeed's optimizer state ({name}): install deepspeed to resume it"
        ) from None
    if f"{found.__module__}.{found.__qualname__}" != name:
        raise CheckpointError(f"checkpoint file {path} names {name}, which this DeepSpeed defines elsewhere")
    return found


def _step(folder: Path) -> int:
    return int(_CHECKPOINT.match(folder.name).group(1))


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoint folders of a run, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name) and is_complete(p)]
    return sorted(found, key=_step)


def last_intact(output_dir: str | Path, method: str, use_older: str) -> Path | None:
    """The newest complete checkpoint of ``output_dir`` checked by :func:`verify` (None: there is none).

    When it fails the check, :class:`CheckpointError` says why and names the newest older checkpoint
    that passes, with ``use_older`` (formatted with ``older``, that folder) saying how to use it.
    """
    found = complete_checkpoints(output_dir)
    if not found:
        return None
    try:
        verify(found[-1], method)
    except OtherMethodCheckpoint:
        raise  # another run's folder, not damage: its older checkpoints are that run's too
    except CheckpointError as damage:
        for older in reversed(found[:-1]):
            try:
                verify(older, method)
            except CheckpointError:
                continue
            raise CheckpointError(
                f"{damage}; the older checkpoint {older.name} is intact: {use_older.format(older=older)}"
            ) from None
        raise CheckpointError(f"{damage}; no older complete checkpoint is intact") from None
    return found[-1]


def remove_incomplete(output_dir: str | Path) -> list[Path]:
    """Delete checkpoint folders without a marker (what a crash while saving left); returns them."""
    root = Path(output_dir)
    removed = [p for p in root.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name) and not is_complete(p)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def resolve_resume(resume: str | None, output_dir: str | Path, method: str) -> str | None:
    """The checkpoint to resume from: None, ``"last"`` (the newest complete one in ``output_dir``,
    :func:`last_intact`) or a folder, checked by :func:`verify`."""
    if resume is None:
        return None
    if resume == "last":
        found = last_intact(output_dir, method, use_older="resume from it with --resume {older}")
        if found is None:
            raise CheckpointError(
                f"--resume last: {output_dir} has no complete checkpoint yet (runs save one every "
                "save_steps steps and at the end)"
            )
        return str(found)
    verify(resume, method)
    return resume
