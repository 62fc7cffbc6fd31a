"""Co-rewarding-I's data: ``rephrase`` (write rephrasings with an LLM) and ``validate-pairs`` (check them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from corewarding.cli.app import app, handles_errors
from corewarding.cli.options import BackendOptions, Columns, Threads, ValidationOptions, option_group
from corewarding.core.errors import UserError

Outputs = Annotated[
    list[Path] | None,
    typer.Option("--output", "-o", help="Pair dataset to write (.jsonl or .parquet); repeat for both."),
]


def _report_and_write(problems, reports, settings, title: str, outputs: list[Path] | None, only_valid: bool):
    from corewarding.core.terminal import output_console
    from corewarding.data.rephrasing_checks import summary_table
    from corewarding.inference.rephrase import pair_rows, write_pair_dataset

    output_console().print(summary_table(reports, settings, title))
    rows = [row for row in pair_rows(problems, reports) if row["rephrasing_valid"] or not only_valid]
    for path in outputs or []:
        write_pair_dataset(path, rows)
        typer.echo(f"wrote {len(rows):,} pairs to {path}")


@app.command("validate-pairs")
@handles_errors()
@option_group(ValidationOptions, "checks")
def validate_pairs_command(
    pairs: Annotated[Path, typer.Argument(help="Pair dataset, or the questions when REPHRASINGS is given.")],
    rephrasings: Annotated[
        Path | None,
        typer.Argument(help="Row-aligned rephrasings of PAIRS (Co-rewarding's *_rewrite_*.parquet)."),
    ] = None,
    output: Outputs = None,
    columns: Columns = None,
    placeholder: Annotated[
        list[str] | None, typer.Option(help="Another text that means an echoed instruction (repeatable).")
    ] = None,
    checks: ValidationOptions = ValidationOptions(),
) -> None:
    """Check existing rephrasings without a model: what each check finds; optionally write the pairs.

    Example: corewarding validate-pairs train.parquet train_rewrite_Qwen3-32B.parquet -o pairs.parquet
    """
    from corewarding.data.loaders import load_problems, load_rephrased_pair
    from corewarding.data.rephrasing_checks import validate_pairs

    if rephrasings is not None:
        problems = load_rephrased_pair(pairs, rephrasings, columns)
    else:
        problems = load_problems(pairs, columns)
        if all(p.rephrasing is None for p in problems):
            raise UserError(
                f"{pairs} has no rephrasing column: name it with --dataset-columns "
                "question=COL,rephrasing=COL, or pass the rephrasings file as a second argument"
            )
    settings = checks.settings(placeholders=tuple(placeholder or ()))
    reports = validate_pairs(problems, settings)
    _report_and_write(
        problems, reports, settings, f"Rephrasing checks: {pairs.name}", output, checks.only_valid
    )


@app.command()
@handles_errors("interrupted: what was received is cached; run the same command to go on")
@option_group(BackendOptions, "backend", backend="openai", batch_size=8)
@option_group(ValidationOptions, "checks")
def rephrase(
    dataset: Annotated[Path, typer.Argument(help="Questions to rephrase (any format the loaders read).")],
    output: Outputs = None,
    model: Annotated[
        str, typer.Option(help="Model name at the endpoint; a folder, GGUF file or hub id.")
    ] = "",
    instruction: Annotated[
        Path | None,
        typer.Option(help="Instruction file: {question} once, and the markers. Default: built in."),
    ] = None,
    start_marker: Annotated[str, typer.Option(help="What the rephrasing follows.")] = "[REPHRASED]",
    end_marker: Annotated[str, typer.Option(help="What the rephrasing is followed by.")] = "[/REPHRASED]",
    placeholder: Annotated[
        str, typer.Option(help="The instruction's stand-in for the answer.")
    ] = "<rewritten problem>",
    temperature: Annotated[float, typer.Option(help="Sampling temperature (the paper: 0.7).")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold (the paper: 0.8).")] = 0.8,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion, thinking included.")] = 4096,
    cache: Annotated[
        Path | None, typer.Option(help="Completion cache to resume from; default <first output>.cache.jsonl.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rephrase only the first N questions (0: all).")] = 0,
    check_answers: Annotated[
        int,
        typer.Option(
            help="Solve both views K times with the same model; reject differing majorities (0: off)."
        ),
    ] = 0,
    columns: Columns = None,
    threads: Threads = None,
    backend: BackendOptions = BackendOptions(),
    checks: ValidationOptions = ValidationOptions(),
) -> None:
    """Rephrase every question with an LLM, check the rephrasings, write the pairs. Resumable.

    Example: corewarding rephrase train.parquet -o pairs.parquet --model Qwen/Qwen3-32B --base-url http://gpu:8000/v1
    """
    from corewarding.cli.options import check_writable, make_backend, start_torch
    from corewarding.data.loaders import load_problems
    from corewarding.data.rephrasing_checks import validate_pairs
    from corewarding.data.rephrasing_prompt import DEFAULT_INSTRUCTION, Instruction
    from corewarding.inference.generation import GenerationSettings
    from corewarding.inference.rephrase import backend_solver, rephrase_problems

    if not output:
        raise UserError("give at least one --output file (.jsonl or .parquet)")
    if not model:
        raise UserError("give the rephrasing model with --model")
    cache = cache or output[0].with_name(output[0].name + ".cache.jsonl")
    for path in (*output, cache):  # before any request is paid for
        check_writable(path, "--output" if path != cache else "--cache")
    markers = {"start_marker": start_marker, "end_marker": end_marker, "placeholder": placeholder}
    if instruction is not None:
        prompt = Instruction.from_file(instruction, **markers)
    else:
        prompt = Instruction(DEFAULT_INSTRUCTION.template, **markers)
    generation = GenerationSettings(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    settings = checks.settings(placeholders=(prompt.placeholder,), answer_samples=check_answers)
    problems = load_problems(dataset, columns)
    problems = problems[:limit] if limit else problems
    if backend.backend != "openai":
        start_torch(threads)
    engine = make_backend(model, backend)
    run = rephrase_problems(problems, engine, cache, instruction=prompt, settings=generation)
    solver = backend_solver(engine, generation) if check_answers else None
    reports = validate_pairs(run.problems, settings, solver=solver, output_problems=run.output_problems)
    typer.echo(
        f"{len(problems):,} questions: {run.cached:,} cached, "
        f"{run.sent - run.failed:,} rephrased now ({cache})"
    )
    if run.skipped_cache_lines:
        typer.echo(f"note: {run.cache_summary()}", err=True)
    if run.other_backends:
        typer.echo(
            f"note: {run.other_backends:,} cached rephrasings were written by another backend than "
            f"{engine.description}"
        )
    _report_and_write(
        run.problems, reports, settings, f"Rephrasing checks: {dataset.name}", output, checks.only_valid
    )
    if run.failed:
        typer.echo(f"{run.failure_summary()}; run the same command to retry them", err=True)
        raise typer.Exit(1)
