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


@app.command()
def pretrain(
    output: Path = typer.Option(Path("runs/pretrain-tiny"), "--output", "-o", help="Folder for model, tokenizer and pretrain.json."),
    seed: int = typer.Option(0, help="Seeds data, initial weights and evaluation sampling."),
    steps: int = typer.Option(None, help="Optimiser steps (default: as for the shipped checkpoint)."),
    batch_size: int = typer.Option(None, help="Examples per step (default: as for the shipped checkpoint)."),
    learning_rate: float = typer.Option(None, help="Peak learning rate (default: as for the shipped checkpoint)."),
    eval_problems: int = typer.Option(None, help="Test-split problems evaluated at the end; 0: none (default: as for the shipped checkpoint)."),
) -> None:
    """Pretrain the tiny model on the synthetic task to a partial skill, evaluate it on the test split, save it.

    The defaults reproduce the checkpoint shipped in corewarding/assets/tiny-arithmetic.
    """
    from rich.console import Console

    from corewarding.evaluate import results_table
    from corewarding.pretrain import PretrainConfig
    from corewarding.pretrain import pretrain as run_pretraining

    overrides = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "eval_problems": eval_problems}
    try:
        config = PretrainConfig(seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    result = run_pretraining(config, output)
    console = Console()
    if result.evaluation is not None:
        console.print(results_table({output.name: result.evaluation}, title="Tiny model on the synthetic test split (%)"))
    console.print(f"final loss {result.final_loss:.4f}, {result.seconds:.0f} s; saved to {output}")


if __name__ == "__main__":
    app()
