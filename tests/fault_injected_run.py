"""A `corewarding` command that dies, or finds the disk full, at its N-th file write (a crash test).

    python tests/fault_injected_run.py N [command arguments...]             # N < 0: never dies
    python tests/fault_injected_run.py fail:N:KIND [command arguments...]   # oserror, safetensors, torch
    python tests/fault_injected_run.py fsize:BYTES [command arguments...]   # no file grows past BYTES
    python tests/fault_injected_run.py SIGTERM:N [command arguments...]     # a signal at the N-th write

Every file a run writes goes through ``open`` (metrics, JSON), ``torch.save`` or safetensors' writer.
``N``: the N-th such write is carried out, its file cut to half its size, and the process ends at once
with exit code 137, as if killed while writing. ``fail:N:KIND``: the N-th write is cut to half and
raises what that writer raises on a full disk (``OSError`` ENOSPC, safetensors' ``SafetensorError``,
torch's ``RuntimeError``). ``fsize:BYTES``: a real limit (``RLIMIT_FSIZE``): a write past it fails in
the kernel as on a full disk, through every writer. ``SIGTERM:N`` (any signal's name): once the N-th
write is done, intact, the process sends itself that signal, as a scheduler would. Unless killed, the
script ends by printing every write (``write <i>: <path>``) and then ``writes: <count>``.
"""

import builtins
import errno
import io
import os
import resource
import signal
import sys

import safetensors.torch
import torch
import transformers.modeling_utils
from safetensors import SafetensorError

from corewarding.cli import app

SPEC = sys.argv[1]
SIGNAL = None
FULL_DISK = {  # what each writer raised on a full tmpfs
    "oserror": lambda path: OSError(errno.ENOSPC, "No space left on device", str(path)),
    "safetensors": lambda path: SafetensorError("Error while serializing: I/O error: No space left"),
    "torch": lambda path: RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 5"),
}
if SPEC.startswith("fsize:"):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
    limit = int(SPEC.removeprefix("fsize:"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    AT, FAILURE = -1, None
elif SPEC.startswith("fail:"):
    _, at, kind = SPEC.split(":")
    AT, FAILURE = int(at), FULL_DISK[kind]
elif SPEC.startswith("SIG"):
    name, at = SPEC.split(":")
    AT, FAILURE, SIGNAL = int(at), None, signal.Signals[name]
else:
    AT, FAILURE = int(SPEC), None
written: list[str] = []


def after_write(path, start: int = 0) -> None:
    """Count a write to ``path`` (of the bytes from ``start`` on); at the chosen one, keep half of what it
    wrote and die, or raise the chosen full-disk error."""
    written.append(os.fspath(path))
    if len(written) == AT and SIGNAL is not None:
        os.kill(os.getpid(), SIGNAL)
    elif len(written) == AT:
        os.truncate(path, start + (os.path.getsize(path) - start) // 2)
        if FAILURE is not None:
            raise FAILURE(path)
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
        after_write(self._path, self._start)


real_open = builtins.open


def counting_open(file, mode="r", *args, **kwargs):
    handle = real_open(file, mode, *args, **kwargs)
    if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax"):
        return _CountedFile(handle, file)
    return handle


real_save_file = safetensors.torch.save_file


def counting_save_file(tensors, filename, *args, **kwargs):
    real_save_file(tensors, filename, *args, **kwargs)
    after_write(filename)


real_torch_save = torch.save


def counting_torch_save(obj, f, *args, **kwargs):
    real_torch_save(obj, f, *args, **kwargs)
    if isinstance(f, (str, os.PathLike)):
        after_write(f)


builtins.open = io.open = counting_open  # pathlib writes through io.open
torch.save = counting_torch_save
safetensors.torch.save_file = counting_save_file
transformers.modeling_utils.safe_save_file = counting_save_file
torch.set_num_threads(1)
try:
    exit_code = app(sys.argv[2:], standalone_mode=False)  # the command's exit code, returned
finally:
    print("".join(f"write {i}: {path}\n" for i, path in enumerate(written, start=1)), end="")
    print(f"writes: {len(written)}")
sys.exit(exit_code)
