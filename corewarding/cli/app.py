"""The Typer application and the one place where errors become messages.

A user mistake (a missing file, a bad column, an unknown setting, an unwritable folder, a full disk,
a damaged safetensors file) ends with one line on stderr and exit code 2, never a stack trace (a
checkpoint that cannot be saved is removed and reported as one ``OSError``:
:class:`~corewarding.training.checkpoints.CheckpointSaveError`); a failing backend (an endpoint that
keeps failing) with exit code 1; Ctrl-C with exit code 130 and what to run to go on.
"""

from __future__ import annotations

import functools
import sys
import warnings

import typer

__all__ = ["app", "rm_app", "handles_errors", "quiet_libraries"]

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


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        # e.g. a full disk: "runs/x/optimizer.pt: No space left on device"
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def handles_errors(interrupted: str = "interrupted"):
    """Decorate a command: user mistakes (ValueError, OSError, SafetensorError) → ``error: …`` and exit 2;
    a backend that fails → exit 1; Ctrl-C → ``interrupted`` and exit 130."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            from safetensors import SafetensorError

            from corewarding.inference.generation import BackendError

            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                typer.echo(interrupted, err=True)
                raise typer.Exit(130) from None
            except BackendError as error:
                typer.echo(f"error: {_message(error)}", err=True)
                raise typer.Exit(1) from None
            except (ValueError, OSError, SafetensorError) as error:
                typer.echo(f"error: {_message(error)}", err=True)
                raise typer.Exit(2) from None
            except ModuleNotFoundError as error:
                if error.name != "trl":
                    raise
                # TRL 1.16 is installed only on Python >= 3.11; the framework-free core works on 3.10.
                typer.echo(f"error: this command trains with TRL 1.16, which needs Python >= 3.11 (this is "
                           f"{sys.version.split()[0]})", err=True)
                raise typer.Exit(2) from None

        return wrapper

    return decorate


def quiet_libraries() -> None:
    """Silence what transformers, TRL and torch print that a user cannot act on: deprecation notices of
    settings this project does not set, weight-loading bars, informational logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for module in ("transformers", "trl", "torch", "accelerate"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
