"""The ``corewarding`` command line: one thin command per job, the work lives in the library modules."""

from __future__ import annotations

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


if __name__ == "__main__":
    app()
