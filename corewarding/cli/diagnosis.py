"""``corewarding diagnose``: will label-free RL work on this model and these questions? Before training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from corewarding.cli.app import app, handles_errors
from corewarding.cli.options import (
    AnswerOptions,
    BackendOptions,
    Columns,
    Threads,
    check_writable,
    make_backend,
    option_group,
    start_torch,
)
from corewarding.core.errors import UserError
from corewarding.data.arithmetic import ARITHMETIC, arithmetic_problems


@app.command("diagnose")
@handles_errors("interrupted")
@option_group(BackendOptions, "backend")
@option_group(AnswerOptions, "answers")
def diagnose_command(
    model: Annotated[
        str,
        typer.Argument(
            help="tiny (tiny-shortcut: the control regime's), a model folder, a .gguf file or a hub id; with "
            "--backend vllm or openai, the model's name there."
        ),
    ],
    dataset: Annotated[
        str,
        typer.Argument(
            help="synthetic (the test split of the tiny task), arithmetic (the real-model task's), or a "
            "dataset file."
        ),
    ] = "synthetic",
    columns: Columns = None,
    pairs: Annotated[
        str | None,
        typer.Option(help="Rephrasings of DATASET's questions, row-aligned (read with the same "
                     "--dataset-columns): measures Co-rewarding-I's cross-view label. 'auto': the "
                     "diagnosed model rephrases the diagnosed questions, checked by validate-pairs' "
                     "text checks (the synthetic questions carry their task's own)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "--questions", min=1, help="Diagnose the first N questions.")
    ] = 200,
    samples: Annotated[
        int, typer.Option("--samples", "-k", min=2, help="Samples per question and wording (votes).")
    ] = 8,
    probe_steps: Annotated[
        int, typer.Option(min=0, help="Steps of the majority-vote probe run (0: no probe).")
    ] = 30,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (training's).")] = 1.0,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(help="Longest completion (default: the training recipe's; tiny: 48, paper: 3072)."),
    ] = None,
    json_output: Annotated[
        Path | None,
        typer.Option("--output", "-o", "--json", help="JSON file for the verdict and every measurement."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the sampling, the synthetic questions and the probe.")] = 0,
    threads: Threads = None,
    backend: BackendOptions = BackendOptions(),
    answers: AnswerOptions = AnswerOptions(),
) -> None:
    """Which label-free methods will help this model on these questions: measured before training.

    Example: corewarding diagnose tiny synthetic -o diagnosis.json
    """
    from corewarding.diagnosis.probe import probe_recipe
    from corewarding.inference.model_names import tiny_model_dir
    from corewarding.training.settings import recipe_settings

    if temperature <= 0:
        raise UserError(f"--temperature {temperature}: votes need samples, use a temperature above 0")
    if json_output is not None:
        check_writable(json_output, "--output")
    auto_pairs = pairs == "auto" and dataset != "synthetic"
    if auto_pairs and tiny_model_dir(model) is not None:
        raise UserError("--pairs auto: a tiny model cannot rephrase; its task's own wordings come with "
                        f"its synthetic questions: corewarding diagnose {model} synthetic")
    pairs_file = Path(pairs) if pairs and pairs != "auto" else None
    problems = diagnosis_problems(model, dataset, columns, pairs_file, limit, seed)
    if max_new_tokens is None:
        max_new_tokens = recipe_settings(probe_recipe(model)[0])["max_completion_length"]
    if probe_steps and backend.backend == "openai":
        typer.echo("note: the probe trains the model here, which an OpenAI-compatible endpoint does not "
                   "allow: no probe", err=True)
        probe_steps = 0
    start_torch(threads)
    from corewarding.core.terminal import output_console
    from corewarding.diagnosis.diagnose import diagnose
    from corewarding.diagnosis.report import measurements_table, verdict_table
    from corewarding.diagnosis.verdict import LABEL_FREE_EVIDENCE

    engine = make_backend(model, backend, seed)
    made = None
    if auto_pairs:
        made = rephrased(problems, engine, json_output)
        typer.echo(made.summary())
        problems = made.problems
    record = diagnose(
        model, dataset, problems, engine, k=samples, temperature=temperature,
        max_new_tokens=max_new_tokens, probe_steps=probe_steps, seed=seed, matching=answers.matching,
        system_prompt=answers.system_prompt or None, answer_extraction=answers.answer_extraction,
        progress=True,
    )
    if made is not None:
        record["auto_pairs"] = {"valid": made.valid, "total": made.total, "rejected": made.rejected}
    console = output_console()
    console.print(measurements_table(record))
    console.print(verdict_table(record))
    if record["basis"] == "label-free":
        typer.echo(f"without answers: {LABEL_FREE_EVIDENCE}")
    recommended = ", ".join(record["recommended"]) or "no label-free method"
    typer.echo(f"recommended: {recommended} ({record['basis']} basis; {record['seconds']['total']:.0f} s, "
               f"{engine.description})")
    typer.echo(f"why: {record['reason']}")
    if record["failed_completions"]:
        typer.echo(f"note: {record['failed_completions']:,} completions failed and were scored as no answer",
                   err=True)
    if json_output is not None:
        json_output.parent.mkdir(parents=True, exist_ok=True)
        json_output.write_text(json.dumps(record, indent=2) + "\n")
        typer.echo(f"diagnosis in {json_output}")


def rephrased(problems, engine, json_output: Path | None):
    """``--pairs auto``: the problems with their valid rephrasings by ``engine``; the completions are
    cached next to the ``--output`` file (a rerun sends only what is missing), else in a temporary folder."""
    import tempfile

    from corewarding.diagnosis.rephrasings import auto_pairs

    if json_output is not None:
        cache = json_output.with_name(json_output.name + ".rephrasings.cache.jsonl")
        return auto_pairs(problems, engine, cache, progress=True)
    with tempfile.TemporaryDirectory(prefix="corewarding-pairs-") as folder:
        return auto_pairs(problems, engine, Path(folder) / "rephrasings.cache.jsonl", progress=True)


def diagnosis_problems(model: str, dataset: str, columns, pairs: Path | None, count: int, seed: int):
    """The first ``count`` questions of ``dataset`` (with their rephrasings from ``pairs``); when only some
    have a reference answer, those."""
    if dataset == "synthetic":
        if pairs is not None:
            raise UserError("--pairs: the synthetic questions come with their rephrasings")
        from corewarding.tiny.regimes import synthetic_problems

        return synthetic_problems(model, count, "test", seed=seed)
    if dataset == ARITHMETIC:
        if pairs is not None:
            raise UserError("--pairs: the arithmetic questions come with their rephrasings")
        return arithmetic_problems(count, "test", seed=seed)
    from corewarding.data.loaders import load_problems, load_rephrased_pair

    problems = load_rephrased_pair(dataset, pairs, columns) if pairs else load_problems(dataset, columns)
    answered = [p for p in problems if p.answer is not None]
    if answered and len(answered) < len(problems):
        typer.echo(f"note: {len(problems) - len(answered):,} of {len(problems):,} questions have no "
                   "reference answer and are left out", err=True)
        problems = answered
    return problems[:count]
