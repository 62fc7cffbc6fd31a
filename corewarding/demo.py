"""``corewarding demo``: every method on the same model, data, budget and seed; then the report.

The small analogue of the paper's stability study. Each method trains a shipped pretrained tiny model
(:mod:`corewarding.tiny.regimes`: ``distractor`` by default, ``shortcut`` the control) on the synthetic
task it was pretrained on, with its recipe from ``corewarding/training/recipes/tiny`` (the files
``configs/tiny/*.yaml`` point to), for the same number of steps, evaluating held-out accuracy at
regular intervals; then :func:`corewarding.report.write_report` writes ``report.md`` and ``curves.png``
beside each method's run folder.

    corewarding demo                      # the six methods of the paper, distractor regime, ≤ 10 minutes
    corewarding demo --quick              # a shorter budget, ≤ 3 minutes
    corewarding demo --regime shortcut    # the control: systematic errors no label-free reward can fix
    corewarding demo --methods co_rewarding_i,majority_vote --steps 60
    corewarding demo --methods ground_truth,cooper,cooper_static
    corewarding demo --methods majority_vote,majority_vote_rephrased,co_rewarding_ii_frozen_teacher
    corewarding demo --model smollm2      # a real model, SmolLM2-135M-Instruct on arithmetic: ~17 minutes

With ``--model smollm2`` the runs are the ``recipes/smollm2`` ones (:data:`SMOLLM2_METHODS` by default:
ground truth, majority vote, Co-rewarding-I and -II) on the arithmetic task, with the budget of
:data:`BUDGETS`; the model is fetched on first use (:mod:`corewarding.inference.fetched_models`).

``--methods`` takes the name of any recipe of the model's family (``recipes/tiny``: the paper's two
ablations among them).
``cooper`` and ``cooper_static`` (the co-trained and the frozen reference-based reward model) run only
when asked: they first need a reward model, which the demo makes once in ``<output>/reward_model``
from completions of the tiny model labelled by the rule-based verifier (``rm annotate`` and
``rm train`` with their defaults, :mod:`corewarding.cooper.on_demand`; 5 to 10 minutes).

A stop signal (SIGINT, SIGTERM, SIGUSR1: :mod:`corewarding.core.stop_signals`) ends the demo at the end of
the step it is in, with one line and exit code 75; its runs save no checkpoints, so the finished methods'
runs are what it keeps.

An output folder that holds a demo is refused unless ``overwrite`` is set; then the previous demo's
runs, report and figure are deleted first, so nothing of it is mixed into the new one. The folder is
locked while the demo runs (:mod:`corewarding.core.folder_lock`): a second demo into it is refused.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from corewarding.core.errors import unknown_choice
from corewarding.core.folder_lock import locked_folder
from corewarding.core.methods import METHODS
from corewarding.core.stop_signals import StoppedBySignal, stopping_on
from corewarding.core.terminal import output_console
from corewarding.inference.model_names import shipped_regimes
from corewarding.report import load_runs, rich_table, summarize, write_report
from corewarding.training.settings import load_recipe

__all__ = ["BUDGETS", "DEFAULT_BUDGET", "DEMO_METHODS", "QUICK_BUDGET", "SMOLLM2_METHODS", "DemoBudget",
           "run_demo"]

#: The methods the demo runs unless told otherwise: the paper's six.
DEMO_METHODS = (
    "ground_truth", "majority_vote", "self_certainty", "entropy", "co_rewarding_i", "co_rewarding_ii",
)
#: The methods ``--model smollm2`` runs unless told otherwise: its recipes.
SMOLLM2_METHODS = ("ground_truth", "majority_vote", "co_rewarding_i", "co_rewarding_ii")
#: The models the demo trains: ``tiny`` (with its regime) and the real ``smollm2``.
DEMO_MODELS = ("tiny", "smollm2")
#: What a demo writes into its folder besides one run folder per method.
DEMO_FILES = ("report.md", "curves.png", "reward_model", "reward_model_data.jsonl")


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


#: The default demo: about 10 minutes for the six methods on 2 idle CPU cores (10 min 11 s measured).
DEFAULT_BUDGET = DemoBudget(steps=60, eval_steps=10, heldout_problems=128, heldout_samples=4)
#: ``--quick``: under 3 minutes on 2 idle CPU cores (2 min 46 s measured).
QUICK_BUDGET = DemoBudget(steps=24, eval_steps=8, heldout_problems=64, heldout_samples=4)
#: Each model's (default, ``--quick``) budget. SmolLM2's default: 10 steps of its recipes (about 25 s each on
#: 2 idle cores) and held-out avg@4 on 32 test questions before and after, for the 20-minute target.
BUDGETS = {
    "tiny": (DEFAULT_BUDGET, QUICK_BUDGET),
    "smollm2": (DemoBudget(steps=10, eval_steps=10, heldout_problems=32, heldout_samples=4),
                DemoBudget(steps=5, eval_steps=5, heldout_problems=16, heldout_samples=4)),
}


#: What the demo's closing lines say for each model: what to look for in its table, and what to run next.
NEXT_STEPS = {
    "tiny": (
        "What to look for: each label-free method against ground truth (labels) — held-out accuracy up or "
        "down, label accuracy (how often its pseudo-label is right), collapse. The README (default regime) "
        "and docs/results.md (every regime, 3 seeds) give the measured figures; --quick trains 24 steps, "
        "so every change is smaller there.",
        "Next: your own questions, `corewarding train --config tiny/co_rewarding_ii --dataset FILE "
        "--dataset_columns question=COL`; which method suits your model, `corewarding diagnose MODEL FILE`; "
        "a TRL script, CoRewardingTrainer in place of GRPOTrainer (README, From Python).",
    ),
    "smollm2": (
        "What to look for: each label-free method's held-out gain against ground truth's, and whether it "
        "came from arithmetic or from the format (answer rate, accuracy among answered: docs/results.md, "
        "the SmolLM2 study, 3 seeds of 30 steps). 32 questions and one seed move by several points.",
        "Next: longer runs, `corewarding train --config smollm2/majority_vote --max_steps 30`; the "
        "model's agreement before training, `corewarding diagnose smollm2 arithmetic --answer-extraction "
        "last_number --system-prompt ''`; your model on the task, `--model_name_or_path MODEL`.",
    ),
}


def _clear(output_dir: Path, overwrite: bool) -> None:
    """Refuse a folder holding a demo, or (``overwrite``) delete what a demo wrote there."""
    written = [p for p in output_dir.iterdir() if p.name in DEMO_FILES or (p / "metrics.jsonl").exists()]
    if written and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds a demo ({', '.join(sorted(p.name for p in written)[:3])}, …): "
            "pass --overwrite to replace it, or choose another --output"
        )
    for path in written:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def check_demo_choices(
    methods: Sequence[str], regime: str, model: str, output_dir: str | Path
) -> dict[str, str]:
    """A one-line error for an unknown model, method or regime, or an output that is a file; else the
    model's recipes by name (:func:`shipped_recipes`). Imports no torch: the command line asks first."""
    if model not in DEMO_MODELS:
        raise unknown_choice("model", model, DEMO_MODELS)
    variants = shipped_recipes(model)
    unknown = [m for m in methods if m not in variants]
    if unknown:
        raise unknown_choice("method", unknown[0], variants)
    if regime not in shipped_regimes():
        raise unknown_choice("regime", regime, shipped_regimes())
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise NotADirectoryError(f"demo output {output_dir} is a file, not a folder")
    return variants


def run_demo(
    methods: Sequence[str] = DEMO_METHODS,
    budget: DemoBudget = DEFAULT_BUDGET,
    output_dir: str | Path = "runs/demo-distractor",
    seed: int = 0,
    console: Console | None = None,
    regime: str = "distractor",
    overwrite: bool = False,
    model: str = "tiny",
) -> tuple[Path, Path]:
    """Train each method in turn, then write the report; returns the paths of report.md and curves.png.
    ``model``: one of :data:`DEMO_MODELS` (``regime`` is the tiny model's)."""
    variants = check_demo_choices(methods, regime, model, output_dir)
    console = console or output_console()
    output_dir = Path(output_dir)
    with locked_folder(output_dir, "choose another --output"):
        _clear(output_dir, overwrite)
        return _train_and_report(methods, variants, budget, output_dir, seed, console, regime, model)


def _train_and_report(
    methods: Sequence[str], variants: dict[str, str], budget: DemoBudget, output_dir: Path, seed: int,
    console: Console, regime: str, family: str,
) -> tuple[Path, Path]:
    from corewarding.cooper.on_demand import make_reward_model
    from corewarding.training.progress import progress_display, show_progress
    from corewarding.training.run import build_trainer

    model = f"tiny-{regime}" if family == "tiny" else family
    started = time.perf_counter()
    extra: dict[str, str] = {}
    needs_reward_model = [m for m in methods if METHODS[variants[m]].reward_model]
    if needs_reward_model:
        folder, data = make_reward_model(
            output_dir / "reward_model", output_dir / "reward_model_data.jsonl", model, seed,
            say=console.print,
        )
        extra = {"reward_model_path": str(folder), "reward_model_eval_data": str(data)}
    with progress_display(console) as progress:
        for method in methods:
            config = load_recipe(
                f"{family}/{method}",
                model_name_or_path=model, max_steps=budget.steps, eval_steps=budget.eval_steps,
                max_heldout_problems=budget.heldout_problems, heldout_samples=budget.heldout_samples,
                output_dir=str(output_dir / method), seed=seed, save_strategy="no", disable_tqdm=True,
                **(extra if method in needs_reward_model else {}),
            )
            trainer = build_trainer(config)
            show_progress(trainer, progress, method)
            with stopping_on(config.stop_signals, config.stop_grace_seconds):
                trainer.train()
            if trainer.stop_on_signal.stopped_by:
                finished = ", ".join(methods[: methods.index(method)]) or "none"
                raise StoppedBySignal(
                    f"stopped by {trainer.stop_on_signal.stopped_by} at step {trainer.state.global_step} of "
                    f"{method}: the finished methods' runs ({finished}) are in {output_dir}; a demo does not "
                    "resume: run it again with --overwrite"
                )
    runs = [output_dir / m for m in methods]
    report, figure = write_report(
        runs,
        output_dir,
        title=f"corewarding demo: {f'{regime} regime' if family == 'tiny' else f'{model} on arithmetic'}, "
        f"{budget.steps} steps per method, seed {seed}",
    )
    console.print(rich_table([summarize(run) for run in load_runs(runs)]))
    console.print(
        f"\n{len(methods)} methods in {time.perf_counter() - started:.0f} s; wrote {report} and {figure}"
    )
    for line in NEXT_STEPS[family]:
        console.print(line, markup=False, highlight=False)
    return report, figure


def shipped_recipes(family: str = "tiny") -> dict[str, str]:
    """The shipped recipes of a family (``tiny``, ``smollm2``) the demo can run, by name: their method (for
    the tiny model the paper's six, Cooper's two, and the ablations, e.g. ``majority_vote_rephrased`` →
    ``majority_vote``)."""
    from corewarding.training.settings import RECIPES_DIR, recipe_settings

    return {
        path.stem: recipe_settings(path)["method"]
        for path in sorted((RECIPES_DIR / family).glob("*.yaml"))
        if not path.name.startswith("_")
    }


def budget_for(quick: bool, steps: int | None, model: str = "tiny") -> DemoBudget:
    """The model's default or quick budget (:data:`BUDGETS`), with ``steps`` overriding its length when
    given."""
    if model not in BUDGETS:
        raise unknown_choice("model", model, BUDGETS)
    budget = BUDGETS[model][quick]
    return budget if steps is None else replace(budget, steps=steps)
