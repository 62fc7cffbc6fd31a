"""`corewarding train` that dies at its N-th file write, half-way through writing it (a crash test).

    python tests/fault_injected_run.py N [train arguments...]     # N < 0: never dies; prints the count

Every file a run writes goes through ``open`` (metrics, JSON), ``torch.save`` or safetensors' writer; the
N-th such write is carried out, its file cut to half its size, and the process ends at once with exit
code 137, as if killed while writing. Without a kill the number of writes is printed last.
"""

import builtins
import io
import os
import sys

import safetensors.torch
import torch
import transformers.modeling_utils

from corewarding.cli import app

KILL_AT = int(sys.argv[1])
writes = 0


def crash_after(path, start: int = 0) -> None:
    """Count a write to ``path`` (of the bytes from ``start`` on); at the chosen one, keep half of what it
    wrote and die."""
    global writes
    writes += 1
    if writes == KILL_AT:
        os.truncate(path, start + (os.path.getsize(path) - start) // 2)
        os._exit(137)


class _CountedFile:
    def __init__(self, handle, path):
        self._handle, self._path, self._start = handle, path, handle.tell()

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._handle.close()
        crash_after(self._path, self._start)


real_open = builtins.open


def counting_open(file, mode="r", *args, **kwargs):
    handle = real_open(file, mode, *args, **kwargs)
    if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax"):
        return _CountedFile(handle, file)
    return handle


real_save_file = safetensors.torch.save_file


def counting_save_file(tensors, filename, *args, **kwargs):
    real_save_file(tensors, filename, *args, **kwargs)
    crash_after(filename)


real_torch_save = torch.save


def counting_torch_save(obj, f, *args, **kwargs):
    real_torch_save(obj, f, *args, **kwargs)
    if isinstance(f, (str, os.PathLike)):
        crash_after(f)


builtins.open = io.open = counting_open  # pathlib writes through io.open
torch.save = counting_torch_save
safetensors.torch.save_file = counting_save_file
transformers.modeling_utils.safe_save_file = counting_save_file
torch.set_num_threads(1)
try:
    app(sys.argv[2:], standalone_mode=False)
finally:
    print(f"writes: {writes}")
