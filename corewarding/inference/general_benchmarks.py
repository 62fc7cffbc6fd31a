"""General benchmarks through lm-evaluation-harness (``lm-eval``, the optional extra ``corewarding[eval]``):
IFEval and MMLU-Pro, on data files the user names, never fetched from the hub.

Nothing of the harness is re-implemented: each benchmark is lm-eval's own task (its prompt, answer
extraction and metrics), with only its data source replaced by a local file. For each file a task YAML is
written into a temporary folder, ``include``-ing lm-eval's shipped task definition and overriding
``dataset_path`` with ``json`` or ``parquet`` and ``dataset_kwargs.data_files`` with the file; the
harness's ``simple_evaluate`` then runs it on the model (a transformers model loaded by
:func:`corewarding.inference.models.load_model`, handed to lm-eval's ``HFLM``).

* **IFEval** (Zhou et al. 2023, instruction following): lm-eval's ``ifeval`` task; a row holds ``key``,
  ``prompt``, ``instruction_id_list`` and ``kwargs`` (the format of the published file). Reported:
  prompt-level strict accuracy (all of a prompt's instructions followed), and the instruction-level
  and loose variants. Greedy, as lm-eval defines the task.
* **MMLU-Pro** (Wang et al. 2024, ten-option multiple choice): lm-eval's ``mmlu_pro`` template (its
  chain-of-thought prompt, "the answer is (X)" extracted by its regex, exact match), over all categories
  of the file at once, zero-shot (the harness's five-shot setting needs the validation split's worked
  answers; give ``num_fewshot`` and ``fewshot_file`` for it); a row holds ``question``, ``options`` (a
  list), ``answer`` (a letter) and ``category``.

Each benchmark's result keeps every question's score (``per_question``), so a trained model can be
compared with its base question by question (:mod:`corewarding.inference.comparison`).
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from corewarding.core.errors import UserError, unknown_choice
from corewarding.data.rows import read_rows

__all__ = ["GENERAL_BENCHMARKS", "GeneralBenchmark", "BenchmarkScore", "require_lm_eval", "evaluate_general"]

INSTALL_HINT = "pip install 'corewarding[eval]'"


@dataclass(frozen=True)
class GeneralBenchmark:
    """One of lm-eval's tasks over a local file.

    Attributes:
        name: how the command line names it (``--ifeval FILE``).
        template: lm-eval's task file it builds on, relative to ``lm_eval/tasks``.
        split: the split the template evaluates, the one the file becomes.
        columns: the columns every row needs.
        metrics: lm-eval's metrics reported, the headline first.
        overrides: settings of the template replaced (besides the data source).
    """

    name: str
    template: str
    split: str
    columns: tuple[str, ...]
    metrics: tuple[str, ...]
    overrides: Mapping = field(default_factory=dict)


GENERAL_BENCHMARKS = {
    "ifeval": GeneralBenchmark(
        "ifeval", "ifeval/ifeval.yaml", "train", ("key", "prompt", "instruction_id_list", "kwargs"),
        (
            "prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
            "inst_level_loose_acc",
        ),
    ),
    "mmlu_pro": GeneralBenchmark(
        "mmlu_pro", "mmlu_pro/_default_template_yaml", "test", ("question", "options", "answer", "category"),
        ("exact_match",),
        {
            "num_fewshot": 0,
            "description": "The following are multiple choice questions (with answers). Think step by step "
            'and then finish your answer with "the answer is (X)" where X is the correct letter choice.\n',
        },
    ),
}


@dataclass(frozen=True)
class BenchmarkScore:
    """One benchmark's result.

    Attributes:
        benchmark, metric: what was measured (``ifeval``, ``prompt_level_strict_acc``).
        value: the metric over the questions, in [0, 1].
        per_question: each question's score, in the file's order (what the mean is taken over).
        metrics: every metric lm-eval reported for the benchmark.
    """

    benchmark: str
    metric: str
    value: float
    per_question: list[float]
    metrics: dict[str, float] = field(default_factory=dict)


def require_lm_eval() -> None:
    """Fail in one line, before any model is loaded, when lm-evaluation-harness is not installed."""
    for module in ("lm_eval", "langdetect", "immutabledict"):
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"--suite general needs lm-evaluation-harness with its IFEval extras ({module} is not "
                f"installed): {INSTALL_HINT}"
            )


def _task_file(benchmark: GeneralBenchmark, data: Path, folder: Path) -> str:
    """Write the task YAML of ``benchmark`` over the file ``data`` into ``folder``; its task name."""
    import lm_eval

    rows = read_rows(data)
    if not rows:
        raise UserError(f"--{benchmark.name.replace('_', '-')} {data}: the file holds no rows")
    missing = [column for column in benchmark.columns if column not in rows[0]]
    if missing:
        raise UserError(
            f"--{benchmark.name.replace('_', '-')} {data}: no column {', '.join(missing)} "
            f"(a row needs {', '.join(benchmark.columns)})"
        )
    template = Path(lm_eval.__file__).parent / "tasks" / benchmark.template
    name = f"corewarding_{benchmark.name}"
    kind = "parquet" if data.suffix.lower() == ".parquet" else "json"
    config = {
        "include": str(template),
        "task": name,
        "dataset_path": kind,
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {benchmark.split: str(data.resolve())}},
        "test_split": benchmark.split,
        **benchmark.overrides,
    }
    if benchmark.name == "mmlu_pro":
        config["fewshot_split"] = benchmark.split  # unused at zero shots; lm-eval wants a split it has
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return name


def evaluate_general(
    model: str,
    files: Mapping[str, Path],
    *,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 8,
    chat_template: bool = True,
    seed: int = 0,
) -> dict[str, BenchmarkScore]:
    """Run the benchmarks of ``files`` (``{"ifeval": path, "mmlu_pro": path}``) on ``model``.

    Args:
        model: anything :func:`~corewarding.inference.models.load_model` takes.
        files: each benchmark's data file (``.jsonl``, ``.json`` or ``.parquet``).
        limit: the first N questions of each benchmark.
        max_new_tokens: overrides each task's generation length (IFEval's 1,280, MMLU-Pro's 2,048).
        batch_size: sequences per forward pass.
        chat_template: render prompts with the tokenizer's chat template (an instruct or a trained model;
            off for a base model prompted with plain text).
        seed: lm-eval's seeds (Python, NumPy, torch, few-shot order).
    """
    require_lm_eval()
    unknown = set(files) - set(GENERAL_BENCHMARKS)
    if unknown:
        raise unknown_choice("general benchmark", sorted(unknown)[0], GENERAL_BENCHMARKS)
    for name, path in files.items():
        if not Path(path).is_file():
            raise UserError(f"--{name.replace('_', '-')} {path}: no such file")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from corewarding.inference.models import load_model

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)
    loaded, tokenizer = load_model(model)
    harness_model = HFLM(pretrained=loaded, tokenizer=tokenizer, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="corewarding-lm-eval-") as folder:
        tasks = {
            name: _task_file(GENERAL_BENCHMARKS[name], Path(path), Path(folder))
            for name, path in files.items()
        }
        output = simple_evaluate(
            harness_model,
            tasks=list(tasks.values()),
            limit=limit,
            task_manager=TaskManager(include_path=folder),
            apply_chat_template=chat_template and tokenizer.chat_template is not None,
            gen_kwargs={"max_gen_toks": max_new_tokens} if max_new_tokens else None,
            log_samples=True,
            bootstrap_iters=0,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )
    scores = {}
    for name, task in tasks.items():
        benchmark = GENERAL_BENCHMARKS[name]
        reported = {
            key.split(",")[0]: float(value)
            for key, value in output["results"][task].items()
            if "," in key and "stderr" not in key and isinstance(value, (int, float))
        }
        samples = sorted(output["samples"][task], key=lambda sample: sample["doc_id"])
        headline = benchmark.metrics[0]
        per_question = [float(sample[headline]) for sample in samples]
        scores[name] = BenchmarkScore(name, headline, reported[headline], per_question, reported)
    return scores
