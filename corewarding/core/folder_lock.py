"""One run per folder: an exclusive OS lock on the folder for the life of the run.

Two runs started into the same folder used to interleave their files (every step twice in
``metrics.jsonl``, one run's checkpoints beside the other's). :func:`locked_folder` takes
``fcntl.flock`` on ``<folder>/.corewarding.lock`` (:data:`LOCK_FILE`) and writes its PID there; a second
run asking for the folder is refused at once with :class:`FolderInUseError`, naming that PID. The OS
drops a flock when its process ends, however it ends (``kill -9`` included), so a crashed run never
leaves a stale lock behind: the next run takes the lock from the file the dead one left.

POSIX only (``fcntl``), as the rest of the run machinery (TRL, DeepSpeed) is.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOCK_FILE", "FolderInUseError", "locked_folder"]

LOCK_FILE = ".corewarding.lock"


class FolderInUseError(OSError):
    """Another process holds the folder's lock (one line, for the CLI)."""


@contextmanager
def locked_folder(folder: str | os.PathLike, hint: str = "choose another output folder") -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if needed) inside the ``with`` block; yields the folder.

    Raises :class:`FolderInUseError` (``… is in use by another run (PID 1234): wait for it to end, or
    <hint>``) when another process holds it. On leaving, the lock file is removed, and so is the
    folder when this call created it and nothing else was written there.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    descriptor = _acquire(path, hint)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        # Unlink while still holding the lock: a process that opened the old file and then gets the lock
        # sees it is no longer the file at this path (_acquire checks) and takes a fresh one.
        path.unlink(missing_ok=True)
        os.close(descriptor)
        if created:
            try:
                folder.rmdir()
            except OSError:  # the run wrote something: the folder stays
                pass


def _acquire(path: Path, hint: str) -> int:
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            os.close(descriptor)
            raise FolderInUseError(
                f"{path.parent} is in use by another run ({f'PID {holder}' if holder else 'starting'}): "
                f"wait for it to end, or {hint}"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(descriptor).st_ino:
            return descriptor
        os.close(descriptor)  # the holder removed the file between our open and our lock: open it again
