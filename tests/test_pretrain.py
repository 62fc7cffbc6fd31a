"""Pretraining the tiny model: the corpus's mistakes, determinism, what it saves, the CLI, the shipped
models."""

import json
import random
from dataclasses import replace
from statistics import fmean

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.data.synthetic import (
    Chain,
    SurfaceForm,
    TaskConfig,
    generate_problems,
    sample_chains,
    worked_solution,
)
from corewarding.inference.generation import TransformersBackend
from corewarding.inference.model_names import tiny_model_dir
from corewarding.tiny.model import TinyModelConfig, build_tokenizer
from corewarding.tiny.pretraining import (
    SETTINGS_FILE,
    PretrainConfig,
    corpus_solution,
    pretrain,
    training_batch,
)
from corewarding.inference.model_names import shipped_regimes
from corewarding.tiny.regimes import DEFAULT_REGIME, REGIMES, synthetic_task
from corewarding.tiny.view_diagnostics import measure_views

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
    assert first.loss_curve == again.loss_curve and len(first.loss_curve) == 1
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
        # no mistakes by default
        assert tokenizer.decode(target) == worked_solution(chain) + tokenizer.eos_token
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
        stopped["+" if chain.steps[-1][0] == "+" else "-*"].append(
            text.startswith(worked_solution(chain, stop_early=True))
        )
    # About 400 "+" and 800 "-"/"*" problems: within 0.07 of the rates (more than 3 standard deviations).
    assert sum(stopped["-*"]) / len(stopped["-*"]) == pytest.approx(rates[0], abs=0.07)
    assert sum(stopped["+"]) / len(stopped["+"]) == pytest.approx(rates[1], abs=0.07)


def test_slips_and_irrelevant_numbers_come_at_the_configured_rates():
    config = PretrainConfig(slip_rate=0.4, distractor_use_rate=0.7)
    chain, rng = Chain.from_key("7+5*2"), random.Random(0)
    right = worked_solution(chain)
    distracted = [corpus_solution(chain, SurfaceForm("…", 0, distractor=4), rng, config) for _ in range(2000)]
    clean = [corpus_solution(chain, SurfaceForm("…", 0), rng, config) for _ in range(2000)]
    uses = [
        s.endswith("\\boxed{" + s.split("=")[-1].split(".")[0] + "}") and "+4=" in s.split(". ")[-2]
        for s in distracted
    ]
    # 2,000 draws: within 0.04 (more than 3 standard deviations).
    assert fmean("24+4=" in s or ". 2" in s and "+4=" in s for s in distracted) == pytest.approx(
        0.7, abs=0.04
    )
    assert fmean(s != right for s in clean) == pytest.approx(0.4, abs=0.04)
    assert all("+4=" not in s for s in clean)  # a form without an irrelevant number is never distracted
    assert any(uses)
    # Every slip is a small change of one step's result, and the later steps compute from it.
    for solution in clean:
        steps = [s.rstrip(".") for s in solution.split(" ")[:-1]]
        results = [int(step.split("=")[1]) for step in steps]
        assert [int(steps[1].split("*")[0])] == [results[0]] and 1 <= results[0]
        if results[0] != 12:  # the first step slipped: the second computes from its result
            assert abs(results[0] - 12) <= config.slip_max and results[1] == results[0] * 2
        else:  # only the second step can have slipped
            assert abs(results[1] - 24) <= config.slip_max
    slipped_first = sum(int(s.split("=")[1].split(".")[0]) != 12 for s in clean)
    assert 0 < slipped_first < sum(s != right for s in clean)  # slips in either step
    with pytest.raises(ValueError, match="slip_rate"):
        PretrainConfig(slip_rate=1.5)
    with pytest.raises(ValueError, match="slip_max"):
        PretrainConfig(slip_max=0)


def test_the_hard_corpus_stops_early_on_any_problem_and_slips_elsewhere():
    """The ``hard`` regime's premature answer does not depend on the problem (unlike ``shortcut``'s), so
    one wrong value per problem, the value before the last step, gathers a fixed share of solutions."""
    config = REGIMES["hard"].pretraining
    rng = random.Random(4)
    chains = sample_chains(random.Random(5), "train", config.task)
    stopped = {"+": [], "-*": []}
    slipped = []
    for _ in range(2400):
        chain = next(chains)
        solution = corpus_solution(chain, SurfaceForm("…", 0), rng, config)
        early = solution.count("=") == len(chain.steps) - 1
        stopped["+" if chain.steps[-1][0] == "+" else "-*"].append(early)
        if early:
            continue
        slipped.append(solution != worked_solution(chain))
        if not slipped[-1]:
            assert solution.endswith(f"\\boxed{{{chain.answer}}}")
    # About 800 "+" and 1,600 "-"/"*" problems: within 0.06 of the rate (more than 3 standard deviations).
    for share in stopped.values():
        assert fmean(share) == pytest.approx(config.shortcut_rate, abs=0.06)
    assert fmean(slipped) == pytest.approx(config.slip_rate, abs=0.05)


def test_saves_a_loadable_model_tokenizer_and_settings(tmp_path):
    task = TaskConfig(distractor_rate=0.5)
    config = tiny_budget(eval_problems=4, eval_samples=2, max_new_tokens=8, task=task, slip_rate=0.3)
    result = pretrain(config, tmp_path, progress=False)
    record = json.loads((tmp_path / SETTINGS_FILE).read_text())
    assert PretrainConfig.from_dict(record["config"]) == config
    assert record["loss_curve"] == pytest.approx(result.loss_curve)
    for split in ("train", "test"):
        figures = record["evaluation"][split]
        assert figures["question"]["num_questions"] == 4 and figures["question"]["k"] == 2
        assert sum(figures["forms"][name]["num_questions"] for name in figures["forms"]) == 16
    assert record["parameters"] == sum(p.numel() for p in result.model.parameters())
    assert same_weights(AutoModelForCausalLM.from_pretrained(tmp_path), result.model)
    assert (
        AutoTokenizer.from_pretrained(tmp_path).get_vocab()
        == result.tokenizer.get_vocab()
        == build_tokenizer(task).get_vocab()
    )
    assert synthetic_task(tmp_path) == task  # `synthetic` means the task a model was pretrained on


def test_cli_pretrain_runs_and_rejects_bad_settings_in_one_line(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["pretrain", "--steps", "0", "--output", str(tmp_path / "bad")])
    assert bad.exit_code == 2
    assert "steps must be at least 1" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()
    unknown = runner.invoke(app, ["pretrain", "--regime", "noisy", "--output", str(tmp_path / "bad")])
    assert unknown.exit_code == 2 and "unknown regime 'noisy'" in unknown.output
    (tmp_path / "a-file").write_text("")
    unwritable = runner.invoke(
        app, ["pretrain", "--steps", "1", "--output", str(tmp_path / "a-file" / "out")]
    )
    assert unwritable.exit_code == 2 and "cannot write to" in unwritable.output
    out = tmp_path / "tiny"
    ran = runner.invoke(
        app, ["pretrain", "--steps", "2", "--batch-size", "4", "--eval-problems", "2", "--slip-rate", "0.2",
              "--output", str(out)]
    )
    assert ran.exit_code == 0, ran.output
    assert "greedy" in ran.output and "other view right, own wrong" in ran.output
    record = json.loads((out / SETTINGS_FILE).read_text())
    expected = replace(
        REGIMES[DEFAULT_REGIME].pretraining, steps=2, batch_size=4, eval_problems=2, slip_rate=0.2
    )
    assert PretrainConfig.from_dict(record["config"]) == expected


@pytest.mark.parametrize(
    "changes", [{"steps": 0}, {"warmup_ratio": 1.0}, {"learning_rate": 0.0}, {"eval_problems": -1}]
)
def test_bad_settings_are_a_clear_value_error(changes):
    with pytest.raises(ValueError):
        tiny_budget(**changes)


@pytest.mark.parametrize("name", REGIMES)
def test_each_shipped_model_was_made_by_its_regime_and_loads(name):
    regime = REGIMES[name]
    record = json.loads((regime.model_dir / SETTINGS_FILE).read_text())
    assert PretrainConfig.from_dict(record["config"]) == regime.pretraining
    tokenizer = AutoTokenizer.from_pretrained(regime.model_dir)
    assert tokenizer.get_vocab() == build_tokenizer(regime.pretraining.task).get_vocab()
    model = AutoModelForCausalLM.from_pretrained(regime.model_dir)
    assert sum(p.numel() for p in model.parameters()) == record["parameters"]
    assert tiny_model_dir(f"tiny-{name}") == regime.model_dir
    assert tiny_model_dir("tiny") == REGIMES[DEFAULT_REGIME].model_dir and tiny_model_dir("tiny-x") is None
    assert shipped_regimes() == sorted(REGIMES)


@pytest.mark.slow
def test_pretraining_reproduces_the_default_regimes_loss_curve_within_noise():
    """Another CPU rounds differently, so not bit for bit: the same data stream and settings give the
    recorded loss curve within 15% over the first 300 steps of the schedule (a quarter of an hour of a
    busy core for all of it, two minutes for this)."""
    regime = REGIMES[DEFAULT_REGIME]
    record = json.loads((regime.model_dir / SETTINGS_FILE).read_text())
    result = pretrain(replace(regime.pretraining, eval_problems=0), progress=False, stop_after=300)
    assert len(result.loss_curve) == 6
    assert result.loss_curve == pytest.approx(record["loss_curve"][:6], rel=0.15)


@pytest.mark.slow
def test_the_shipped_models_have_their_regimes_properties():
    """Measured here on 100 fresh test problems (8 samples at T = 1): the distractor model has
    self-consistency headroom and wording-dependent errors, the control has neither."""
    figures = {}
    for name in ("distractor", "shortcut"):
        task = REGIMES[name].pretraining.task
        problems = generate_problems(100, "test", seed=11, config=task)
        figures[name] = measure_views(problems, TransformersBackend.load(f"tiny-{name}"), task, k=8)
    distractor, control = figures["distractor"], figures["shortcut"]
    # Targets on 500 problems: headroom >= 15 points, other view right >= 10% of pairs (margins for 100).
    assert distractor["question"]["maj_at_k"] - distractor["question"]["avg_at_k"] >= 0.10
    assert min(distractor["pairs"]["other_right_own_wrong"].values()) >= 0.06
    assert 0.15 <= distractor["question"]["avg_at_k"] <= 0.55
    assert distractor["clean"]["maj_at_k"] >= 0.9 and distractor["distracted"]["maj_at_k"] <= 0.2
    assert control["question"]["maj_at_k"] - control["question"]["avg_at_k"] <= 0.10
    assert max(control["pairs"]["other_right_own_wrong"].values()) <= 0.06


@pytest.mark.slow
def test_the_hard_model_is_often_wrong_by_majority_yet_its_majority_beats_a_sample():
    """Measured here on 100 fresh training problems (8 samples at T = 1): the ``hard`` model's majority
    is right on a minority of questions, and still more often than one sample is."""
    task = REGIMES["hard"].pretraining.task
    problems = generate_problems(100, "train", seed=11, config=task)
    figures = measure_views(problems, TransformersBackend.load("tiny-hard"), task, k=8)
    question = figures["question"]
    assert question["maj_at_k"] - question["avg_at_k"] >= 0.05
    assert max(figures["pairs"]["majority_right"].values()) <= 0.55
    assert question["avg_at_k"] <= 0.45
