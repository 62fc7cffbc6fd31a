"""Running an untrusted Python program (a model's solution with its tests) outside the evaluating process.

Each program runs in a fresh interpreter (``python -I -B``), never in the evaluator, under these bounds:

* **time**: a wall-clock timeout, after which the program's whole process group is killed (SIGKILL),
  and a CPU-time limit (``RLIMIT_CPU``) one second above it;
* **memory**: an address-space limit (``RLIMIT_AS``, 2 GiB by default): a large allocation fails;
* **files**: a temporary directory as its working directory and home, removed afterwards; a file-size
  limit (``RLIMIT_FSIZE``); a Python audit hook that refuses writing, creating, renaming or removing a
  file outside that directory (symbolic links resolved);
* **processes**: the audit hook refuses ``fork``, ``exec``, ``system``, ``subprocess`` and signals to
  other processes, and refuses importing ``ctypes`` and ``_posixsubprocess`` (the ways around it); a
  process-count limit (``RLIMIT_NPROC``) stops a fork that gets past it; the process group is killed at
  the end, so nothing it started outlives it;
* **network**: a network namespace of its own (``unshare --net``: no interface but loopback, which is
  down), where the ``unshare`` command can make one; the audit hook also refuses creating a socket;
* **privileges**: when the evaluator is root, the program runs as ``nobody`` (uid 65534), so root's
  files are out of reach — unless ``nobody`` cannot run the interpreter (one installed in root's home):
  then it runs as root, in its network namespace, and only the audit hook keeps it in its directory;
* **output**: stdout and stderr go to files in its directory (the file-size limit caps them), of
  which the first ``output_bytes`` are kept; the environment holds ``PATH`` and ``HOME`` only.

It passes when it exits with status 0 in time (and, with ``expected_output``, prints that output).

What it does not stop (say so when publishing numbers): the audit hook is not a security boundary —
code that reaches native memory (a C extension already installed that calls ``fork`` or writes files)
gets past it, and then only the resource limits, the process group and the user's file permissions
hold; without a network namespace (no ``unshare``, or user namespaces disabled for a non-root user) a
native extension could reach the network; reading files the user can read is allowed (tests import
the standard library); the file-size limit bounds each file, not their number, so a program can fill
the disk of its temporary directory by many files until its timeout; a program started by a non-root
user runs as that user; timing side channels
and CPU contention between parallel programs are not isolated. Run benchmarks of unknown origin in a
container or VM as well.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxLimits", "ExecutionResult", "run_program", "network_isolation", "runs_as_nobody"]

#: ``nobody``: who a program runs as when the evaluator is root.
_NOBODY = 65534

# The guard the sandboxed interpreter runs before the program: an audit hook (PEP 578) that refuses
# what a test never needs. It is run with `python -I -B -c`, so the program cannot be imported first.
_GUARD = r"""
import os, sys
_root = os.path.realpath(os.getcwd())
_refused = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
            "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill",
            "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "ctypes.dlopen"}
_refused_imports = {"ctypes", "_ctypes", "_posixsubprocess"}
_path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
                "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"}
_writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
def _inside(path):
    if isinstance(path, int):
        return True
    real = os.path.realpath(os.fsdecode(path))
    return real == _root or real.startswith(_root + os.sep)
def _hook(event, args):
    if event in _refused or (event == "import" and args[0].split(".")[0] in _refused_imports):
        what = f"import {args[0]}" if event == "import" else event
        raise PermissionError(f"sandbox: {what} is not allowed")
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(flags, int) and flags & _writing) or (mode and any(m in mode for m in "wax+"))
        if writes and not _inside(path):
            raise PermissionError(f"sandbox: writing outside the working directory: {path}")
    elif event in _path_events and not all(
        _inside(a) for a in args if isinstance(a, (str, bytes, os.PathLike))
    ):
        raise PermissionError(f"sandbox: {event} outside the working directory")
sys.addaudithook(_hook)
del _hook
with open("program.py", encoding="utf-8") as _file:
    _code = compile(_file.read(), "program.py", "exec")
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
"""


@dataclass(frozen=True)
class SandboxLimits:
    """The bounds of one program's run.

    Attributes:
        timeout_s: wall-clock seconds before its process group is killed (CPU time: one second more).
        memory_bytes: its address space (``RLIMIT_AS``).
        file_bytes: the largest file it may write, its captured output included (``RLIMIT_FSIZE``).
        processes: processes and threads beyond those its user already runs (``RLIMIT_NPROC``).
        output_bytes: how much of its stdout and of its stderr is kept.
    """

    timeout_s: float = 10.0
    memory_bytes: int = 2 * 1024**3
    file_bytes: int = 16 * 1024**2
    processes: int = 16
    output_bytes: int = 64 * 1024


@dataclass(frozen=True)
class ExecutionResult:
    """How a program's run ended.

    Attributes:
        passed: exited with status 0 in time (and printed the expected output, when one was given).
        status: ``passed``, ``failed`` (non-zero exit or a refused action), ``wrong_output``, ``timeout``
            or ``killed`` (by a signal: a resource limit).
        exit_code: the process's status (negative: the signal that ended it; None: timed out).
        stdout, stderr: the first ``output_bytes`` of each, decoded.
    """

    passed: bool
    status: str
    exit_code: int | None
    stdout: str
    stderr: str


@functools.lru_cache(maxsize=1)
def network_isolation() -> tuple[str, ...] | None:
    """The command prefix that gives a program a network namespace of its own, or None where ``unshare``
    cannot make one here. For root it also runs the program as ``nobody`` where ``nobody`` can run this
    interpreter (not one installed in root's home); the first prefix that runs the interpreter wins."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    candidates = (
        [(unshare, "--net", "--setuid", str(_NOBODY), "--setgid", str(_NOBODY)), (unshare, "--net")]
        if os.geteuid() == 0
        else [(unshare, "--net", "--map-root-user")]
    )
    for prefix in candidates:
        try:
            done = subprocess.run(
                [*prefix, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return None


def runs_as_nobody() -> bool:
    """Whether programs run as ``nobody`` here (the evaluator is root and ``nobody`` can run it)."""
    isolation = network_isolation()
    return os.geteuid() == 0 and (isolation is None or "--setuid" in isolation)


def _user_processes() -> int:
    """Processes and threads of this user now (what ``RLIMIT_NPROC`` counts), from /proc."""
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += len(os.listdir(entry / "task"))
        except OSError:
            continue
    return count


def _limit_resources(limits: SandboxLimits, processes: int, drop_to_nobody: bool):
    """The child's set-up between fork and exec: resource limits, and for root without a namespace
    command, ``nobody``'s identity."""
    cpu = int(limits.timeout_s) + 1

    def set_up():
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if drop_to_nobody:
            os.setgroups([])
            os.setgid(_NOBODY)
            os.setuid(_NOBODY)

    return set_up


def _read_start(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as file:
            return file.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def run_program(
    source: str,
    limits: SandboxLimits = SandboxLimits(),
    *,
    stdin: str = "",
    expected_output: str | None = None,
) -> ExecutionResult:
    """Run the Python program ``source`` in the sandbox (see the module docstring) and say how it ended.

    Args:
        source: the whole program (a solution followed by its tests).
        limits: its bounds.
        stdin: what it reads on standard input.
        expected_output: when given, it passes only if its stdout equals this, both stripped of
            trailing whitespace on every line and at the end (stdin/stdout tests, LiveCodeBench-style).
    """
    isolation = network_isolation()
    as_nobody = runs_as_nobody()
    # RLIMIT_NPROC counts every process of the user: nobody owns almost none.
    processes = limits.processes if as_nobody else _user_processes() + limits.processes
    folder = Path(tempfile.mkdtemp(prefix="corewarding-sandbox-"))
    try:
        (folder / "program.py").write_text(source, encoding="utf-8")
        (folder / "stdin.txt").write_text(stdin, encoding="utf-8")
        if as_nobody:
            os.chown(folder, _NOBODY, _NOBODY)
        stdout_path, stderr_path = folder / "stdout.txt", folder / "stderr.txt"
        command = [*(isolation or ()), sys.executable, "-I", "-B", "-c", _GUARD]
        environment = {"PATH": os.defpath, "HOME": str(folder), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        with (
            open(folder / "stdin.txt", "rb") as given,
            open(stdout_path, "wb") as out,
            open(stderr_path, "wb") as err,
        ):
            process = subprocess.Popen(
                command, cwd=folder, env=environment, stdin=given, stdout=out, stderr=err,
                start_new_session=True,
                preexec_fn=_limit_resources(
                    limits, processes, drop_to_nobody=as_nobody and isolation is None
                ),
            )
            try:
                exit_code = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                exit_code = None
            finally:
                # Whatever it started dies with it (the guard refuses forks; this is for what got past).
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        stdout = _read_start(stdout_path, limits.output_bytes)
        stderr = _read_start(stderr_path, limits.output_bytes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if exit_code is None:
        status = "timeout"
    elif exit_code < 0:
        status = "killed"
    elif exit_code != 0:
        status = "failed"
    elif expected_output is not None and _normalised(stdout) != _normalised(expected_output):
        status = "wrong_output"
    else:
        status = "passed"
    return ExecutionResult(status == "passed", status, exit_code, stdout, stderr)


def _normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())
