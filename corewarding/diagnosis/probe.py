"""The probe: a short majority-vote run, watched by the collapse monitor, as an estimate of a model's prior.

Majority vote is the reward every label-free method builds on, and the one that fails first when a
model's majorities are wrong: it rewards them, the majority ratio rises, and held-out accuracy falls
(the collapse the paper reports for TTRL-style training after 80–100 steps on DAPO). The probe runs
``corewarding train`` itself (:func:`corewarding.training.run.train`) with the shipped majority-vote
recipe that fits the model and the machine (:func:`probe_recipe`) and a budget of ``steps``, then
reads the run's ``metrics.jsonl`` and runs the collapse monitor
(:func:`corewarding.core.collapse.detect_collapse`) over it. A flag within the probe's steps is the
step at which the monitor would stop a real run; no flag says only that none came within ``steps``.

On a dataset file the probe trains on the diagnosed questions themselves (written to the run folder as
``questions.jsonl``), and, where they have answers, measures held-out accuracy on them too: a test-time
probe, whose answers only measure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

import torch

from corewarding.core import metric_names
from corewarding.core.collapse import detect_collapse, read_metrics
from corewarding.data.arithmetic import ARITHMETIC
from corewarding.data.records import Problem
from corewarding.inference.fetched_models import FETCHED_MODELS
from corewarding.inference.model_names import tiny_model_dir
from corewarding.tiny.pretraining import SETTINGS_FILE

__all__ = ["probe_recipe", "probe_settings", "run_probe", "summarize_probe"]


def probe_recipe(model: str, cuda: bool | None = None) -> tuple[str, list[str]]:
    """The shipped majority-vote recipe the probe of ``model`` trains with, and the settings it overrides
    to fit the machine (``cuda``: whether a CUDA GPU is there; None: asked of torch).

    ``tiny/majority_vote`` for a tiny name or a model folder ``corewarding pretrain`` made (it holds
    ``pretrain.json``: a tiny model on its synthetic task); ``smollm2/majority_vote`` for ``smollm2``; for
    any other model ``paper/majority_vote``, which is sized for GPUs (bfloat16, vLLM): on a machine without
    CUDA it runs in float32 with transformers' generation (``--bf16 false --use_vllm false``), as
    TRL refuses bfloat16 without a GPU."""
    if tiny_model_dir(model) is not None or (Path(model) / SETTINGS_FILE).is_file():
        return "tiny/majority_vote", []
    if model in FETCHED_MODELS:
        return f"{model}/majority_vote", []
    if cuda is None:
        cuda = torch.cuda.is_available()
    return "paper/majority_vote", ([] if cuda else ["--bf16", "false", "--use_vllm", "false"])


def probe_settings(
    model: str, dataset: str, problems: Sequence[Problem], steps: int, folder: Path, seed: int,
    answers: Sequence[str] = (), cuda: bool | None = None,
) -> list[str]:
    """The ``corewarding train`` arguments of the probe (``--config`` first; ``cuda`` as in
    :func:`probe_recipe`; ``answers``: how the diagnosis asks for and reads answers, as ``--key value``
    settings, so that the probe trains on what was measured); writes the questions file it trains on into
    ``folder`` when ``dataset`` is a file."""
    recipe, machine = probe_recipe(model, cuda)
    args = [
        *machine, *answers,
        "--model_name_or_path", model, "--max_steps", str(steps), "--eval_steps", str(max(1, steps // 3)),
        "--output_dir", str(folder / "run"), "--seed", str(seed), "--save_strategy", "no",
        "--report_to", "none",
    ]
    if dataset in ("synthetic", ARITHMETIC):  # the paper recipe's own dataset is MATH
        args += ["--dataset", dataset, "--heldout_dataset", dataset]
    else:
        questions = folder / "questions.jsonl"
        labelled = all(p.answer is not None for p in problems)
        questions.write_text("".join(
            json.dumps({"id": p.id, "question": p.question, **({"answer": p.answer} if labelled else {})})
            + "\n"
            for p in problems
        ))
        columns = "question=question,id=id" + (",answer=answer" if labelled else "")
        args += ["--dataset", str(questions), "--dataset_columns", columns]
        if labelled:
            heldout = str(min(len(problems), 64))
            args += ["--heldout_dataset", str(questions), "--max_heldout_problems", heldout]
        else:
            args += ["--heldout_dataset", "none", "--eval_strategy", "no", "--eval_on_start", "false"]
    return ["--config", recipe, *args]


def _window_means(records: Sequence[dict], key: str, window: int) -> tuple[float, float] | None:
    values = [r[key] for r in records if r.get(key) is not None]
    if not values:
        return None
    return fmean(values[:window]), fmean(values[-window:])


def summarize_probe(records: Sequence[dict]) -> dict:
    """What a probe's metric records show: the collapse monitor's verdict, and the first and last
    windows of the training signals (a third of the steps, at most 10) and held-out accuracy."""
    train = [r for r in records if metric_names.REWARD in r]
    heldout = [r for r in records if metric_names.HELDOUT_GREEDY in r]
    window = max(1, min(10, len(train) // 3))
    trends = {
        key: _window_means(train, key, window)
        for key in (metric_names.MAJORITY_RATIO, metric_names.LABEL_ACCURACY, "dominant_answer_share",
                    "no_answer_rate")
    }
    for key in (metric_names.HELDOUT_GREEDY, metric_names.HELDOUT_SAMPLED):
        values = [r[key] for r in heldout if r.get(key) is not None]
        trends[key] = (values[0], values[-1]) if values else None
    return {
        "steps": max((r.get("step", 0) for r in train), default=0),
        "collapse": detect_collapse(records).to_dict(),
        "window": window,
        "first_last": {key: list(pair) if pair else None for key, pair in trends.items()},
    }


def run_probe(
    model: str, dataset: str, problems: Sequence[Problem], steps: int, folder: Path, seed: int = 0,
    answers: Sequence[str] = (), progress=None,
) -> dict:
    """Run the probe (module docstring) in ``folder`` and return :func:`summarize_probe` of its metrics,
    with its recipe and wall time; ``answers`` as in :func:`probe_settings`."""
    from corewarding.training.run import train
    from corewarding.training.settings import config_from_args

    args = probe_settings(model, dataset, problems, steps, folder, seed, answers)
    config = config_from_args(args[1], args[2:])
    started = time.perf_counter()
    train(config, progress=progress)
    summary = summarize_probe(read_metrics(Path(config.output_dir) / "metrics.jsonl"))
    return {"recipe": args[1], "seconds": round(time.perf_counter() - started, 1), **summary}
