"""``corewarding demo``: every method on the same tiny model, data, budget and seed; then the report.

The small analogue of the paper's stability study. Each method trains the shipped pretrained tiny
model (:mod:`corewarding.tiny.model`) on the synthetic task with its recipe from
``corewarding/training/recipes/tiny`` (the files ``configs/tiny/*.yaml`` point to), for the same number of
steps, evaluating held-out accuracy at regular intervals; then :func:`corewarding.report.write_report`
writes ``report.md`` and ``curves.png`` beside each method's ``metrics.jsonl``.

    corewarding demo                   # the six methods of the paper, about 15 minutes on 2 CPU cores
    corewarding demo --quick           # a shorter budget, about 3 minutes
    corewarding demo --methods co_rewarding_i,majority_vote --steps 60
    corewarding demo --methods ground_truth,cooper,cooper_static

``cooper`` and ``cooper_static`` (the co-trained and the frozen reference-based reward model) run only
when asked: they first need a reward model, which the demo makes once in ``<output>/reward_model``
from completions of the tiny model labelled by the rule-based verifier (``rm annotate`` and
``rm train`` with their defaults; a few minutes).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import TrainerCallback

from corewarding.training.config import load_recipe
from corewarding.report import load_runs, rich_table, summarize, write_report
from corewarding.core import metric_names
from corewarding.core.methods import METHODS

__all__ = ["DemoBudget", "DEFAULT_BUDGET", "QUICK_BUDGET", "DEMO_METHODS", "run_demo", "prepare_reward_model"]

#: The methods the demo runs unless told otherwise: the paper's six.
DEMO_METHODS = tuple(name for name, method in METHODS.items() if method.reward_model is None)


@dataclass(frozen=True)
class DemoBudget:
    """What every method gets (identical across methods).

    Attributes:
        steps: training steps per method.
        eval_steps: steps between held-out evaluations (and one before training).
        heldout_problems: synthetic test problems per held-out evaluation.
        heldout_samples: samples per held-out problem for the sampled accuracy.
    """

    steps: int
    eval_steps: int
    heldout_problems: int
    heldout_samples: int


#: The default demo: about 15 minutes for the six methods on 2 CPU cores.
DEFAULT_BUDGET = DemoBudget(steps=60, eval_steps=10, heldout_problems=128, heldout_samples=4)
#: ``--quick``: about 3 minutes.
QUICK_BUDGET = DemoBudget(steps=12, eval_steps=6, heldout_problems=48, heldout_samples=2)


class _StepProgress(TrainerCallback):
    """Advances the demo's progress bar at every step and shows the latest reward and accuracy."""

    def __init__(self, progress: Progress, task, method: str):
        self.progress, self.task, self.method = progress, task, method
        self.latest: dict[str, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in (metric_names.REWARD, metric_names.HELDOUT_GREEDY):
            if logs and key in logs:
                self.latest[key] = logs[key]
        shown = ", ".join(f"{k.removeprefix('eval_')} {v:.2f}" for k, v in self.latest.items())
        self.progress.update(self.task, description=f"{self.method:<16} {shown}")

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.update(self.task, completed=state.global_step)


def prepare_reward_model(output_dir: Path, model: str = "tiny", seed: int = 0) -> tuple[Path, Path]:
    """The demo's reward model for Cooper: ``(model folder, labelled data)``, made once and reused."""
    from corewarding.cooper.annotate import AnnotationSettings, annotate, read_labelled
    from corewarding.cooper.reward_model import RewardModel
    from corewarding.cooper.supervised import RESULT_FILE, train_reward_model
    from corewarding.inference.generation import TransformersBackend
    from corewarding.inference.models import load_model
    from corewarding.tiny.regimes import synthetic_problems

    data, folder = output_dir / "reward_model_data.jsonl", output_dir / "reward_model"
    if not (folder / RESULT_FILE).is_file():
        policy, tokenizer = load_model(model)
        annotate(synthetic_problems(model, 500, "train", seed=seed), TransformersBackend(policy, tokenizer, seed=seed),
                 data, AnnotationSettings(), policy=model)
        train_reward_model(RewardModel.load(model, seed=seed), read_labelled(data, "train"),
                           read_labelled(data, "heldout"), folder)
    return folder, data


def run_demo(
    methods: Sequence[str] = DEMO_METHODS,
    budget: DemoBudget = DEFAULT_BUDGET,
    output_dir: str | Path = "runs/demo",
    seed: int = 0,
    console: Console | None = None,
) -> tuple[Path, Path]:
    """Train each method in turn, then write the report; returns the paths of report.md and curves.png."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils import logging as hf_logging

    from corewarding.training.run import build_trainer

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}: expected some of {', '.join(METHODS)}")
    console = console or Console()
    output_dir = Path(output_dir)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would break the progress display
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    started = time.perf_counter()
    extra: dict[str, str] = {}
    if any(METHODS[m].reward_model for m in methods):
        console.print("making the reward model for Cooper (once; a few minutes)")
        folder, data = prepare_reward_model(output_dir, seed)
        extra = {"reward_model_path": str(folder), "reward_model_eval_data": str(data)}
    with Progress(*columns, console=console) as progress:
        for method in methods:
            task = progress.add_task(method, total=budget.steps)
            config = load_recipe(
                f"tiny/{method}",
                max_steps=budget.steps, eval_steps=budget.eval_steps, max_heldout_problems=budget.heldout_problems,
                heldout_samples=budget.heldout_samples, output_dir=str(output_dir / method), seed=seed,
                disable_tqdm=True, **(extra if METHODS[method].reward_model else {}),
            )
            trainer = build_trainer(config)
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            trainer.add_callback(_StepProgress(progress, task, method))
            (output_dir / method / "metrics.jsonl").unlink(missing_ok=True)
            trainer.train()
    report, figure = write_report(
        [output_dir / m for m in methods], output_dir,
        title=f"corewarding demo: {budget.steps} steps per method, seed {seed}",
    )
    console.print(rich_table([summarize(run) for run in load_runs([output_dir / m for m in methods])]))
    console.print(f"\n{len(methods)} methods in {time.perf_counter() - started:.0f} s; wrote {report} and {figure}")
    return report, figure


def budget_for(quick: bool, steps: int | None) -> DemoBudget:
    """The default or quick budget, with ``steps`` overriding its length when given."""
    budget = QUICK_BUDGET if quick else DEFAULT_BUDGET
    return budget if steps is None else replace(budget, steps=steps)
