"""The Typer application and the one place where errors become messages.

A user mistake — a :class:`~corewarding.core.errors.UserError` (a bad column, an unknown setting, a folder
that holds another run) or an ``OSError`` (a missing file, an unwritable folder, a full disk) — ends with
one line on stderr and exit code 2, never a stack trace (a damaged safetensors file too; a checkpoint
that cannot be saved is removed and reported as one ``OSError``:
:class:`~corewarding.checkpoints.CheckpointSaveError`); a failing backend (an endpoint that keeps
failing) with exit code 1; Ctrl-C with exit code 130 and what to run to go on. Any other exception is a
bug, and says so: one line naming its type and exit code 70, or its full traceback with
``corewarding --debug …`` or ``COREWARDING_DEBUG=1``.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

import click
import typer

from corewarding.core.errors import UserError

__all__ = ["app", "rm_app", "USER_ERRORS", "handles_errors", "quiet_libraries", "quiet_warnings"]

#: The exceptions that are the user's mistake: one line, exit code 2.
USER_ERRORS = (UserError, OSError)
#: The exit code of an unexpected exception (a bug): EX_SOFTWARE of sysexits.h.
BUG_EXIT_CODE = 70

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Stable label-free RL of LLM reasoning: Co-rewarding, its baselines, evaluation and diagnostics.",
)
rm_app = typer.Typer(
    no_args_is_help=True,
    help="Cooper's reference-based reward model: labelled completions (annotate), then training (train).",
)
app.add_typer(rm_app, name="rm")


@app.callback()
def main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an unexpected error (also: COREWARDING_DEBUG=1)."
    ),
) -> None:
    """Options of every command (``corewarding --debug train …``), set on each invocation."""
    _invocation["debug"] = debug
    quiet_warnings()


# The options of the current invocation (Typer calls ``main`` before every command).
_invocation = {"debug": False}


def debugging() -> bool:
    """Whether ``--debug`` was given to this command, or ``COREWARDING_DEBUG`` is set (and not 0)."""
    return _invocation["debug"] or os.environ.get("COREWARDING_DEBUG", "0") not in ("", "0")


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        # e.g. a full disk: "runs/x/optimizer.pt: No space left on device"
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def handles_errors(interrupted: str = "interrupted"):
    """Decorate a command: user mistakes (:data:`USER_ERRORS`) → ``error: …`` and exit 2; a backend that
    fails → exit 1; Ctrl-C → ``interrupted`` and exit 130; anything else is a bug → one line that says
    so and exit 70, or its traceback under :func:`debugging`."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            from safetensors import SafetensorError

            from corewarding.inference.generation import BackendError

            try:
                return command(*args, **kwargs)
            except (typer.Exit, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
                raise  # the command's own exit, or Typer's usage message
            except KeyboardInterrupt:
                typer.echo(interrupted, err=True)
                raise typer.Exit(130) from None
            except BackendError as error:
                typer.echo(f"error: {_message(error)}", err=True)
                raise typer.Exit(1) from None
            except (*USER_ERRORS, SafetensorError) as error:
                typer.echo(f"error: {_message(error)}", err=True)
                raise typer.Exit(2) from None
            except ModuleNotFoundError as error:
                if error.name != "trl":
                    raise
                # TRL 1.16 is installed only on Python >= 3.11; the framework-free core works on 3.10.
                typer.echo(f"error: this command trains with TRL 1.16, which needs Python >= 3.11 (this is "
                           f"{sys.version.split()[0]})", err=True)
                raise typer.Exit(2) from None
            except Exception as error:
                if debugging():
                    raise
                typer.echo(
                    f"internal error: {type(error).__name__}: {_message(error)} (a bug in corewarding, not a "
                    "mistake of yours: run again with --debug, or COREWARDING_DEBUG=1, to see its traceback)",
                    err=True,
                )
                raise typer.Exit(BUG_EXIT_CODE) from None

        return wrapper

    return decorate


def quiet_warnings() -> None:
    """Hide the warnings a user of the command line cannot act on: every deprecation notice
    (FutureWarning, DeprecationWarning: messages to the developers of a library, wherever the library
    points them, its own module or, with a ``stacklevel``, its caller's), and the UserWarnings of
    transformers, TRL, torch and accelerate. Set when the command line starts (:func:`main`), before a
    library is imported or a config built: transformers warns while a config is built."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for module in ("transformers", "trl", "torch", "accelerate"):
        warnings.filterwarnings("ignore", category=UserWarning, module=module)


def quiet_libraries() -> None:
    """Silence what transformers prints that a user cannot act on: weight-loading bars, informational
    logs (its warnings: :func:`quiet_warnings`)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
