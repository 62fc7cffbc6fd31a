"""The Typer application, the conventions every command shares (:class:`Commands`: workflow order, both
option spellings, usage mistakes in one line), and the one place where errors become messages.

A user mistake — a :class:`~corewarding.core.errors.UserError` (a bad column, an unknown setting, a folder
that holds another run) or an ``OSError`` (a missing file, an unwritable folder, a full disk) — ends with
one line on stderr and exit code 2, never a stack trace (a damaged safetensors file too; a checkpoint
that cannot be saved is removed and reported as one ``OSError``:
:class:`~corewarding.checkpoints.CheckpointSaveError`); a failing backend (an endpoint that keeps
failing) with exit code 1; a run stopped cleanly by a signal (``core.stop_signals``: a checkpoint written)
with its one line and exit code 75; Ctrl-C outside training, or a second signal that abandons a step, with
exit code 130 and what to run to go on. Any other exception is a
bug, and says so: one line naming its type and exit code 70, or its full traceback with
``corewarding --debug …`` or ``COREWARDING_DEBUG=1``.

Nothing here imports torch, transformers or TRL: every ``--help`` and every check of a command's options
answers in a fraction of a second; a command imports them when it runs (``options.start_torch``).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

import typer
import typer.core

from corewarding.core.errors import ReportedElsewhere, UserError
from corewarding.core.stop_signals import STOPPED_EXIT_CODE, StoppedBySignal
from corewarding.core.terminal import keep_running_when_output_closes

__all__ = ["app", "rm_app", "USER_ERRORS", "handles_errors", "quiet_libraries", "quiet_warnings"]

#: The exceptions that are the user's mistake: one line, exit code 2.
USER_ERRORS = (UserError, OSError)
#: The exit code of an unexpected exception (a bug): EX_SOFTWARE of sysexits.h.
BUG_EXIT_CODE = 70

#: The commands in the order of a user's work, as ``--help`` lists them: try the method, measure a model
#: before training, prepare the data (rephrasings, Cooper's reward model), train, evaluate, compare the
#: runs; last, remake the tiny model.
WORKFLOW = ("demo", "diagnose", "rephrase", "validate-pairs", "rm", "train", "eval", "report", "pretrain")


def _dashed_options(command, args: list[str]) -> list[str]:
    """``args`` with each ``--a_b`` that is ``command``'s option ``--a-b`` spelled so (``--a_b=v`` too):
    every option of every command takes both spellings."""
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    dashed = []
    for position, token in enumerate(args):
        if token == "--":
            return dashed + args[position:]
        name, equals, value = token.partition("=")
        if name.startswith("--") and name not in known and name.replace("_", "-") in known:
            token = name.replace("_", "-") + equals + value
        dashed.append(token)
    return dashed


class Commands(typer.core.TyperGroup):
    """The command groups of ``corewarding``: commands listed in :data:`WORKFLOW` order, options spelled
    ``--a-b`` or ``--a_b``, and a usage mistake (an unknown option, a missing argument, a bad value) as one
    line on stderr, ``error: …``, exit code 2, as every other mistake (:func:`handles_errors`)."""

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: WORKFLOW.index(name) if name in WORKFLOW else len(WORKFLOW))

    def resolve_command(self, ctx, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        return name, command, _dashed_options(command, rest) if command is not None else rest

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        _plain_help_when_piped()
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as error:  # click's usage errors (typer carries its own click)
            # A group called without a command: Typer has shown its help (Typer too tells this one by name).
            if type(error).__name__ != "NoArgsIsHelpError":
                typer.echo(f"error: {_usage_message(error)}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _plain_help_when_piped() -> None:
    """Typer draws help in boxes at 80 columns when its output is not a terminal, and cuts what does not
    fit (``--dataset-column…``); piped to a file or a pager, help is click's plain text instead, which
    wraps and cuts nothing."""
    if not sys.stdout.isatty():
        typer.core.HAS_RICH = False


def _usage_message(error: typer.TyperException) -> str:
    """Click's message in one line, with where to read the command's options."""
    text = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)
    return f"{text} (see {context.command_path} --help)" if context is not None else text


#: Every command's help answers to -h as to --help.
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    cls=Commands,
    add_completion=False,
    no_args_is_help=True,
    context_settings=HELP_OPTIONS,
    help="Stable label-free RL of LLM reasoning: Co-rewarding, its baselines, evaluation and diagnostics.",
)
rm_app = typer.Typer(
    cls=Commands,
    no_args_is_help=True,
    context_settings=HELP_OPTIONS,
    help="Cooper's reference-based reward model: labelled completions (annotate), then training (train).",
)
app.add_typer(rm_app, name="rm")


def _show_version(asked: bool) -> None:
    if asked:
        from corewarding import __version__

        typer.echo(f"corewarding {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an unexpected error (also: COREWARDING_DEBUG=1)."
    ),
    version: bool = typer.Option(
        False, "--version", help="Show the version and exit.", is_eager=True, callback=_show_version
    ),
) -> None:
    """Options of every command (``corewarding --debug train …``), set on each invocation."""
    _invocation["debug"] = debug
    quiet_warnings()
    keep_running_when_output_closes()


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
    fails → exit 1; stopped by a signal → its line and exit 75; Ctrl-C (or a step abandoned) →
    ``interrupted`` and exit 130; anything else is a bug → one line that says so and exit 70, or its
    traceback under :func:`debugging`."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except (typer.Exit, typer.TyperException, typer.Abort):
                raise  # the command's own exit, or Typer's usage message
            except StoppedBySignal as stopped:
                if str(stopped):
                    typer.echo(str(stopped), err=True)
                raise typer.Exit(STOPPED_EXIT_CODE) from None
            except KeyboardInterrupt as interrupt:
                # A step abandoned by a second signal says so (StopAbandoned); Ctrl-C says nothing more.
                typer.echo(f"{interrupt}; {interrupted}" if str(interrupt) else interrupted, err=True)
                raise typer.Exit(130) from None
            except ReportedElsewhere:
                raise typer.Exit(2) from None
            except Exception as error:
                code = _exit_code(error)
                if code is not None:
                    typer.echo(f"error: {_message(error)}", err=True)
                    raise typer.Exit(code) from None
                if isinstance(error, ModuleNotFoundError) and error.name == "trl":
                    # TRL 1.16 is installed only on Python >= 3.11; the framework-free core works on 3.10.
                    typer.echo(f"error: this command trains with TRL 1.16, which needs Python >= 3.11 (this "
                               f"is {sys.version.split()[0]})", err=True)
                    raise typer.Exit(2) from None
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


def _exit_code(error: Exception) -> int | None:
    """1 for a backend that fails, 2 for a user's mistake (:data:`USER_ERRORS`, a damaged safetensors
    file), None for a bug. The backend's and safetensors' errors are looked up only where their modules
    were imported (an error of a module never imported cannot be raised), so that a command's help and
    its first checks import neither."""
    generation = sys.modules.get("corewarding.inference.generation")
    if generation is not None and isinstance(error, generation.BackendError):
        return 1
    safetensors = sys.modules.get("safetensors")
    if isinstance(error, USER_ERRORS) or (
        safetensors is not None and isinstance(error, safetensors.SafetensorError)
    ):
        return 2
    return None


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
