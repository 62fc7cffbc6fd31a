"""``corewarding eval``: accuracy of any model on any dataset."""

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
from corewarding.inference.evaluate import SAMPLING_TEMPERATURE


@app.command("eval")
@handles_errors("interrupted")
@option_group(BackendOptions, "backend")
@option_group(AnswerOptions, "answers")
def eval_command(
    model: Annotated[
        str,
        typer.Argument(
            help="tiny (the shipped tiny model; tiny-shortcut the control regime's), a model folder, a .gguf "
            "file or a hub id; with --backend vllm or openai, the model's name there."
        ),
    ],
    dataset: Annotated[
        str,
        typer.Argument(
            help="synthetic (the test split of the task MODEL was pretrained on), arithmetic (the real-model "
            "task's test split), or a dataset file."
        ),
    ] = "synthetic",
    columns: Columns = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Evaluate the first N questions (synthetic: N of them, 500 by default)."),
    ] = None,
    samples: Annotated[
        int,
        typer.Option("--samples", "-k", min=0, help="Sampled answers per question (avg@k, pass@k, maj@k)."),
    ] = 0,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature of the k samples (training's held-out evaluation's).")
    ] = SAMPLING_TEMPERATURE,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold of the k samples.")] = 1.0,
    greedy: Annotated[bool, typer.Option(help="Decode greedily too (greedy pass@1).")] = True,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion, in tokens.")] = 1024,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="JSON file for the results.")] = None,
    views: Annotated[
        bool,
        typer.Option(
            help="synthetic only: every surface form of each question, with and without an irrelevant "
            "number, and the cross-view label gain of its (question, rephrasing) pairs (needs -k)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seeds the sampling and the synthetic questions.")] = 0,
    threads: Threads = None,
    backend: BackendOptions = BackendOptions(),
    answers: AnswerOptions = AnswerOptions(),
) -> None:
    """Accuracy of a model on a dataset: greedy pass@1; with -k, avg@k, pass@k and maj@k at --temperature.

    Example: corewarding eval tiny synthetic --limit 200 -k 8 --max-new-tokens 48 -o tiny.json
    """
    import time

    from corewarding.core.terminal import output_console
    from corewarding.inference.evaluate import evaluate, evaluation_runs, results_table

    # Checked now, before a model is loaded or a question asked.
    evaluation_runs(
        k=samples, temperature=temperature, top_p=top_p, greedy=greedy, max_new_tokens=max_new_tokens
    )
    if output is not None:
        check_writable(output, "--output")
    if views and (dataset != "synthetic" or not samples):
        raise UserError(
            "--views measures the synthetic task's surface forms by sampling: use it with synthetic and -k"
        )
    problems = evaluation_problems(model, dataset, columns, limit, seed)
    start_torch(threads)
    started = time.perf_counter()
    engine = make_backend(model, backend, seed)
    if views:
        from corewarding.tiny.regimes import synthetic_task
        from corewarding.tiny.view_diagnostics import measure_views, pair_summary, views_table

        figures = {
            "test": measure_views(
                problems, engine, synthetic_task(model), k=samples, temperature=temperature,
                max_new_tokens=max_new_tokens, progress=True,
            )
        }
        output_console().print(views_table(figures, title=f"{model} on the synthetic task (%)"))
        typer.echo("\n".join(pair_summary(figures)))
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps({"model": model, "seed": seed, "views": figures}, indent=2) + "\n")
            typer.echo(f"results in {output}")
        return
    result = evaluate(
        problems, engine, k=samples, temperature=temperature, top_p=top_p, greedy=greedy,
        max_new_tokens=max_new_tokens, matching=answers.matching,
        system_prompt=answers.system_prompt or None, answer_extraction=answers.answer_extraction,
        progress=True,
    )
    seconds = time.perf_counter() - started
    output_console().print(results_table({model: result}, title=f"{dataset} (accuracy, %)"))
    typer.echo(f"{len(problems):,} questions in {seconds:.1f} s ({engine.description})")
    if result.failed:
        typer.echo(f"note: {result.failed:,} completions failed and were scored as no answer", err=True)
    if output is not None:
        record = {
            "model": model, "backend": engine.description, "dataset": dataset, "seed": seed,
            "system_prompt": answers.system_prompt or None,
            "answer_extraction": answers.answer_extraction,
            "seconds": round(seconds, 1), "evaluation": json.loads(result.to_json()),
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(record, indent=2) + "\n")
        typer.echo(f"results in {output}")


def evaluation_problems(model: str, dataset: str, columns, limit: int | None, seed: int):
    """The questions of ``corewarding eval``: those with a reference answer, the first ``limit`` of them."""
    if dataset == "synthetic":
        from corewarding.tiny.regimes import synthetic_problems

        return synthetic_problems(model, limit or 500, "test", seed=seed)
    if dataset == ARITHMETIC:
        return arithmetic_problems(limit, "test", seed=seed)
    from corewarding.data.loaders import load_problems

    problems = load_problems(dataset, columns)
    scorable = [p for p in problems if p.answer is not None]
    if not scorable:
        raise UserError(
            f"{dataset}: no question has a reference answer (name its column with --dataset-columns)"
        )
    if len(scorable) < len(problems):
        typer.echo(
            f"note: {len(problems) - len(scorable):,} of {len(problems):,} questions have no reference "
            "answer and are left out",
            err=True,
        )
    return scorable[:limit] if limit else scorable
