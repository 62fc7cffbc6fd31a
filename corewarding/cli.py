"""The ``corewarding`` command line: one thin command per job, the work lives in the library modules."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Stable label-free RL of LLM reasoning: Co-rewarding, its baselines, evaluation and diagnostics.",
)


@app.command()
def demo() -> None:
    """Train a tiny model with every method on the synthetic task and compare them (not yet available)."""
    typer.echo("corewarding demo: not yet available (it lands with the demo issue).")


@app.command()
def pretrain(
    output: Path = typer.Option(
        Path("runs/pretrain-tiny"), "--output", "-o", help="Folder for model, tokenizer and pretrain.json."
    ),
    seed: int = typer.Option(0, help="Seeds data, initial weights and evaluation sampling."),
    steps: int | None = typer.Option(None, help="Optimiser steps (default: as for the shipped checkpoint)."),
    batch_size: int | None = typer.Option(
        None, help="Examples per step (default: as for the shipped checkpoint)."
    ),
    learning_rate: float | None = typer.Option(
        None, help="Peak learning rate (default: as for the shipped checkpoint)."
    ),
    eval_problems: int | None = typer.Option(
        None,
        help="Test-split problems evaluated at the end; 0: none (default: as for the shipped checkpoint).",
    ),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch (1 and 2 gave identical weights)."),
) -> None:
    """Pretrain the tiny model on the synthetic task to a partial skill; evaluate and save it.

    The defaults reproduce the checkpoint shipped in corewarding/assets/tiny-arithmetic.
    """
    import torch
    from rich.console import Console

    from corewarding.evaluate import results_table
    from corewarding.pretrain import PretrainConfig
    from corewarding.pretrain import pretrain as run_pretraining

    overrides = {
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "eval_problems": eval_problems,
    }
    try:
        config = PretrainConfig(seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    try:  # before minutes of training, not after
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise typer.BadParameter(
            f"cannot write to {output}: {error.strerror}", param_hint="--output"
        ) from None
    # One thread by default: on a 2-core machine shared with other processes, two torch threads made a
    # step of this model ten times slower (the threads wait on each other), while on idle cores they
    # saved only about 40%.
    torch.set_num_threads(threads)
    result = run_pretraining(config, output)
    console = Console()
    if result.evaluation is not None:
        console.print(
            results_table(
                {output.name: result.evaluation}, title="Tiny model on the synthetic test split (%)"
            )
        )
    console.print(
        f"final loss {result.final_loss:.4f}; training {result.train_seconds:.0f} s, "
        f"evaluation {result.eval_seconds:.0f} s; saved to {output}"
    )


if __name__ == "__main__":
    app()
