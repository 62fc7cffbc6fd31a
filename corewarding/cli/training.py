"""Commands that train: ``demo``, ``train``, ``pretrain``, and ``report`` on what they wrote."""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import nullcontext
from pathlib import Path

import typer

from corewarding.cli.app import app, handles_errors
from corewarding.cli.options import Threads, start_torch
from corewarding.core.errors import UserError, unknown_choice
from corewarding.core.launch import is_main_process, lone_process_of_several


@app.command()
@handles_errors("interrupted: the finished methods' runs are in the output folder")
def demo(
    quick: bool = typer.Option(
        False, "--quick", help="A short budget: 24 steps per method instead of 60 (2 min 46 s measured on 2 "
        "idle cores, against 10 min 11 s; 2-3x that on a busy machine).",
    ),
    regime: str = typer.Option(
        "distractor",
        help="The tiny model's regime: distractor (errors label-free RL can fix), shortcut (the control) "
        "or hard (majority often wrong).",
    ),
    methods: str = typer.Option(
        None,
        "--methods",
        help="Comma-separated methods (default: the paper's six; cooper and cooper_static on request).",
    ),
    steps: int = typer.Option(
        None, "--steps", min=1, help="Training steps per method (overrides the budget)."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Folder for the runs and the report (default runs/demo-<regime>)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", "--overwrite-output-dir",
        help="Replace a demo already in the output folder (train's name for it works too).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every run."),
    model: str = typer.Option(
        "tiny", "--model", help="tiny (the shipped tiny model of --regime) or smollm2 (SmolLM2-135M-Instruct "
        "on the arithmetic task, fetched on first use; its methods: ground truth, majority vote, "
        "Co-rewarding-I and -II)."
    ),
    threads: Threads = None,
) -> None:
    """Train a model with every method on its task; compare them in a table and a figure."""
    from corewarding.demo import DEMO_METHODS, SMOLLM2_METHODS, budget_for, check_demo_choices, run_demo

    default = DEMO_METHODS if model == "tiny" else SMOLLM2_METHODS
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else list(default)
    folder = output or Path(f"runs/demo-{regime if model == 'tiny' else model}")
    check_demo_choices(chosen, regime, model, folder)  # before seconds of imports
    start_torch(threads)
    run_demo(chosen, budget_for(quick, steps, model), folder, seed, regime=regime, overwrite=overwrite,
             model=model)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False
)
@handles_errors(
    "interrupted: run the same command with --resume last to go on from the last complete checkpoint"
)
def train(
    ctx: typer.Context,
    config: str = typer.Option(
        None, "--config", help="A recipe: a YAML file (`base:` a recipe it builds on) or a shipped one, "
        "tiny/<method>, smollm2/<method> or paper/<method>."
    ),
    resume: str = typer.Option(
        None,
        "--resume",
        help="Go on from a checkpoint folder, or 'last': the newest complete one in output_dir.",
    ),
    threads: Threads = None,
    show_help: bool = typer.Option(False, "--help", "-h", help="Show every setting, by group, and exit."),
) -> None:
    """Label-free GRPO with any method: a recipe's settings, then `--key value` overrides.

    Example: corewarding train --config tiny/co_rewarding_ii --dataset questions.jsonl --dataset_columns question=text
    """
    from corewarding.training.settings import config_from_args, settings_help

    if show_help:
        typer.echo(ctx.get_help())
        # A terminal's width; piped to a file, each setting's line in full.
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        typer.echo("\n" + settings_help(config, width))
        raise typer.Exit()
    lone = lone_process_of_several(os.environ)
    if lone:  # before seconds of imports; the config refuses it too, for a script
        raise UserError(lone)
    settings = config_from_args(config, list(ctx.args))
    import time

    start_torch(threads)
    from corewarding.training.progress import progress_display
    from corewarding.training.run import RunFinished
    from corewarding.training.run import train as run_training

    started = time.perf_counter()
    # Of a several-process run, the main process shows the progress.
    display = progress_display() if is_main_process(os.environ) else nullcontext()
    try:
        with display as progress:
            trainer = run_training(settings, resume, progress=progress)
    except RunFinished as finished:
        if is_main_process(os.environ):
            typer.echo(str(finished))
        return
    # Under torchrun / accelerate launch: close the trackers and leave the process group before exit.
    trainer.accelerator.end_training()
    if trainer.is_world_process_zero():
        typer.echo(run_summary(trainer, time.perf_counter() - started))


def run_summary(trainer, seconds: float) -> str:
    """The closing lines of a run: where it is, how it ended, what to run next."""
    from corewarding import checkpoints

    out = Path(trainer.args.output_dir)
    saved = checkpoints.complete_checkpoints(out)
    samples = ", samples.jsonl" if (out / "samples.jsonl").is_file() else ""
    lines = [
        f"{trainer.args.method}: {trainer.state.global_step} steps in {seconds:.0f} s; run folder {out} "
        f"(metrics.jsonl{samples}{', ' + saved[-1].name if saved else ''}, config.yaml, README.md)"
    ]
    collapse = out / "collapse.json"
    if collapse.is_file():
        lines.append(f"collapse flagged: see {collapse}")
    lines.append(f"table and curves: corewarding report {out}")
    return "\n".join(lines)


@app.command()
@handles_errors()
def pretrain(
    regime: str = typer.Option(
        "distractor", help="Corpus of a shipped model: distractor, shortcut (the control) or hard."
    ),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder for model, tokenizer and pretrain.json (default runs/pretrain-<regime>).",
    ),
    seed: int = typer.Option(0, help="Seeds data, initial weights and evaluation sampling."),
    steps: int | None = typer.Option(None, help="Optimiser steps (default: the regime's)."),
    batch_size: int | None = typer.Option(None, help="Examples per step (default: the regime's)."),
    learning_rate: float | None = typer.Option(None, help="Peak learning rate (default: the regime's)."),
    slip_rate: float | None = typer.Option(None, help="Share of solutions with an arithmetic slip."),
    slip_max: int | None = typer.Option(None, help="Largest slip (a step's result off by 1..this)."),
    distractor_rate: float | None = typer.Option(
        None, help="Share of surface forms with an irrelevant number."
    ),
    distractor_use_rate: float | None = typer.Option(
        None, help="Share of their solutions that wrongly add the irrelevant number."
    ),
    shortcut_rate: float | None = typer.Option(None, help="Share of -/x solutions that stop one step early."),
    eval_problems: int | None = typer.Option(
        None, help="Problems per split measured at the end; 0: none (default: the regime's)."
    ),
    threads: Threads = None,
) -> None:
    """Pretrain the tiny model on the synthetic task to a partial skill; measure and save it.

    The defaults remake the regime's shipped model (corewarding/tiny/assets/tiny-<regime>); the corpus
    options change its mistakes, to explore other regimes.
    """
    from dataclasses import replace

    from corewarding.core.terminal import output_console
    from corewarding.tiny.pretraining import pretrain as run_pretraining
    from corewarding.tiny.regimes import REGIMES
    from corewarding.tiny.view_diagnostics import pair_summary, views_table

    if regime not in REGIMES:
        raise unknown_choice("regime", regime, REGIMES)
    base = REGIMES[regime].pretraining
    overrides = {
        "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "slip_rate": slip_rate,
        "slip_max": slip_max, "distractor_use_rate": distractor_use_rate, "shortcut_rate": shortcut_rate,
        "eval_problems": eval_problems,
    }
    task = base.task if distractor_rate is None else replace(base.task, distractor_rate=distractor_rate)
    config = replace(base, seed=seed, task=task, **{k: v for k, v in overrides.items() if v is not None})
    output = output or Path(f"runs/pretrain-{regime}")
    try:  # before minutes of training, not after
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write to {output}: {error.strerror}") from None
    start_torch(threads)
    result = run_pretraining(config, output)
    console = output_console()
    if result.evaluation is not None:
        console.print(views_table(result.evaluation, title=f"{output.name}: the synthetic task (%)"))
        for line in pair_summary(result.evaluation):
            typer.echo(line)
    console.print(
        f"final loss {result.final_loss:.4f}; training {result.train_seconds:.0f} s, "
        f"evaluation {result.eval_seconds:.0f} s; saved to {output}"
    )


@app.command()
@handles_errors()
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders (with metrics.jsonl), or folders holding them."),
    output: Path = typer.Option(
        None, "--output", "-o",
        help="Folder for report.md and curves.png (default: beside the runs: the run folder, or the folder "
        "holding them all).",
    ),
) -> None:
    """Table and figure of any set of runs: held-out accuracy, reward, label accuracy or the label-free
    signals, length, collapse."""
    from corewarding.core.terminal import output_console
    from corewarding.report import load_runs, rich_table, summarize, write_report

    if output is not None and output.exists() and not output.is_dir():
        raise NotADirectoryError(f"--output {output} is a file, not a folder")
    markdown, figure = write_report(runs, output)
    console = output_console()
    console.print(rich_table([summarize(run) for run in load_runs(runs)]))
    console.print(f"wrote {markdown} and {figure}")
