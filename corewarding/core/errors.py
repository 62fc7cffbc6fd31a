"""What counts as the user's mistake: the one exception type the command line prints as one line.

A :class:`UserError` says something the user gave is wrong (a setting, a file, a column, a model name,
a folder that holds another run) and what to do instead. The command line prints it, or an
:class:`OSError` (a missing file, a full disk, a refused permission), as ``error: …`` in one line. Any
other exception is a bug: it is reported as one, with the way to see its traceback (``--debug``).
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """A mistake in the user's input, stated in one line that says what to change.

    A ``ValueError``, so that code catching a bad argument's ``ValueError`` catches it too.
    """
