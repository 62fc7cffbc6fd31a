"""Cooper's reward model: ``rm annotate`` (labelled completions) and ``rm train`` (supervised training).

The defaults of both are AnnotationSettings', RewardTrainingConfig's and TemplateBounds' (a test checks
they agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from corewarding.cli.app import handles_errors, rm_app
from corewarding.cli.options import BackendOptions, Columns, Threads, option_group, start_torch


@rm_app.command("annotate")
@handles_errors("interrupted: what was labelled is in the output file; run the same command to go on")
@option_group(BackendOptions, "judge_backend", prefix="judge_", backend="openai", batch_size=8)
def rm_annotate(
    output: Annotated[
        Path, typer.Argument(help="Labelled completions to write (JSONL); appended to when it exists.")
    ],
    model: Annotated[
        str, typer.Option(help="The policy that samples: tiny, a folder, a GGUF file or a hub id.")
    ] = "tiny",
    dataset: Annotated[
        str,
        typer.Option(help="synthetic (the train split of MODEL's task), or a dataset file/folder/hub id."),
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
    judge_max_new_tokens: Annotated[
        int, typer.Option(help="Longest judge answer, thinking included.")
    ] = 1024,
    threads: Threads = None,
    judge_backend: BackendOptions = BackendOptions(),
) -> None:
    """Sample completions from a policy and label them with the rule-based verifier (and a judge). Resumable.

    Example: corewarding rm annotate runs/tiny/rm_data.jsonl --problems 500 --samples 8
    """
    start_torch(threads)
    from corewarding.cli.options import make_backend
    from corewarding.cooper.annotate import AnnotationSettings, annotate
    from corewarding.data.loaders import load_problems
    from corewarding.inference.generation import GenerationSettings, TransformersBackend
    from corewarding.inference.models import load_model
    from corewarding.tiny.regimes import synthetic_problems
    from corewarding.training.run import SYNTHETIC_TRAIN_SIZE

    settings = AnnotationSettings(
        samples=samples, temperature=temperature, max_new_tokens=max_new_tokens,
        heldout_fraction=heldout_fraction,
    )
    if dataset == "synthetic":
        questions = synthetic_problems(model, problems or SYNTHETIC_TRAIN_SIZE, "train", seed=seed)
    else:
        questions = load_problems(dataset, columns)
        questions = questions[:problems] if problems else questions
    policy, tokenizer = load_model(model)
    sampler = TransformersBackend(policy, tokenizer, batch_size=batch_size, seed=seed)
    judge_engine = make_backend(judge, judge_backend) if judge else None
    run = annotate(
        questions, sampler, output, settings, policy=model, judge=judge_engine,
        judge_settings=GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=judge_max_new_tokens),
    )
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
@handles_errors("interrupted: run the same command to resume from the last checkpoint")
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
    threads: Threads = None,
) -> None:
    """Train the reward model (binary cross-entropy); report held-out accuracy, precision, recall. Resumable.

    Example: corewarding rm train runs/tiny/rm_data.jsonl -o runs/tiny/reward_model
    """
    start_torch(threads)
    from rich.table import Table

    from corewarding.cooper.annotate import read_labelled
    from corewarding.cooper.reward_model import RewardModel, TemplateBounds
    from corewarding.cooper.supervised import RESULT_FILE, RewardTrainingConfig, train_reward_model
    from corewarding.core.terminal import output_console

    config = RewardTrainingConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, save_steps=save_steps, seed=seed
    )
    bounds = TemplateBounds(question_chars, reference_chars, completion_chars)
    examples = read_labelled(data)
    train_rows = [e for e in examples if e.split == "train"]
    heldout = [e for e in examples if e.split == "heldout"]
    reward_model = RewardModel.load(model, bounds=bounds, seed=seed)
    result = train_reward_model(reward_model, train_rows, heldout, output, config)

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
    console = output_console()
    console.print(table)
    resumed = f", resumed from step {result.resumed_from_step}" if result.resumed_from_step else ""
    console.print(
        f"{result.train_examples:,} training completions, {result.seconds:.0f} s{resumed}; "
        f"saved to {output} (settings and scores in {RESULT_FILE})"
    )
