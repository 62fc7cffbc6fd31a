"""Replacing a file atomically: a reader, or a process killed half-way, sees the old file or the new one.

A run rewrites some of its files (``metrics.jsonl`` cut back on resume, ``config.yaml``,
``collapse.json``, a checkpoint's completion marker, ``rm_train.json``). Writing one in place and dying
half-way would leave half a file, and with it half a run's history. :func:`write_atomically` writes the
new content to a temporary file in the same folder (the same file system, so the rename is atomic),
flushes it to disk and renames it over the old name with :func:`os.replace`.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomically(folder / "state.json", '{"step": 2}')
    >>> (folder / "state.json").read_text(), sorted(p.name for p in folder.iterdir())
    ('{"step": 2}', ['state.json'])
    >>> import shutil; shutil.rmtree(folder)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: str | os.PathLike, content: str | bytes) -> None:
    """Replace ``path`` by ``content`` (text is written as UTF-8) in one rename.

    The temporary file is ``.<name>.<pid>.tmp`` beside it: one name per process, so two processes
    writing the same file (the ranks of one run) never write through, or rename, each other's temporary
    file — each rename is whole and the last one wins. A process killed while writing leaves its
    temporary file behind; the next successful write of the same name removes those of processes that
    are gone (a rerun after a kill leaves no stray file).
    """
    path = Path(path)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with open(staging, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        pid = leftover.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
