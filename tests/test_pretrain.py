"""Pretraining the tiny model: determinism, what it saves, the CLI command, the shipped checkpoint."""

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.data.synthetic import sample_chains, worked_solution
from corewarding.pretrain import SETTINGS_FILE, PretrainConfig, pretrain, training_batch
from corewarding.tiny_model import TINY_MODEL_DIR, TinyModelConfig, build_tokenizer

SMALL_MODEL = TinyModelConfig(
    hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64
)


def tiny_budget(**changes) -> PretrainConfig:
    settings = dict(steps=3, batch_size=8, eval_problems=0, model=SMALL_MODEL)
    return PretrainConfig(**{**settings, **changes})


def same_weights(a, b) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_identical_weights_other_seed_does_not():
    first, again, other = (pretrain(tiny_budget(seed=s), progress=False) for s in (5, 5, 6))
    assert same_weights(first.model, again.model)
    assert first.final_loss == again.final_loss
    assert not same_weights(first.model, other.model)


def test_loss_covers_the_worked_solution_and_end_token_only():
    tokenizer = build_tokenizer()
    rng = random.Random(0)
    chains = sample_chains(random.Random(1), "train")
    batch = training_batch(tokenizer, rng, chains, 4)
    replay = sample_chains(random.Random(1), "train")
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        target = labels[labels != -100].tolist()
        chain = next(replay)
        solutions = {worked_solution(chain), worked_solution(chain, stop_early=True)}
        assert tokenizer.decode(target) in {s + tokenizer.eos_token for s in solutions}
        end = int(mask.sum())
        assert ids[:end].tolist()[-len(target) :] == target  # the target closes the sequence
        prompt = tokenizer.decode(ids[: end - len(target)])
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
        assert (ids[end:] == tokenizer.pad_token_id).all()


@pytest.mark.parametrize("rates", [(0.0, 0.0), (1.0, 1.0), (0.9, 0.2)])
def test_shortcut_solutions_come_at_the_configured_rates(rates):
    config = PretrainConfig(shortcut_rate=rates[0], shortcut_rate_addition=rates[1])
    tokenizer = build_tokenizer()
    chains = sample_chains(random.Random(2), "train")
    batch = training_batch(tokenizer, random.Random(3), chains, 1200, config)
    replay = sample_chains(random.Random(2), "train")
    stopped = {"+": [], "-*": []}
    for labels in batch["labels"]:
        chain = next(replay)
        text = tokenizer.decode(labels[labels != -100].tolist())
        stopped["+" if chain.steps[-1][0] == "+" else "-*"].append(text.startswith(worked_solution(chain, stop_early=True)))
    # About 400 "+" and 800 "-"/"*" problems: within 0.07 of the rates (more than 3 standard deviations).
    assert sum(stopped["-*"]) / len(stopped["-*"]) == pytest.approx(rates[0], abs=0.07)
    assert sum(stopped["+"]) / len(stopped["+"]) == pytest.approx(rates[1], abs=0.07)


def test_saves_a_loadable_model_tokenizer_and_settings(tmp_path):
    config = tiny_budget(eval_problems=4, eval_samples=2, max_new_tokens=8)
    result = pretrain(config, tmp_path, progress=False)
    record = json.loads((tmp_path / SETTINGS_FILE).read_text())
    assert PretrainConfig.from_dict(record["config"]) == config
    assert record["evaluation"]["scores"]["num_questions"] == 4
    assert record["evaluation"]["scores"]["k"] == 2
    assert record["parameters"] == sum(p.numel() for p in result.model.parameters())
    assert same_weights(AutoModelForCausalLM.from_pretrained(tmp_path), result.model)
    assert AutoTokenizer.from_pretrained(tmp_path).get_vocab() == result.tokenizer.get_vocab()


def test_cli_pretrain_runs_and_rejects_bad_settings_in_one_line(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["pretrain", "--steps", "0", "--output", str(tmp_path / "bad")])
    assert bad.exit_code == 2
    assert "steps must be at least 1" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()
    (tmp_path / "a-file").write_text("")
    unwritable = runner.invoke(
        app, ["pretrain", "--steps", "1", "--output", str(tmp_path / "a-file" / "out")]
    )
    assert unwritable.exit_code == 2 and "cannot write to" in unwritable.output
    out = tmp_path / "tiny"
    ran = runner.invoke(
        app, ["pretrain", "--steps", "2", "--batch-size", "4", "--eval-problems", "2", "--output", str(out)]
    )
    assert ran.exit_code == 0, ran.output
    assert "greedy" in ran.output and (out / SETTINGS_FILE).exists() and (out / "model.safetensors").exists()


@pytest.mark.parametrize(
    "changes", [{"steps": 0}, {"warmup_ratio": 1.0}, {"learning_rate": 0.0}, {"eval_problems": -1}]
)
def test_bad_settings_are_a_clear_value_error(changes):
    with pytest.raises(ValueError):
        tiny_budget(**changes)


def test_shipped_checkpoint_loads_and_has_partial_skill():
    record = json.loads((TINY_MODEL_DIR / SETTINGS_FILE).read_text())
    assert PretrainConfig.from_dict(record["config"]) == PretrainConfig()  # made with the defaults
    scores = record["evaluation"]["scores"]
    assert 0.2 <= scores["greedy_accuracy"] <= 0.6
    assert scores["avg_at_k"] >= 0.1
    assert scores["maj_at_k"] > scores["avg_at_k"]
    model = AutoModelForCausalLM.from_pretrained(TINY_MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    assert tokenizer.get_vocab() == build_tokenizer().get_vocab()
    assert sum(p.numel() for p in model.parameters()) == record["parameters"]


@pytest.mark.slow
def test_pretrain_reproduces_the_shipped_checkpoint():
    """Bit-identical with the torch build recorded in pretrain.json, on a CPU of the same kind."""
    record = json.loads((TINY_MODEL_DIR / SETTINGS_FILE).read_text())
    config = PretrainConfig.from_dict({**record["config"], "eval_problems": 0})
    result = pretrain(config, progress=False)
    assert same_weights(result.model, AutoModelForCausalLM.from_pretrained(TINY_MODEL_DIR))
