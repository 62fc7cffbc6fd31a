"""Every shipped recipe runs as shipped on a fresh clone: the tiny ones train through `corewarding train`
(tests/test_train_smoke.py; here the Cooper pair, from an empty folder, making their reward model first
from 16 questions instead of 500, the only change), the paper's load, validate, and are tied to the
numbers they should reproduce."""

import json

import pytest
from test_metrics_glossary import in_glossary
from test_train_smoke import METHOD_METRICS
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.cooper import on_demand
from corewarding.core.methods import METHODS
from corewarding.demo import shipped_recipes
from corewarding.training.settings import RECIPES_DIR, load_recipe

ONE_STEP = ["--max_steps", "1", "--max_heldout_problems", "8", "--heldout_samples", "1"]
RECIPES = shipped_recipes()
COOPER = [name for name, method in RECIPES.items() if METHODS[method].reward_model]


def train(recipe: str):
    return CliRunner().invoke(app, ["train", "--config", f"tiny/{recipe}", *ONE_STEP])


def assert_trained_and_explained(run):
    """The run logged a step, left its final model, and docs/metrics.md explains every name it logged."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("reward" in r for r in records) and (run / "model.safetensors").is_file()
    names = sorted({name for record in records for name in record})
    assert not [n for n in names if not in_glossary(n)], "logged but not in docs/metrics.md"


def test_every_shipped_tiny_recipe_is_trained_by_a_test():
    # The smoke test trains every recipe but Cooper's two, which the test below trains.
    assert set(METHOD_METRICS) | set(COOPER) == set(RECIPES)


@pytest.mark.slow
def test_the_cooper_recipes_make_their_reward_model_once_then_train(tmp_path, monkeypatch):
    assert sorted(COOPER) == ["cooper", "cooper_static"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(on_demand, "QUESTIONS", 16)
    first = train("cooper")
    assert first.exit_code == 0, first.output
    assert "making the reward model (once; 5 to 10 minutes on 2 CPU cores): labelling 16 questions" in (
        first.output
    )
    assert "training the reward model on them into runs/tiny/reward_model" in first.output
    assert (tmp_path / "runs/tiny/reward_model/rm_train.json").is_file()
    assert (tmp_path / "runs/tiny/rm_data.jsonl").is_file()
    second = train("cooper_static")
    assert second.exit_code == 0, second.output
    assert "making the reward model" not in second.output  # made once, then used
    for name in COOPER:
        assert_trained_and_explained(tmp_path / "runs/tiny" / name)


def test_a_reward_model_folder_of_ones_own_is_never_made_over(tmp_path):
    assert on_demand.needs_making(tmp_path / "missing")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")
    assert not on_demand.needs_making(tmp_path / "mine")
    (tmp_path / "mine" / "checkpoint-100").mkdir()  # what an interrupted `rm train` leaves
    assert on_demand.needs_making(tmp_path / "mine")


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (RECIPES_DIR / "paper").glob("[!_]*.yaml")))
def test_every_paper_recipe_loads_and_validates(recipe):
    # They name hub models and GPUs (bf16, vLLM): checked as settings, not trained here.
    config = load_recipe(f"paper/{recipe}", bf16=False)
    assert config.method in METHODS and config.model_name_or_path and config.heldout_dataset


def test_every_paper_recipe_is_tied_to_the_numbers_it_should_reproduce():
    readme = (RECIPES_DIR / "paper" / "README.md").read_text()
    section = readme.split("## What each recipe should reproduce")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for recipe in sorted(p.name for p in (RECIPES_DIR / "paper").glob("[!_]*.yaml")):
        assert any(row.startswith(f"| `{recipe}`") for row in rows), recipe
    table7 = {row.split("`")[1]: row.rsplit("|", 2)[1].strip() for row in rows if "| Table 7 |" in row}
    assert table7 == {
        "ground_truth.yaml": "69.6", "majority_vote.yaml": "65.2", "co_rewarding_i.yaml": "67.6",
        "co_rewarding_ii.yaml": "66.2", "self_certainty.yaml": "not given", "entropy.yaml": "not given",
    }
    assert "| Qwen3-1.7B-Base, before RL | MATH500 pass@1 | 57.0 |" in section
