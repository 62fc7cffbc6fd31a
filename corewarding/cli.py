"""The ``corewarding`` command line: one thin command per job, the work lives in the library modules.

A user mistake (a missing file, a bad column, an unknown setting) ends with one line on stderr and
exit code 2, never a stack trace.
"""

from __future__ import annotations

import functools
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Stable label-free RL of LLM reasoning: Co-rewarding, its baselines, evaluation and diagnostics.",
)

#: The exceptions that mean "the input is wrong", reported in one line.
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, PermissionError)


def user_errors(command):
    """Report a user mistake as ``error: <message>`` and exit 2 instead of printing a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            typer.echo(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
def demo() -> None:
    """Train a tiny model with every method on the synthetic task and compare them (not yet available)."""
    typer.echo("corewarding demo: not yet available (it lands with the demo issue).")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def train(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", help="YAML recipe (keys of CoRewardingConfig / GRPOConfig)."),
    resume: str = typer.Option(
        None, "--resume", help="Resume from a checkpoint folder, or 'last' for the newest in output_dir."
    ),
) -> None:
    """Label-free GRPO with any method. Settings come from --config, then `--key value` overrides.

    Example: corewarding train --config configs/tiny/co_rewarding_ii.yaml --max_steps 20
    """
    from trl import TrlParser

    from corewarding.config import CoRewardingConfig
    from corewarding.train import train as run_training

    if config is not None and not config.is_file():
        raise FileNotFoundError(f"no recipe at {config}")
    args = (["--config", str(config)] if config is not None else []) + list(ctx.args)
    (settings,) = TrlParser([CoRewardingConfig]).parse_args_and_config(args)
    run_training(settings, resume_from_checkpoint=True if resume == "last" else resume)


if __name__ == "__main__":
    app()
