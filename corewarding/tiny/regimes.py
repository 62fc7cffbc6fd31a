"""The three regimes of the synthetic task: which mistakes the shipped tiny model was taught to make.

A label-free reward can only teach what its labels know, and that is a property of the model's errors
(see :mod:`corewarding.tiny.view_diagnostics`). The pretraining corpus sets them, so each regime is a
:class:`~corewarding.tiny.pretraining.PretrainConfig` — the corpus's mistakes and the task's wording —
and a model pretrained on it, shipped in ``corewarding/tiny/assets/tiny-<regime>``:

* ``distractor`` (the default): the mistakes real LLMs make that label-free RL assumes. **Arithmetic
  slips** (a step's result off by a little, at random) scatter wrong answers over many values, so the
  majority of samples is right more often than one sample (self-consistency headroom). **Irrelevant
  numbers**: some surface forms carry an irrelevant sentence with a number ("Her friend Ava has 4
  shells."), which a share of the worked solutions wrongly add as a last step — the distraction GSM-IC
  found in real LLMs. Whether a question carries one depends on its wording, so a question and its
  rephrasing fail on different problems: the other view's majority can be right where the own view's
  is wrong (what Co-rewarding-I uses and self-voting cannot).
* ``shortcut`` (the control): a problem-dependent shortcut — the solutions of most subtraction and
  multiplication problems stop one step early. The errors are systematic: every wording of a problem
  fails alike and the majority is wrong on the same problems, the one case where no label-free reward
  can help. It is the model the project shipped first; its negative result is documented.
* ``hard``: the reason the paper gives for majority vote collapsing on DAPO-14k — questions hard enough
  that the model's sampled majority is often wrong. Three-step problems; **arithmetic slips** scatter
  wrong answers as in ``distractor``, and a **premature answer** (the last step left out, on any
  problem) concentrates them: on many questions that one wrong value is the plurality. Stopping early
  is a behaviour every question shares, so a reward that follows the policy's own majority can spread
  it from the questions where it already wins to the rest, while a slowly updated teacher's labels lag
  behind it (docs/results.md measures both).

``tiny`` names the default regime's model wherever a model is expected (``tiny-shortcut`` the control,
``tiny-hard`` the third;
:mod:`corewarding.inference.model_names` resolves the names), and ``synthetic`` the task that model was
pretrained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from corewarding.data.records import Problem
from corewarding.data.synthetic import TaskConfig, generate_problems
from corewarding.inference.model_names import DEFAULT_TINY_MODEL, TINY_MODELS_DIR, model_location
from corewarding.tiny.pretraining import SETTINGS_FILE, PretrainConfig

__all__ = ["Regime", "REGIMES", "DEFAULT_REGIME", "synthetic_task", "synthetic_problems"]


@dataclass(frozen=True)
class Regime:
    """A named pretraining corpus and the model shipped for it."""

    name: str
    summary: str
    pretraining: PretrainConfig

    @property
    def model_dir(self) -> Path:
        return TINY_MODELS_DIR / f"tiny-{self.name}"


REGIMES = {
    regime.name: regime
    for regime in (
        Regime(
            "distractor",
            "random arithmetic slips and irrelevant numbers some wordings carry (wording-dependent errors)",
            PretrainConfig(
                steps=1600, slip_rate=0.4, slip_max=3, distractor_use_rate=0.85,
                task=TaskConfig(distractor_rate=0.35, distractor_range=(10, 40)),
            ),
        ),
        Regime(
            "shortcut",
            "a problem-dependent shortcut: stops one step early on most -/x problems (systematic errors)",
            PretrainConfig(shortcut_rate=0.95, shortcut_rate_addition=0.25),
        ),
        Regime(
            "hard",
            "three-step problems: slips scatter wrong answers, a premature answer concentrates them",
            PretrainConfig(
                steps=800, slip_rate=0.4, slip_max=3, shortcut_rate=0.4, shortcut_rate_addition=0.4,
                eval_problems=150, task=TaskConfig(steps=3),
            ),
        ),
    )
}
#: The regime of ``tiny`` (:data:`~corewarding.inference.model_names.DEFAULT_TINY_MODEL`) and of the demo.
DEFAULT_REGIME = DEFAULT_TINY_MODEL.removeprefix("tiny-")


def synthetic_task(model: str | Path) -> TaskConfig:
    """The synthetic task a model was pretrained on (``task`` of its ``pretrain.json``); the default
    regime's task for any model without one (a real LLM, a hub id)."""
    settings = Path(model_location(model)) / SETTINGS_FILE
    if settings.is_file():
        return PretrainConfig.from_dict(json.loads(settings.read_text())["config"]).task
    return REGIMES[DEFAULT_REGIME].pretraining.task


def synthetic_problems(model: str | Path, count: int, split: str, seed: int = 0) -> list[Problem]:
    """``count`` problems of a split of the synthetic task ``model`` was pretrained on
    (:func:`synthetic_task`)."""
    return generate_problems(count, split, seed=seed, config=synthetic_task(model))
