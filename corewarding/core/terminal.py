"""Where the commands print tables and progress: a console as wide as the terminal, or, when the output
is not a terminal (piped to a file, ``nohup``, a slurm log), wide enough that no line is ever cut; and
output whose reader goes away (``corewarding train … | head -2``) goes quiet instead of ending the run."""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["PIPED_WIDTH", "QuietWhenClosed", "output_console", "keep_running_when_output_closes"]

#: The width of output that is not a terminal: a log file has no width, so no table or progress line is
#: cut or wrapped at it (rich would otherwise cut at 80 columns).
PIPED_WIDTH = 1000


def output_console() -> Console:
    """A rich console on stdout: the terminal's width on a terminal (or ``COLUMNS`` when set), else
    :data:`PIPED_WIDTH`."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return Console()
    return Console(width=PIPED_WIDTH)


class QuietWhenClosed:
    """A text stream (``sys.stdout``) that goes quiet when its reader has gone: the first write or flush
    that finds the pipe closed (``BrokenPipeError``) points the file descriptor at ``/dev/null``, so that
    every later write, and the interpreter's last flush, succeed and print nothing. Rich's console
    would otherwise end the process (exit 1, no message) and ``print`` raise mid-run."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def _silence(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def keep_running_when_output_closes() -> None:
    """Make the process's own stdout and stderr :class:`QuietWhenClosed` (once; a stream that is not the
    process's own, as a test runner's capture, is left alone)."""
    if sys.stdout is sys.__stdout__ and sys.stdout is not None:
        sys.stdout = QuietWhenClosed(sys.stdout)
    if sys.stderr is sys.__stderr__ and sys.stderr is not None:
        sys.stderr = QuietWhenClosed(sys.stderr)
