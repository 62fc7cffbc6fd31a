"""The ``corewarding`` command line: one thin command per job, the work lives in the library modules.

A user mistake (a missing file, a bad column, an unknown setting) ends with one line on stderr and
exit code 2, never a stack trace.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from corewarding.core.prompts import SYSTEM_PROMPT

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
        except ModuleNotFoundError as error:
            if error.name != "trl":
                raise
            # TRL 1.16 is installed only on Python >= 3.11; the framework-free core works on 3.10.
            typer.echo(f"error: this command trains with TRL 1.16, which needs Python >= 3.11 (this is "
                       f"{sys.version.split()[0]})", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@user_errors
def demo(
    quick: bool = typer.Option(False, "--quick", help="A short budget (about 3 minutes instead of 15)."),
    methods: str = typer.Option(
        None, "--methods", help="Comma-separated methods (default: the paper's six; cooper and cooper_static on request)."
    ),
    steps: int = typer.Option(None, "--steps", min=1, help="Training steps per method (overrides the budget)."),
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Folder for the runs and the report."),
    seed: int = typer.Option(0, "--seed", help="Seed of every run."),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads for torch."),
) -> None:
    """Train the tiny model with every method on the synthetic task; compare them in a table and a figure."""
    import torch

    from corewarding.demo import DEMO_METHODS, budget_for, run_demo

    # One thread by default: on a 2-core machine two torch threads wait on each other for a model this small.
    torch.set_num_threads(threads)
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else list(DEMO_METHODS)
    run_demo(chosen, budget_for(quick, steps), output, seed)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def train(
    ctx: typer.Context,
    config: str = typer.Option(
        None, "--config", help="YAML recipe (keys of CoRewardingConfig / GRPOConfig; `base:` a recipe it builds on), or a shipped one: "
        "tiny/<method>, paper/<method>."
    ),
    resume: str = typer.Option(
        None, "--resume", help="Resume from a checkpoint folder, or 'last' for the newest in output_dir."
    ),
    threads: int = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: torch's; 1 is best for the tiny model "
        "on a busy machine)."
    ),
) -> None:
    """Label-free GRPO with any method. Settings come from --config, then `--key value` overrides.

    Example: corewarding train --config configs/tiny/co_rewarding_ii.yaml --max_steps 20
    """
    import torch
    from trl import TrlParser

    from corewarding.training.config import CoRewardingConfig, recipe_settings

    if threads is not None:
        torch.set_num_threads(threads)
    from corewarding.training.run import train as run_training

    parser = TrlParser([CoRewardingConfig])
    if config is not None:
        unknown = parser.set_defaults_with_config(**recipe_settings(config))
        if unknown:
            raise ValueError(f"recipe {config} has settings CoRewardingConfig does not know: {' '.join(unknown[::2])}")
    (settings,) = parser.parse_args_into_dataclasses(args=list(ctx.args))
    trainer = run_training(settings, resume)
    # Under torchrun / accelerate launch: close the trackers and leave the process group before exit.
    trainer.accelerator.end_training()


@app.command()
@user_errors
def pretrain(
    regime: str = typer.Option("distractor", help="Corpus of a shipped model: distractor or shortcut (the control)."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Folder for model, tokenizer and pretrain.json (default runs/pretrain-<regime>)."
    ),
    seed: int = typer.Option(0, help="Seeds data, initial weights and evaluation sampling."),
    steps: int | None = typer.Option(None, help="Optimiser steps (default: the regime's)."),
    batch_size: int | None = typer.Option(None, help="Examples per step (default: the regime's)."),
    learning_rate: float | None = typer.Option(None, help="Peak learning rate (default: the regime's)."),
    slip_rate: float | None = typer.Option(None, help="Share of solutions with an arithmetic slip."),
    distractor_rate: float | None = typer.Option(None, help="Share of surface forms with an irrelevant number."),
    distractor_use_rate: float | None = typer.Option(
        None, help="Share of their solutions that wrongly add the irrelevant number."
    ),
    shortcut_rate: float | None = typer.Option(None, help="Share of -/x solutions that stop one step early."),
    eval_problems: int | None = typer.Option(
        None, help="Problems per split measured at the end; 0: none (default: the regime's)."
    ),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch (1 and 2 gave identical weights)."),
) -> None:
    """Pretrain the tiny model on the synthetic task to a partial skill; measure and save it.

    The defaults remake the regime's shipped model (corewarding/tiny/assets/tiny-<regime>); the corpus
    options change its mistakes, to explore other regimes.
    """
    from dataclasses import replace

    import torch
    from rich.console import Console

    from corewarding.tiny.pretraining import pretrain as run_pretraining
    from corewarding.tiny.regimes import REGIMES
    from corewarding.tiny.view_diagnostics import pair_summary, views_table

    if regime not in REGIMES:
        raise ValueError(f"unknown --regime {regime!r}: expected one of {', '.join(REGIMES)}")
    base = REGIMES[regime].pretraining
    overrides = {
        "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "slip_rate": slip_rate,
        "distractor_use_rate": distractor_use_rate, "shortcut_rate": shortcut_rate, "eval_problems": eval_problems,
    }
    task = base.task if distractor_rate is None else replace(base.task, distractor_rate=distractor_rate)
    try:
        config = replace(base, seed=seed, task=task, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    output = output or Path(f"runs/pretrain-{regime}")
    try:  # before minutes of training, not after
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise typer.BadParameter(f"cannot write to {output}: {error.strerror}", param_hint="--output") from None
    # One thread by default: on a 2-core machine shared with other processes, two torch threads made a
    # step of this model ten times slower (the threads wait on each other), while on idle cores they
    # saved only about 40%.
    torch.set_num_threads(threads)
    result = run_pretraining(config, output)
    console = Console()
    if result.evaluation is not None:
        console.print(views_table(result.evaluation, title=f"{output.name}: the synthetic task (%)"))
        for line in pair_summary(result.evaluation):
            typer.echo(line)
    console.print(
        f"final loss {result.final_loss:.4f}; training {result.train_seconds:.0f} s, "
        f"evaluation {result.eval_seconds:.0f} s; saved to {output}"
    )


# Options shared by `rephrase` and `validate-pairs`; the defaults are ValidationSettings'.
MaxSimilarity = Annotated[
    float, typer.Option(help="Prose-word similarity at or above which a rephrasing is a near-copy.")
]
MinLengthRatio = Annotated[
    float, typer.Option(help="Shortest rephrasing, as a share of the original's length.")
]
MaxLengthRatio = Annotated[
    float,
    typer.Option(help="Longest rephrasing: this many times the original's length, plus --length-slack."),
]
LengthSlack = Annotated[int, typer.Option(help="Characters a rephrasing may add beyond --max-length-ratio.")]
RejectMissingNumbers = Annotated[
    bool, typer.Option(help="Reject, not just report, rephrasings missing a number of the original.")
]
RejectDroppedFigures = Annotated[
    bool, typer.Option(help="Reject, not just report, rephrasings that drop the original's figure code.")
]
Outputs = Annotated[
    list[Path] | None,
    typer.Option("--output", "-o", help="Pair dataset to write (.jsonl or .parquet); repeat for both."),
]
OnlyValid = Annotated[bool, typer.Option(help="Write only the pairs that passed every rejecting check.")]

# Options of the commands that read a dataset (`rephrase`, `validate-pairs`, `eval`) and that generate
# (`rephrase`, `eval`).
Columns = Annotated[
    str | None,
    typer.Option(
        help="Column preset (verl, pairs, svamp, asdiv, qa), or the columns: "
        "question=COL,answer=COL[,id=COL] (question=A+B joins two). Detected when not given."
    ),
]
BaseUrl = Annotated[str, typer.Option(help="Endpoint root, /v1 included (openai).")]
ApiKeyEnv = Annotated[str, typer.Option(help="Environment variable holding the API key (not set: no key).")]
Concurrency = Annotated[int, typer.Option(help="Requests in flight at once (openai).")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for one request (openai).")]
MaxAttempts = Annotated[int, typer.Option(help="Attempts per request before it fails (openai).")]
ExtraBody = Annotated[
    str,
    typer.Option(
        help='JSON added to every request, e.g. {"chat_template_kwargs": {"enable_thinking": false}}.'
    ),
]
BatchSize = Annotated[int, typer.Option(help="Sequences per generate call (transformers).")]

_COLUMN_FIELDS = ("question", "answer", "id", "rephrasing", "rephrasing_valid")


def _columns(spec: str | None):
    """``--columns``: None (detect a preset), a preset name, or a ``ColumnMap`` from ``field=column,…``."""
    if spec is None or "=" not in spec:
        return spec
    from corewarding.data.loaders import ColumnMap

    named = {}
    for part in spec.split(","):
        field, _, column = (text.strip() for text in part.partition("="))
        if field not in _COLUMN_FIELDS or not column:
            raise ValueError(
                f"--columns: cannot read {part.strip()!r}; expected field=column with a field among "
                f"{', '.join(_COLUMN_FIELDS)}"
            )
        named[field] = tuple(column.split("+")) if field == "question" else column
    if "question" not in named:
        raise ValueError(f"--columns {spec!r} names no question column (question=COL)")
    return ColumnMap(**{"answer": None, **named})


def _validation_settings(
    *,
    max_similarity: float,
    min_length_ratio: float,
    max_length_ratio: float,
    length_slack: int,
    reject_missing_numbers: bool,
    reject_dropped_figures: bool,
    placeholders: tuple[str, ...] = (),
    answer_samples: int = 0,
):
    from corewarding.data.rephrasing_checks import ValidationSettings

    defaults = ValidationSettings()
    rejected = {"numbers": reject_missing_numbers, "figure": reject_dropped_figures}
    return ValidationSettings(
        max_similarity=max_similarity,
        min_length_ratio=min_length_ratio,
        max_length_ratio=max_length_ratio,
        length_slack=length_slack,
        placeholders=defaults.placeholders + tuple(p for p in placeholders if p not in defaults.placeholders),
        report_only=frozenset(name for name in defaults.report_only if not rejected.get(name)),
        answer_samples=answer_samples or defaults.answer_samples,
    )


def _report_and_write(problems, reports, settings, title: str, outputs: list[Path] | None, only_valid: bool):
    from rich.console import Console

    from corewarding.data.rephrase import pair_rows, write_pair_dataset
    from corewarding.data.rephrasing_checks import summary_table

    Console().print(summary_table(reports, settings, title))
    rows = [row for row in pair_rows(problems, reports) if row["rephrasing_valid"] or not only_valid]
    for path in outputs or []:
        write_pair_dataset(path, rows)
        typer.echo(f"wrote {len(rows):,} pairs to {path}")


@app.command("validate-pairs")
@user_errors
def validate_pairs_command(
    pairs: Annotated[Path, typer.Argument(help="Pair dataset, or the questions when REPHRASINGS is given.")],
    rephrasings: Annotated[
        Path | None,
        typer.Argument(help="Row-aligned rephrasings of PAIRS (Co-rewarding's *_rewrite_*.parquet)."),
    ] = None,
    output: Outputs = None,
    only_valid: OnlyValid = False,
    columns: Columns = None,
    placeholder: Annotated[
        list[str] | None, typer.Option(help="Another text that means an echoed instruction (repeatable).")
    ] = None,
    max_similarity: MaxSimilarity = 0.9,
    min_length_ratio: MinLengthRatio = 0.25,
    max_length_ratio: MaxLengthRatio = 3.0,
    length_slack: LengthSlack = 500,
    reject_missing_numbers: RejectMissingNumbers = False,
    reject_dropped_figures: RejectDroppedFigures = False,
) -> None:
    """Check existing rephrasings without a model: what each check finds; optionally write the pairs.

    Example: corewarding validate-pairs train.parquet train_rewrite_Qwen3-32B.parquet -o pairs.parquet
    """
    from corewarding.data.loaders import load_problems, load_rephrased_pair
    from corewarding.data.rephrasing_checks import validate_pairs

    if rephrasings is not None:
        problems = load_rephrased_pair(pairs, rephrasings, _columns(columns))
    else:
        problems = load_problems(pairs, _columns(columns))
        if all(p.rephrasing is None for p in problems):
            raise ValueError(
                f"{pairs} has no rephrasing column: pass the rephrasings file as a second argument"
            )
    settings = _validation_settings(
        max_similarity=max_similarity,
        min_length_ratio=min_length_ratio,
        max_length_ratio=max_length_ratio,
        length_slack=length_slack,
        reject_missing_numbers=reject_missing_numbers,
        reject_dropped_figures=reject_dropped_figures,
        placeholders=tuple(placeholder or ()),
    )
    reports = validate_pairs(problems, settings)
    _report_and_write(problems, reports, settings, f"Rephrasing checks: {pairs.name}", output, only_valid)


@app.command()
@user_errors
def rephrase(
    dataset: Annotated[Path, typer.Argument(help="Questions to rephrase (any format the loaders read).")],
    output: Outputs = None,
    model: Annotated[
        str, typer.Option(help="Model name at the endpoint; a folder, GGUF file or hub id.")
    ] = "",
    backend: Annotated[
        str, typer.Option(help="openai (OpenAI-compatible endpoint), transformers or vllm.")
    ] = "openai",
    base_url: BaseUrl = "http://localhost:8000/v1",
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: Concurrency = 8,
    timeout: Timeout = 300.0,
    max_attempts: MaxAttempts = 6,
    extra_body: ExtraBody = "{}",
    batch_size: BatchSize = 8,
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
    only_valid: OnlyValid = False,
    columns: Columns = None,
    max_similarity: MaxSimilarity = 0.9,
    min_length_ratio: MinLengthRatio = 0.25,
    max_length_ratio: MaxLengthRatio = 3.0,
    length_slack: LengthSlack = 500,
    reject_missing_numbers: RejectMissingNumbers = False,
    reject_dropped_figures: RejectDroppedFigures = False,
) -> None:
    """Rephrase every question with an LLM, check the rephrasings, write the pairs. Resumable.

    Example: corewarding rephrase train.parquet -o pairs.parquet --model Qwen/Qwen3-32B --base-url http://gpu:8000/v1
    """
    from corewarding.data.loaders import load_problems
    from corewarding.data.rephrase import backend_solver, rephrase_problems
    from corewarding.data.rephrasing_checks import validate_pairs
    from corewarding.data.rephrasing_prompt import DEFAULT_INSTRUCTION, Instruction
    from corewarding.inference.generation import BackendError, GenerationSettings

    if not output:
        raise ValueError("give at least one --output file (.jsonl or .parquet)")
    if not model:
        raise ValueError("give the rephrasing model with --model")
    markers = {"start_marker": start_marker, "end_marker": end_marker, "placeholder": placeholder}
    if instruction is not None:
        prompt = Instruction.from_file(instruction, **markers)
    else:
        prompt = Instruction(DEFAULT_INSTRUCTION.template, **markers)
    generation = GenerationSettings(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    settings = _validation_settings(
        max_similarity=max_similarity,
        min_length_ratio=min_length_ratio,
        max_length_ratio=max_length_ratio,
        length_slack=length_slack,
        reject_missing_numbers=reject_missing_numbers,
        reject_dropped_figures=reject_dropped_figures,
        placeholders=(prompt.placeholder,),
        answer_samples=check_answers,
    )
    problems = load_problems(dataset, _columns(columns))
    problems = problems[:limit] if limit else problems
    cache = cache or output[0].with_name(output[0].name + ".cache.jsonl")
    try:
        engine = _generation_backend(
            backend,
            model,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout=timeout,
            max_attempts=max_attempts,
            extra_body=extra_body,
            batch_size=batch_size,
        )
        run = rephrase_problems(problems, engine, cache, instruction=prompt, settings=generation)
        solver = backend_solver(engine, generation) if check_answers else None
        reports = validate_pairs(run.problems, settings, solver=solver, output_problems=run.output_problems)
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: what was received is cached in {cache}; run the same command to go on", err=True
        )
        raise typer.Exit(130) from None
    except BackendError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{len(problems):,} questions: {run.cached:,} cached, {run.sent - run.failed:,} rephrased now ({cache})"
    )
    if run.skipped_cache_lines:
        typer.echo(f"note: {run.cache_summary()}", err=True)
    if run.other_backends:
        typer.echo(
            f"note: {run.other_backends:,} cached rephrasings were written by another backend than "
            f"{engine.description}"
        )
    _report_and_write(
        run.problems, reports, settings, f"Rephrasing checks: {dataset.name}", output, only_valid
    )
    if run.failed:
        typer.echo(f"{run.failure_summary()}; run the same command to retry them", err=True)
        raise typer.Exit(1)


@app.command("eval")
@user_errors
def eval_command(
    model: Annotated[
        str,
        typer.Argument(
            help="tiny (the shipped tiny model), a model folder, a .gguf file or a hub id; "
            "with --backend vllm or openai, the model's name there."
        ),
    ],
    dataset: Annotated[
        str,
        typer.Argument(help="synthetic (the synthetic task's test split), or a dataset the loaders read."),
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
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the k samples.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold of the k samples.")] = 1.0,
    greedy: Annotated[bool, typer.Option(help="Decode greedily too (greedy pass@1).")] = True,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion, in tokens.")] = 1024,
    system_prompt: Annotated[
        str, typer.Option(help="The system turn of every prompt ('' for none).")
    ] = SYSTEM_PROMPT,
    fallback_last_number: Annotated[
        bool, typer.Option(help="Without a boxed answer, take the completion's last number (base models).")
    ] = False,
    matching: Annotated[
        str, typer.Option(help="equivalence (math-verify) or exact answer matching.")
    ] = "equivalence",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="JSON file for the results.")] = None,
    backend: Annotated[
        str, typer.Option(help="transformers, vllm or openai (an OpenAI-compatible endpoint).")
    ] = "transformers",
    base_url: BaseUrl = "http://localhost:8000/v1",
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: Concurrency = 8,
    timeout: Timeout = 300.0,
    max_attempts: MaxAttempts = 6,
    extra_body: ExtraBody = "{}",
    batch_size: BatchSize = 64,
    seed: Annotated[int, typer.Option(help="Seeds the sampling and the synthetic questions.")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads for torch (transformers).")] = 1,
) -> None:
    """Accuracy of a model on a dataset: greedy pass@1; with -k, avg@k, pass@k and maj@k at --temperature.

    Example: corewarding eval tiny synthetic --limit 200 -k 8 --max-new-tokens 48 -o tiny.json
    """
    import time

    import torch
    from rich.console import Console

    from corewarding.inference.evaluate import evaluate, evaluation_runs, results_table
    from corewarding.inference.generation import BackendError

    if matching not in ("equivalence", "exact"):
        raise ValueError(f"unknown --matching {matching!r}: expected equivalence or exact")
    # Checked now so that bad sampling flags fail before a model is loaded.
    evaluation_runs(
        k=samples, temperature=temperature, top_p=top_p, greedy=greedy, max_new_tokens=max_new_tokens
    )
    problems = _evaluation_problems(model, dataset, _columns(columns), limit, seed)
    # One thread by default, as for `pretrain`: on shared cores more threads slowed small models down.
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        engine = _generation_backend(
            backend,
            model,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout=timeout,
            max_attempts=max_attempts,
            extra_body=extra_body,
            batch_size=batch_size,
            seed=seed,
        )
        result = evaluate(
            problems,
            engine,
            k=samples,
            temperature=temperature,
            top_p=top_p,
            greedy=greedy,
            max_new_tokens=max_new_tokens,
            matching=matching,
            system_prompt=system_prompt or None,
            fallback_last_number=fallback_last_number,
            progress=True,
        )
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except BackendError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    seconds = time.perf_counter() - started
    Console().print(results_table({model: result}, title=f"{dataset} (accuracy, %)"))
    typer.echo(f"{len(problems):,} questions in {seconds:.1f} s ({engine.description})")
    if result.failed:
        typer.echo(f"note: {result.failed:,} completions failed and were scored as no answer", err=True)
    if output is not None:
        record = {
            "model": model,
            "backend": engine.description,
            "dataset": dataset,
            "seed": seed,
            "system_prompt": system_prompt or None,
            "fallback_last_number": fallback_last_number,
            "seconds": round(seconds, 1),
            "evaluation": json.loads(result.to_json()),
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(record, indent=2) + "\n")
        typer.echo(f"results in {output}")


def _evaluation_problems(model: str, dataset: str, columns, limit: int | None, seed: int):
    """The questions of ``corewarding eval``: those with a reference answer, the first ``limit`` of them."""
    if dataset == "synthetic":
        from corewarding.tiny.regimes import synthetic_problems

        return synthetic_problems(model, limit or 500, "test", seed=seed)
    from corewarding.data.loaders import load_problems

    problems = load_problems(dataset, columns)
    scorable = [p for p in problems if p.answer is not None]
    if not scorable:
        raise ValueError(f"{dataset}: no question has a reference answer (name its column with --columns)")
    if len(scorable) < len(problems):
        typer.echo(
            f"note: {len(problems) - len(scorable):,} of {len(problems):,} questions have no reference "
            "answer and are left out",
            err=True,
        )
    return scorable[:limit] if limit else scorable


def _generation_backend(
    kind: str,
    model: str,
    *,
    base_url: str,
    api_key_env: str,
    concurrency: int,
    timeout: float,
    max_attempts: int,
    extra_body: str,
    batch_size: int,
    seed: int = 0,
):
    """The backend named by ``--backend``; ``tiny`` is the shipped tiny model for transformers."""
    from corewarding.inference.generation import OpenAIBackend, TransformersBackend, VLLMBackend

    if kind == "openai":
        try:
            body = json.loads(extra_body)
        except json.JSONDecodeError as error:
            raise ValueError(f"--extra-body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise ValueError("--extra-body must be a JSON object")
        return OpenAIBackend(
            base_url,
            model,
            api_key_env=api_key_env or None,
            concurrency=concurrency,
            timeout_s=timeout,
            max_attempts=max_attempts,
            extra_body=body,
        )
    if kind == "transformers":
        return TransformersBackend.load(model, batch_size=batch_size, seed=seed)
    if kind == "vllm":
        return VLLMBackend(model, seed=seed)
    raise ValueError(f"unknown backend {kind!r}: expected openai, transformers or vllm")


@app.command()
@user_errors
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders (with metrics.jsonl), or folders holding them."),
    output: Path = typer.Option(Path("."), "--output", "-o", help="Folder for report.md and curves.png."),
) -> None:
    """Table and figure of any set of runs: held-out accuracy, reward, label accuracy, length, collapse."""
    from rich.console import Console

    from corewarding.report import load_runs, rich_table, summarize, write_report

    markdown, figure = write_report(runs, output)
    console = Console()
    console.print(rich_table([summarize(run) for run in load_runs(runs)]))
    console.print(f"wrote {markdown} and {figure}")


rm_app = typer.Typer(
    no_args_is_help=True,
    help="Cooper's reference-based reward model: labelled completions (annotate), then training (train).",
)
app.add_typer(rm_app, name="rm")
# The defaults of `rm annotate` and `rm train` are AnnotationSettings', RewardTrainingConfig's and
# TemplateBounds' (a test checks they agree).


@rm_app.command("annotate")
@user_errors
def rm_annotate(
    output: Annotated[
        Path, typer.Argument(help="Labelled completions to write (JSONL); appended to when it exists.")
    ],
    model: Annotated[
        str, typer.Option(help="The policy that samples: tiny, a folder, a GGUF file or a hub id.")
    ] = "tiny",
    dataset: Annotated[
        str, typer.Option(help="synthetic (its train split), or a dataset file/folder/hub id.")
    ] = "synthetic",
    columns: Columns = None,
    problems: Annotated[
        int, typer.Option(help="Questions to annotate (synthetic: drawn; a file: its first N; 0: all).")
    ] = 500,
    samples: Annotated[int, typer.Option(help="Completions sampled per question.")] = 8,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion (raise it for an LLM).")] = 48,
    heldout_fraction: Annotated[
        float, typer.Option(help="Share of the questions held out for evaluation.")
    ] = 0.1,
    batch_size: Annotated[int, typer.Option(help="Sequences per generate call.")] = 64,
    seed: Annotated[int, typer.Option(help="Seeds the synthetic questions and the sampling.")] = 0,
    judge: Annotated[
        str,
        typer.Option(help="LLM judge for completions the verifier cannot parse (model name; empty: none)."),
    ] = "",
    judge_backend: Annotated[
        str, typer.Option(help="openai (OpenAI-compatible endpoint), transformers or vllm.")
    ] = "openai",
    judge_base_url: Annotated[
        str, typer.Option(help="Judge endpoint root, /v1 included.")
    ] = "http://localhost:8000/v1",
    judge_api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the judge's API key.")
    ] = "OPENAI_API_KEY",
    judge_concurrency: Annotated[int, typer.Option(help="Judge requests in flight at once (openai).")] = 8,
    judge_max_new_tokens: Annotated[
        int, typer.Option(help="Longest judge answer, thinking included.")
    ] = 1024,
) -> None:
    """Sample completions from a policy and label them with the rule-based verifier (and a judge). Resumable.

    Example: corewarding rm annotate runs/tiny/rm_data.jsonl --problems 500 --samples 8
    """
    from corewarding.cooper.annotate import AnnotationSettings, annotate
    from corewarding.data.loaders import load_problems
    from corewarding.inference.generation import BackendError, GenerationSettings, TransformersBackend
    from corewarding.inference.models import load_model
    from corewarding.tiny.regimes import synthetic_problems
    from corewarding.training.run import SYNTHETIC_TRAIN_SIZE

    settings = AnnotationSettings(
        samples=samples,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        heldout_fraction=heldout_fraction,
    )
    if dataset == "synthetic":
        questions = synthetic_problems(model, problems or SYNTHETIC_TRAIN_SIZE, "train", seed=seed)
    else:
        questions = load_problems(dataset, columns)
        questions = questions[:problems] if problems else questions
    policy, tokenizer = load_model(model)
    sampler = TransformersBackend(policy, tokenizer, batch_size=batch_size, seed=seed)
    try:
        backend = None
        if judge:
            backend = _generation_backend(
                judge_backend,
                judge,
                base_url=judge_base_url,
                api_key_env=judge_api_key_env,
                concurrency=judge_concurrency,
                timeout=300.0,
                max_attempts=6,
                extra_body="{}",
                batch_size=8,
            )
        run = annotate(
            questions,
            sampler,
            output,
            settings,
            policy=model,
            judge=backend,
            judge_settings=GenerationSettings(
                temperature=0.0, top_p=1.0, max_new_tokens=judge_max_new_tokens
            ),
        )
    except KeyboardInterrupt:
        typer.echo(f"interrupted: what was labelled is in {output}; run the same command to go on", err=True)
        raise typer.Exit(130) from None
    except BackendError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    by = ", ".join(f"{n:,} by the {who}" for who, n in sorted(run.labelers.items())) or "none"
    typer.echo(
        f"{run.questions:,} questions ({run.done_before:,} done before, {run.no_reference:,} skipped without "
        f"a reference): {run.written:,} completions labelled now ({by}), {run.positives:,} correct; "
        f"written to {output}"
    )
    if run.judge_unclear:
        typer.echo(
            f"note: the judge said neither YES nor NO for {run.judge_unclear:,} completions; "
            "the verifier's label was kept"
        )


@rm_app.command("train")
@user_errors
def rm_train(
    data: Annotated[Path, typer.Argument(help="Labelled completions made by `corewarding rm annotate`.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the reward model and rm_train.json.")
    ] = Path("runs/tiny/reward_model"),
    model: Annotated[
        str,
        typer.Option(
            help="Starting point: tiny (the tiny backbone, fresh head), a causal LM, or a reward model."
        ),
    ] = "tiny",
    epochs: Annotated[int, typer.Option(help="Passes over the training completions.")] = 4,
    batch_size: Annotated[int, typer.Option(help="Completions per optimizer step.")] = 32,
    learning_rate: Annotated[
        float, typer.Option(help="Peak learning rate (about 1e-5 for an LLM backbone).")
    ] = 1e-3,
    save_steps: Annotated[
        int, typer.Option(help="Steps between checkpoints (a rerun resumes from the last).")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seeds the fresh head and the order of the examples.")] = 0,
    question_chars: Annotated[
        int, typer.Option(help="Longest question in the template (characters).")
    ] = 2000,
    reference_chars: Annotated[
        int, typer.Option(help="Longest reference answer in the template (characters).")
    ] = 200,
    completion_chars: Annotated[
        int, typer.Option(help="Longest completion in the template (characters).")
    ] = 4000,
) -> None:
    """Train the reward model (binary cross-entropy); report held-out accuracy, precision, recall. Resumable.

    Example: corewarding rm train runs/tiny/rm_data.jsonl -o runs/tiny/reward_model
    """
    from rich.console import Console
    from rich.table import Table

    from corewarding.cooper.annotate import read_labelled
    from corewarding.cooper.reward_model import RewardModel, TemplateBounds
    from corewarding.cooper.supervised import RESULT_FILE, RewardTrainingConfig, train_reward_model

    config = RewardTrainingConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, save_steps=save_steps, seed=seed
    )
    bounds = TemplateBounds(question_chars, reference_chars, completion_chars)
    examples = read_labelled(data)
    train_rows = [e for e in examples if e.split == "train"]
    heldout = [e for e in examples if e.split == "heldout"]
    reward_model = RewardModel.load(model, bounds=bounds, seed=seed)
    try:
        result = train_reward_model(reward_model, train_rows, heldout, output, config)
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: run the same command to resume from the last checkpoint in {output}", err=True
        )
        raise typer.Exit(130) from None

    table = Table(
        title=f"Reward model on {result.heldout_examples:,} held-out completions (%)",
        caption="acc., prec., recall: of σ(s) ≥ 0.5; bal.: balanced accuracy; "
        "q. AUC: AUC among the completions of each question; pos.: share correct",
    )
    for column in ("epoch", "loss", "acc.", "bal.", "prec.", "recall", "AUC", "q. AUC", "pos."):
        table.add_column(column, justify="right")
    columns = ("accuracy", "balanced_accuracy", "precision", "recall", "auc", "group_auc", "positive_rate")
    for row in result.epochs:
        percents = ("–" if row.get(k) is None else f"{100 * row[k]:.1f}" for k in columns)
        table.add_row(str(row["epoch"]), f"{row['loss']:.4f}", *percents)
    console = Console()
    console.print(table)
    resumed = f", resumed from step {result.resumed_from_step}" if result.resumed_from_step else ""
    console.print(
        f"{result.train_examples:,} training completions, {result.seconds:.0f} s{resumed}; "
        f"saved to {output} (settings and scores in {RESULT_FILE})"
    )


if __name__ == "__main__":
    app()
