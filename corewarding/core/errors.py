"""What counts as the user's mistake: the one exception type the command line prints as one line.

A :class:`UserError` says something the user gave is wrong (a setting, a file, a column, a model name,
a folder that holds another run) and what to do instead. The command line prints it, or an
:class:`OSError` (a missing file, a full disk, a refused permission), as ``error: …`` in one line. Any
other exception is a bug: it is reported as one, with the way to see its traceback (``--debug``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ReportedElsewhere", "SettingError", "UserError", "did_you_mean", "unknown_choice"]


class UserError(ValueError):
    """A mistake in the user's input, stated in one line that says what to change.

    A ``ValueError``, so that code catching a bad argument's ``ValueError`` catches it too.
    """


class SettingError(UserError):
    """A setting out of its range or at odds with another: one line, before any model or data is loaded."""


class ReportedElsewhere(UserError):
    """A mistake another process of the same run reports: the main process of a several-process launch
    prints the one line, the others end with the same exit code and print nothing."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` with the choice closest to ``value`` when one is close, else ``""``."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_choice(what: str, value, choices: Iterable[str], error: type[UserError] = UserError) -> UserError:
    """The error of a value that is none of ``choices``: ``unknown method 'majority_votes' (did you mean
    majority_vote?)``, or, when none is close, ``unknown method 'vibes': expected one of …``."""
    choices = list(choices)
    hint = did_you_mean(value, choices)
    return error(f"unknown {what} {value!r}{hint or ': expected one of ' + ', '.join(choices)}")
