"""Recipes: a base recipe under each method's, every shipped recipe valid, the paper's batch arithmetic."""

import pytest
import yaml
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.core.methods import METHODS
from corewarding.training.settings import RECIPES_DIR, load_recipe, recipe_path, recipe_settings

PAPER_METHODS = [name for name, method in METHODS.items() if method.reward_model is None]


def write(path, settings):
    path.write_text(yaml.safe_dump(settings))
    return path


def test_a_recipe_overrides_its_base_and_the_base_its_own_base(tmp_path):
    write(tmp_path / "root.yaml", {"learning_rate": 1.0, "beta": 0.5, "seed": 3})
    (tmp_path / "shared").mkdir()
    write(tmp_path / "shared" / "mid.yaml", {"base": "../root.yaml", "beta": 0.1, "max_steps": 7})
    top = write(tmp_path / "top.yaml", {"base": "shared/mid.yaml", "method": "majority_vote", "max_steps": 9})
    assert recipe_settings(top) == {
        "learning_rate": 1.0, "beta": 0.1, "seed": 3, "max_steps": 9, "method": "majority_vote"
    }
    config = load_recipe(top, seed=5)
    assert (config.learning_rate, config.beta, config.max_steps, config.seed) == (1.0, 0.1, 9, 5)


def test_recipe_bases_that_cycle_or_are_missing_are_refused(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml", "beta": 0.1})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ValueError, match="cycle"):
        recipe_settings(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", {"base": "gone.yaml"})
    with pytest.raises(
        FileNotFoundError, match="its base gone.yaml is neither a file beside it nor a shipped recipe"
    ):
        recipe_settings(tmp_path / "c.yaml")
    # A shipped recipe's name works as a base from anywhere.
    write(tmp_path / "mine.yaml", {"base": "tiny/_common", "method": "majority_vote", "max_steps": 3})
    assert load_recipe(tmp_path / "mine.yaml").max_steps == 3
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="YAML mapping"):
        recipe_settings(tmp_path / "list.yaml")


def test_shared_bases_are_not_offered_as_recipes():
    with pytest.raises(FileNotFoundError) as error:
        recipe_path("tiny/nope")
    assert "tiny/co_rewarding_ii" in str(error.value) and "paper/co_rewarding_i" in str(error.value)
    assert "tiny/_common" not in str(error.value) and "paper/_reference" not in str(error.value)


# What each family's recipes hold beyond its shared settings: the tiny family's budget (the demo and the
# study compare runs that differ only in the method), and SmolLM2's answers (the model never boxes: every
# reward, the teacher's labels and the held-out score read the last number).
FAMILY_SETTINGS = {
    "tiny": {"max_steps": 40, "learning_rate": 1e-4, "num_generations": 8},
    "smollm2": {"answer_extraction": "last_number", "dataset": "arithmetic", "model_name_or_path": "smollm2"},
}


# The tiny family also ships variants (a frozen teacher, a bigger budget...) with their own settings.
METHOD_RECIPES = [("tiny", method) for method in METHODS] + [
    ("smollm2", path.stem) for path in sorted((RECIPES_DIR / "smollm2").glob("[!_]*.yaml"))
]


@pytest.mark.parametrize("family, name", METHOD_RECIPES)
def test_every_family_recipe_is_its_method_on_the_shared_settings(family, name):
    config = load_recipe(f"{family}/{name}")
    common = yaml.safe_load((RECIPES_DIR / family / "_common.yaml").read_text())
    assert config.method == name and config.output_dir == f"runs/{family}/{name}"
    settings = recipe_settings(f"{family}/{name}")
    assert {key: settings[key] for key in common} == common
    assert {key: getattr(config, key) for key in FAMILY_SETTINGS[family]} == FAMILY_SETTINGS[family]


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_paper_recipes_restate_the_reference_runs(method):
    # bf16 needs a GPU; everything else is checked as a GPU user gets it.
    config = load_recipe(f"paper/{method}", bf16=False)
    views = 2 if METHODS[method].paired_views else 1
    gpus = yaml.safe_load((RECIPES_DIR / "paper" / "accelerate" / "zero2.yaml").read_text())["num_processes"]
    rollouts = config.per_device_train_batch_size * config.gradient_accumulation_steps * gpus
    assert rollouts == 128 * views * config.num_generations  # 128 prompts (pairs) x 8 per optimizer step
    assert (config.num_generations, config.temperature, config.max_completion_length) == (8, 1.0, 3072)
    assert (config.learning_rate, config.lr_scheduler_type, config.weight_decay) == (3e-6, "cosine", 0.01)
    assert config.get_warmup_steps(176) == 18 and config.num_iterations == 1 and config.epsilon == 0.2
    assert config.beta == (0.001 if METHODS[method].needs_teacher else 0.005)
    assert config.use_vllm and config.vllm_mode == "colocate"


def test_train_refuses_a_recipe_with_an_unknown_setting(tmp_path):
    recipe = write(
        tmp_path / "r.yaml", {"base": str(RECIPES_DIR / "tiny" / "majority_vote.yaml"), "lerning_rate": 1}
    )
    result = CliRunner().invoke(app, ["train", "--config", str(recipe)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: recipe {recipe.resolve()}:2: unknown setting lerning_rate (did you mean learning_rate?)"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max_stpes", "3"], "error: command line: unknown setting --max_stpes (did you mean max_steps?)"),
        (["--max_steps", "-1"], None),  # TRL's "train num_train_epochs epochs": allowed
        (["--max_steps", "0"], "error: max_steps must be a positive number of steps, or -1"),
        (["--max_steps", "-5"], "error: max_steps must be a positive number of steps, or -1"),
        (["--teacher_rate_start", "1.5"], "error: rate_start must be in [0, 1], got 1.5"),
        (["--min_agreement_ratio", "2"], "error: min_ratio must be in [0, 1], got 2.0"),
        (["--learning_rate", "-0.0001"], "error: learning_rate must be positive, got -0.0001"),
        (["--max_steps", "ten"], "error: command line: --max_steps takes an integer, got 'ten'"),
        (["--method", "vibes"], "error: unknown method 'vibes': expected one of"),
        (["--method", "majority_votes"], "error: unknown method 'majority_votes' (did you mean majority_vote?)"),
        (["--learning_rate", "-1e-5"], "error: learning_rate must be positive, got -1e-05"),
        (["--learning-rate", "-1e-5"], "error: learning_rate must be positive, got -1e-05"),
    ],
)
def test_train_refuses_bad_settings_in_one_line_before_any_work(tmp_path, args, message):
    # The dataset has no question column on purpose: a bad setting must be reported before the data is read.
    unreadable = tmp_path / "unreadable.jsonl"
    unreadable.write_text('{"text": "What is 2 + 2?"}\n')
    result = CliRunner().invoke(
        app, ["train", "--config", "tiny/co_rewarding_ii", "--dataset", str(unreadable),
              "--output_dir", str(tmp_path / "run"), *args],
    )
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    if message is None:
        assert "unreadable.jsonl" in last  # the settings were fine; the data was the next thing checked
    else:
        assert last.startswith(message), last
    assert not (tmp_path / "run").exists()


def test_train_help_lists_every_setting_by_group_with_the_recipes_values():
    result = CliRunner().invoke(app, ["train", "--config", "tiny/co_rewarding_ii", "--help"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for group in ("method:", "data:", "teacher (co_rewarding_ii):", "optimisation (transformers):"):
        assert group in lines
    values = {
        line.split()[0]: line.split()[1]
        for line in lines
        if line.startswith("  --") and len(line.split()) > 1
    }
    assert values["--max_steps"] == "40" and values["--learning_rate"] == "0.0001"
    assert values["--teacher_rate_start"] == "0.01" and values["--method"] == "co_rewarding_ii"
