"""Stopping a run cleanly on a signal: a cluster's preemption or eviction (SIGTERM, then SIGKILL after a
grace period), a scheduler's warning before the time limit (Slurm's ``--signal=USR1@90``: SIGUSR1), Ctrl-C
(SIGINT). One mechanism for all three, used by ``train``, ``rm train`` and ``demo``.

Inside :func:`stopping_on` (around the training loop only: before and after it a signal acts as it
always did), the first of the chosen signals asks the run to stop: :func:`requested` names it. The loop
finishes the optimizer step it is in, writes a checkpoint through the crash-safe path
(:mod:`corewarding.checkpoints`) and raises :class:`StoppedBySignal`, which the command line prints as
one line and ends with :data:`STOPPED_EXIT_CODE`. A second signal, or the grace period running out,
abandons the step: :class:`StopAbandoned` (a ``KeyboardInterrupt``) is raised in the main thread, and the
run ends as Ctrl-C ended it before, resumable from its last complete checkpoint.

Launchers deliver one request more than once: Slurm signals every process of a job, and torchrun's agent
forwards the SIGTERM it received to its workers, which got Slurm's already. A repeat within
:data:`REPEAT_WINDOW_S` of the first signal is that same request, not a second one.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from corewarding.core.errors import SettingError

__all__ = [
    "DEFAULT_STOP_SIGNALS", "REPEAT_WINDOW_S", "STOPPED_EXIT_CODE", "StopAbandoned", "StoppedBySignal",
    "parse_signals", "requested", "stopping_on",
]

#: The exit code of a run stopped by a signal after writing what it needs to go on: EX_TEMPFAIL of
#: sysexits.h ("a temporary failure: the user is invited to retry"). A Slurm script requeues on it.
STOPPED_EXIT_CODE = 75
#: The signals that stop a run unless the run's settings name others (``stop_signals``).
DEFAULT_STOP_SIGNALS = "SIGINT,SIGTERM,SIGUSR1"
#: Seconds within which a repeated signal is the first one delivered again (by a launcher), not a second.
REPEAT_WINDOW_S = 2.0


class StoppedBySignal(Exception):
    """The run stopped at a step's end on a signal, what it needs to go on written; the message is the
    one line to print (empty on the processes that print nothing)."""


class StopAbandoned(KeyboardInterrupt):
    """A second signal, or the grace period's end, abandoned the step the run was finishing; the message
    says which."""


@dataclass
class _Request:
    signal_name: str
    at: float
    grace_over: bool = False


_state: dict = {"request": None, "grace_s": 0.0, "timer": None}


def parse_signals(names: str | None) -> tuple[signal.Signals, ...]:
    """``"SIGTERM,SIGUSR1"`` (or ``TERM,USR1``; ``none`` or empty: no signal) as signals; an unknown name is
    a :class:`~corewarding.core.errors.SettingError`."""
    if names is None or names.strip().lower() in ("", "none"):
        return ()
    parsed = []
    for name in (n.strip().upper() for n in names.split(",") if n.strip()):
        full = name if name.startswith("SIG") else f"SIG{name}"
        if full not in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP"):
            raise SettingError(
                f"stop_signals: {name!r} is not a signal a run can stop on (SIGINT, SIGTERM, SIGUSR1, "
                "SIGUSR2, SIGHUP)"
            )
        parsed.append(signal.Signals[full])
    return tuple(parsed)


def requested() -> str | None:
    """The name of the signal that asked the run to stop, or None."""
    request = _state["request"]
    return request.signal_name if request is not None else None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _on_signal(signum: int, frame) -> None:
    request, name, now = _state["request"], signal.Signals(signum).name, time.monotonic()
    if request is None:
        _state["request"] = _Request(name, now)
        grace = _state["grace_s"]
        if grace > 0:
            _state["timer"] = threading.Timer(grace, _grace_over, args=(signum,))
            _state["timer"].daemon = True
            _state["timer"].start()
        limit = f", at most {grace:g} s" if grace > 0 else ""
        _say(f"{name}: stopping at the end of this step{limit} (a second signal stops at once)")
        return
    if request.grace_over:
        grace = _state["grace_s"]
        raise StopAbandoned(f"the grace period of {grace:g} s after {request.signal_name} ran out")
    if now - request.at >= REPEAT_WINDOW_S:
        raise StopAbandoned(f"a second signal ({name}) after {request.signal_name}")


def _grace_over(signum: int) -> None:
    """The grace period has run out: the same signal again, which the main thread's handler turns into
    :class:`StopAbandoned` (Python runs signal handlers in the main thread only)."""
    _state["request"].grace_over = True
    os.kill(os.getpid(), signum)


@contextmanager
def stopping_on(names: str | None = DEFAULT_STOP_SIGNALS, grace_s: float = 0.0) -> Iterator[None]:
    """Within the block, the signals ``names`` (:func:`parse_signals`) ask the run to stop (:func:`requested`)
    instead of ending it; ``grace_s`` > 0: the seconds after the first one before the step is abandoned.
    The previous handlers are restored afterwards. Outside the main thread (where Python cannot set a
    handler) nothing changes."""
    wanted = parse_signals(names)
    if threading.current_thread() is not threading.main_thread() or not wanted:
        yield
        return
    previous = {s: signal.getsignal(s) for s in wanted}
    _state.update(request=None, grace_s=grace_s, timer=None)
    for s in wanted:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if _state["timer"] is not None:
            _state["timer"].cancel()
        _state.update(request=None, timer=None)
