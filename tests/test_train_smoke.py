"""CleanRL-style smoke tests: the real `corewarding train` command, every method, 2 steps on CPU (the
Cooper recipes, which make their reward model first: tests/test_shipped_recipes.py)."""

import json
import math
import sys

import pytest
import yaml
from test_metrics_glossary import in_glossary
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.core.teacher_schedule import TeacherSchedule
from corewarding.inference.evaluate import evaluate
from corewarding.inference.generation import TransformersBackend
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.settings import recipe_settings

# Small enough for seconds per method: 4 prompts (2 pairs) x 4 rollouts, short completions.
FAST = [
    "--max_steps", "2", "--num_generations", "4", "--per_device_train_batch_size", "16",
    "--max_completion_length", "24", "--max_train_problems", "32",
    "--max_heldout_problems", "4", "--heldout_samples", "2", "--eval_steps", "2",
]

# Metrics each method must log besides TRL's own (reward, reward_std, completions/mean_length, …).
METHOD_METRICS = {
    "ground_truth": ["rollout_accuracy", "label_accuracy"],
    "majority_vote": [
        "label_accuracy", "reward_accuracy", "majority_ratio", "no_answer_rate", "answer_in_question_share"
    ],
    "self_certainty": ["self_certainty", "rollout_accuracy"],
    "entropy": ["mean_entropy", "rollout_accuracy"],
    "co_rewarding_i": [
        "label_accuracy", "original/label_accuracy", "rephrased/label_accuracy", "view_agreement"
    ],
    "co_rewarding_ii": [
        "label_accuracy", "teacher/rate", "teacher_policy_agreement", "teacher/no_answer_rate"
    ],
    "co_rewarding_iii": ["label_accuracy", "teacher/rate", "teacher_policy_agreement"],
    # The variants and ablations: recipes of the methods above.
    "majority_vote_rephrased": ["label_accuracy", "majority_ratio"],
    "majority_vote_budget": ["label_accuracy", "majority_ratio", "votes/extra_seconds"],
    "co_rewarding_ii_frozen_teacher": ["label_accuracy", "teacher/rate"],
    "co_rewarding_ii_reference": ["label_accuracy", "teacher/rate", "kl"],
    "test_time_training": ["label_accuracy", "teacher/rate"],
    "semi_supervised": ["label_accuracy", "labelled_share"],
}


# A share of rollouts, groups or questions; the rest are checked against their own ranges.
SHARES = ("accuracy", "_rate", "ratio", "share", "agreement")
NON_NEGATIVE = ("reward_std", "entropy", "mean_entropy", "self_certainty", "votes/extra_seconds")
# The method's reward per rollout: -mean entropy, a KL divergence, or 0/1 (the others).
REWARD_RANGES = {"entropy": (-math.inf, 0.0), "self_certainty": (0.0, math.inf)}


def assert_plausible(key: str, value: float) -> None:
    """A logged metric is a finite number in the range its definition allows."""
    assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
    if key == "teacher/rate" or key.endswith(SHARES):
        assert 0.0 <= value <= 1.0, (key, value)
    elif key in NON_NEGATIVE:
        assert value >= 0.0, (key, value)
    elif key == "completions/mean_length":
        assert 0 < value <= 24, (key, value)  # FAST's max_completion_length


START_GREEDY = evaluate(
    synthetic_problems("tiny", 4, "test", seed=0), TransformersBackend.load("tiny"), k=0, max_new_tokens=24
).scores.greedy_accuracy


@pytest.mark.parametrize("recipe", list(METHOD_METRICS))
def test_train_runs_every_method(recipe, tmp_path):
    """The shipped recipe on the shipped pretrained tiny model, as a user runs it, for 2 steps."""
    out = tmp_path / recipe
    result = CliRunner().invoke(
        app, ["train", "--config", f"configs/tiny/{recipe}.yaml", *FAST, "--output_dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    low, high = REWARD_RANGES.get(recipe_settings(f"tiny/{recipe}")["method"], (0.0, 1.0))
    assert all(low <= r["reward"] <= high for r in steps), [r["reward"] for r in steps]
    for key in ["reward_std", "completions/mean_length", "entropy", *METHOD_METRICS[recipe]]:
        for record in steps:
            assert_plausible(key, record[key])
    evals = [r for r in records if "eval_greedy_accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2]  # eval_on_start, then every eval_steps
    assert all("eval_sampled_accuracy" in r for r in evals)
    # Before training, held-out greedy accuracy is the shipped model's on the run's held-out problems.
    assert evals[0]["eval_greedy_accuracy"] == START_GREEDY
    settings = yaml.safe_load((out / "config.yaml").read_text())
    assert settings["method"] == recipe_settings(f"tiny/{recipe}")["method"]
    if "teacher/rate" in METHOD_METRICS[recipe]:  # a_s of the cosine schedule over the run's 2 steps
        schedule = TeacherSchedule(
            settings["teacher_rate_start"], settings["teacher_rate_end"], settings["teacher_update_interval"]
        )
        assert [r["teacher/rate"] for r in steps] == pytest.approx([schedule.rate(s, 2) for s in (1, 2)])
    if recipe == "co_rewarding_ii_frozen_teacher":
        assert all(r["teacher/rate"] == 0.0 for r in steps)
    if recipe == "test_time_training":  # it trained on the 4 held-out problems, and measured pass@k on them
        assert settings["test_time_training"] and all("eval_pass_at_k" in r for r in evals)
        assert START_GREEDY == evals[0]["eval_greedy_accuracy"]
    # docs/metrics.md explains every name the run logged.
    assert not [name for name in {n for r in records for n in r} if not in_glossary(name)]


def test_train_reports_a_bad_setting_in_one_line(tmp_path):
    result = CliRunner().invoke(
        app, ["train", "--config", "configs/tiny/majority_vote.yaml", "--method", "vibes"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: unknown method 'vibes': expected one of")


def test_train_reports_a_missing_recipe(tmp_path):
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no recipe at" in result.output


def test_train_without_trl_says_which_python_it_needs(monkeypatch):
    # TRL 1.16 installs only on Python >= 3.11: there, the training commands explain instead of failing.
    monkeypatch.setitem(sys.modules, "trl", None)
    result = CliRunner().invoke(app, ["train", "--config", "tiny/majority_vote"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(
        "error: this command trains with TRL 1.16, which needs Python >= 3.11"
    )
