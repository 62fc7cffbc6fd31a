"""``corewarding eval``: accuracy of any model on any dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
        typer.Option("--limit", "--questions", min=1,
                     help="Evaluate the first N questions (synthetic: N of them, 500 by default)."),
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
    completions: Annotated[
        bool,
        typer.Option(help="Keep every completion in the --output file (evaluation.completions: greedy and "
                          "sampled, per question), to read what the model wrote."),
    ] = False,
    views: Annotated[
        bool,
        typer.Option(
            help="synthetic only: every surface form of each question, with and without an irrelevant "
            "number, and the cross-view label gain of its (question, rephrasing) pairs (needs -k)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seeds the sampling and the synthetic questions.")] = 0,
    suite: Annotated[
        str,
        typer.Option(
            help="What to measure, one or more of math, code, general (comma-separated): math scores "
            "DATASET's answers; code runs --code's programs in a sandbox (pass@k); general runs IFEval and "
            "MMLU-Pro through lm-evaluation-harness (--ifeval, --mmlu-pro; pip install 'corewarding[eval]')."
        ),
    ] = "math",
    code: Annotated[
        Path | None,
        typer.Option(help="Code problems with tests (HumanEval-, MBPP- or stdin/stdout-style JSONL)."),
    ] = None,
    ifeval: Annotated[Path | None, typer.Option(help="IFEval's prompts (its JSONL or parquet file).")] = None,
    mmlu_pro: Annotated[
        Path | None, typer.Option(help="MMLU-Pro's test questions (its parquet or a JSONL file).")
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            help="The base model, measured the same way (or the results file of its eval -o): both side by "
            "side with the difference and its standard error."
        ),
    ] = None,
    sandbox_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each program may run (code suite).")
    ] = 10.0,
    chat_template: Annotated[
        bool, typer.Option(help="general: prompt through the tokenizer's chat template (off: plain text).")
    ] = True,
    threads: Threads = None,
    backend: BackendOptions = BackendOptions(),
    answers: AnswerOptions = AnswerOptions(),
) -> None:
    """Accuracy of a model on a dataset: greedy pass@1; with -k, avg@k, pass@k and maj@k at --temperature.
    With --suite code/general, code and general benchmarks; with --compare BASE, against its base.

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
    families = suite_families(suite)
    if completions and (output is None or views or families != ["math"] or compare):
        raise UserError("--completions keeps a math evaluation's completions in its --output file: give -o, "
                        "without --views, --suite code/general or --compare")
    if views and (dataset != "synthetic" or not samples or families != ["math"] or compare):
        raise UserError(
            "--views measures the synthetic task's surface forms by sampling: use it with synthetic and -k"
        )
    if families != ["math"] or compare is not None:
        plan = SuitePlan(
            families=families, dataset=dataset, columns=columns, limit=limit, samples=samples,
            temperature=temperature, top_p=top_p, greedy=greedy, max_new_tokens=max_new_tokens, seed=seed,
            answers=answers, backend=backend, code=code, sandbox_timeout=sandbox_timeout,
            general_files={"ifeval": ifeval, "mmlu_pro": mmlu_pro}, chat_template=chat_template,
        )
        measure_suites_command(model, compare, plan, threads, output)
        return
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
        progress=True, keep_completions=completions,
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


#: The families ``--suite`` names, in the order they are measured and shown.
FAMILIES = ("math", "code", "general")


def suite_families(suite: str) -> list[str]:
    """``--suite``'s families, in the order of :data:`FAMILIES`; an unknown one is a one-line error."""
    from corewarding.core.errors import unknown_choice

    named = [name.strip() for name in suite.split(",") if name.strip()]
    for name in named:
        if name not in FAMILIES:
            raise unknown_choice("suite", name, FAMILIES)
    if not named:
        raise UserError(f"--suite names nothing: give one or more of {', '.join(FAMILIES)}")
    return [name for name in FAMILIES if name in named]


@dataclass(frozen=True)
class SuitePlan:
    """What ``eval --suite`` measures and how, the same for the model and its base."""

    families: list[str]
    dataset: str
    columns: str | None
    limit: int | None
    samples: int
    temperature: float
    top_p: float
    greedy: bool
    max_new_tokens: int
    seed: int
    answers: AnswerOptions
    backend: BackendOptions
    code: Path | None
    general_files: dict[str, Path | None]
    sandbox_timeout: float
    chat_template: bool

    def check(self) -> None:
        """Every mistake in the plan, before a model is loaded."""
        if "code" in self.families:
            if self.code is None:
                raise UserError("--suite code needs its problems: --code FILE")
            from corewarding.inference.code_benchmark import load_code_problems

            load_code_problems(self.code)
        if "general" in self.families:
            files = {name: path for name, path in self.general_files.items() if path is not None}
            if not files:
                raise UserError("--suite general needs its data: --ifeval FILE and/or --mmlu-pro FILE")
            for name, path in files.items():
                if not path.is_file():
                    raise UserError(f"--{name.replace('_', '-')} {path}: no such file")
            if self.backend.backend != "transformers":
                raise UserError(
                    "--suite general runs a transformers model (lm-eval's HFLM): use --backend transformers"
                )
            from corewarding.inference.general_benchmarks import require_lm_eval

            require_lm_eval()


def measure_suites(model: str, plan: SuitePlan, math_problems) -> dict:
    """One model's record of every family of the plan: each family's settings and results, with its
    ``scores`` (benchmark, metric, value, per-question scores) for a comparison. ``math_problems`` are
    the math suite's questions, the same for a model and its base."""
    from dataclasses import asdict

    from corewarding.inference.evaluate import evaluate

    record: dict = {"model": model, "seed": plan.seed, "suites": {}}
    engine = make_backend(model, plan.backend, plan.seed) if {"math", "code"} & set(plan.families) else None
    if engine is not None:
        record["backend"] = engine.description
    if "math" in plan.families:
        result = evaluate(
            math_problems, engine, k=plan.samples, temperature=plan.temperature, top_p=plan.top_p,
            greedy=plan.greedy, max_new_tokens=plan.max_new_tokens, matching=plan.answers.matching,
            system_prompt=plan.answers.system_prompt or None,
            answer_extraction=plan.answers.answer_extraction, progress=True,
        )
        benchmark = Path(plan.dataset).name
        record["suites"]["math"] = {
            "dataset": plan.dataset, "evaluation": json.loads(result.to_json()),
            "scores": [
                {
                    "benchmark": benchmark, "metric": metric, "value": sum(values) / len(values),
                    "per_question": values,
                }
                for metric, values in result.per_question.items()
            ],
        }
    if "code" in plan.families:
        from corewarding.core.sandbox import SandboxLimits
        from corewarding.inference.code_benchmark import evaluate_code, load_code_problems

        problems = load_code_problems(plan.code)[: plan.limit]
        n = max(plan.samples, 1)
        result = evaluate_code(
            problems, engine, n=n, temperature=plan.temperature if n > 1 else 0.0, top_p=plan.top_p,
            max_new_tokens=plan.max_new_tokens, limits=SandboxLimits(timeout_s=plan.sandbox_timeout),
            progress=True,
        )
        record["suites"]["code"] = {
            "file": str(plan.code), **asdict(result),
            "scores": [{
                "benchmark": plan.code.stem, "metric": "pass@1", "value": result.pass_at_k[1],
                "per_question": result.per_question,
            }],
        }
    if "general" in plan.families:
        from corewarding.inference.general_benchmarks import evaluate_general

        files = {name: path for name, path in plan.general_files.items() if path is not None}
        scores = evaluate_general(
            model, files, limit=plan.limit, max_new_tokens=plan.max_new_tokens,
            batch_size=plan.backend.batch_size, chat_template=plan.chat_template, seed=plan.seed,
        )
        record["suites"]["general"] = {
            "files": {name: str(path) for name, path in files.items()},
            "scores": [asdict(score) for score in scores.values()],
        }
    return record


def measure_suites_command(
    model: str, compare: str | None, plan: SuitePlan, threads: int | None, output: Path | None
) -> None:
    """``eval --suite … [--compare BASE]``: measure, show every score, and the comparison with the base."""
    from corewarding.core.terminal import output_console
    from corewarding.inference.comparison import compare_records, comparison_table, scores_table

    plan.check()
    base_record = None
    if compare is not None and Path(compare).suffix == ".json" and Path(compare).is_file():
        base_record = json.loads(Path(compare).read_text())
        if "suites" not in base_record:
            raise UserError(f"--compare {compare}: not a results file of corewarding eval --suite … -o")
    # The trained model's questions for both (the synthetic task is read from the model's folder).
    math_problems = (
        evaluation_problems(model, plan.dataset, plan.columns, plan.limit, plan.seed)
        if "math" in plan.families
        else None
    )
    start_torch(threads)
    records = {model: measure_suites(model, plan, math_problems)}
    if compare is not None:
        records[compare] = base_record or measure_suites(compare, plan, math_problems)
    console = output_console()
    console.print(scores_table(records))
    record: dict = records[model]
    if compare is not None:
        rows = compare_records(records[compare], records[model])
        console.print(comparison_table(rows, base=compare, trained=model))
        from dataclasses import asdict

        record = {
            "trained": records[model], "base": records[compare], "comparison": [asdict(r) for r in rows],
        }
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(record, indent=2) + "\n")
        typer.echo(f"results in {output}")
