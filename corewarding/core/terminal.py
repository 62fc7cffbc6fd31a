"""Where the commands print tables and progress: a console as wide as the terminal, or, when the output
is not a terminal (piped to a file, ``nohup``, a slurm log), wide enough that no line is ever cut."""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["PIPED_WIDTH", "output_console"]

#: The width of output that is not a terminal: a log file has no width, so no table or progress line is
#: cut or wrapped at it (rich would otherwise cut at 80 columns).
PIPED_WIDTH = 1000


def output_console() -> Console:
    """A rich console on stdout: the terminal's width on a terminal (or ``COLUMNS`` when set), else
    :data:`PIPED_WIDTH`."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return Console()
    return Console(width=PIPED_WIDTH)
