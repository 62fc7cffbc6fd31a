"""2-step runs of `cooper` and `cooper_static` through `corewarding train` (the trainer with Cooper's
plug-in): metrics, samples, checkpoints and resume, assistant negatives, two processes, settings."""

import inspect
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cooper_data import labelled
from stub_openai_server import Reply, StubServer
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.cooper.annotate import AnnotationSettings
from corewarding.cooper.reward_model import RewardModel, TemplateBounds
from corewarding.cooper.supervised import RewardTrainingConfig
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.callbacks import MetricsFileCallback
from corewarding.training.config import CoRewardingConfig
from corewarding.training.settings import config_from_args
from corewarding.training.trainer import CoRewardingTrainer

REPO_ROOT = Path(__file__).resolve().parents[1]


FAST = [
    "--max_steps",
    "2",
    "--num_generations",
    "4",
    "--per_device_train_batch_size",
    "16",
    "--max_completion_length",
    "24",
    "--max_train_problems",
    "32",
    "--max_heldout_problems",
    "4",
    "--heldout_samples",
    "2",
    "--eval_steps",
    "2",
]
EVERY_STEP = [
    "rm/rule_agreement",
    "rm/group_auc",
    "rm/heldout_accuracy",
    "rm/heldout_auc",
    "rm/heldout_group_auc",
    "rollout_accuracy",
]
UPDATES = ["rm/pairs", "rm/skipped_groups"]
# FAST's problems: a model folder without a pretrain.json trains on the default regime's synthetic task.
TRAINING_ANSWERS = {
    p.question: int(p.answer) for p in synthetic_problems("not-a-tiny-model", 32, "train", seed=0)
}


def scripted_rollouts(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
    """Rollout i of the batch answers its question right when i is even, one too high when odd, so every
    group has rollouts the verifier accepts and rollouts it rejects (a fresh policy is never right)."""
    tokenizer = self.processing_class
    completions = []
    for i, ids in enumerate(prompt_ids):
        prompt = tokenizer.decode(ids)
        answer = next(a for q, a in TRAINING_ANSWERS.items() if q in prompt) + i % 2
        completions.append(
            tokenizer.encode(f"so \\boxed{{{answer}}}", add_special_tokens=False) + [tokenizer.eos_token_id]
        )
    return completions, None


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("rm-data") / "labelled.jsonl"
    rows = labelled(6, "heldout") + labelled(2, "train")
    path.write_text("".join(json.dumps(asdict(row)) + "\n" for row in rows))
    return path


def run_cooper(method, out, model_dir, eval_data, *extra):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CoRewardingTrainer, "_generate_single_turn", scripted_rollouts)
        result = CliRunner().invoke(
            app,
            [
                "train",
                "--config",
                f"configs/tiny/{method}.yaml",
                *FAST,
                "--output_dir",
                str(out),
                "--model_name_or_path",
                str(model_dir),
                "--reward_model_path",
                str(model_dir),
                "--reward_model_learning_rate",
                "1e-3",
                "--reward_model_eval_data",
                str(eval_data),
                *extra,
            ],
        )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cooper_run(model_dir, eval_data, tmp_path_factory):
    """2 steps of ``cooper`` with a checkpoint after each."""
    out = tmp_path_factory.mktemp("cooper") / "run"
    return out, run_cooper(
        "cooper", out, model_dir, eval_data, "--save_strategy", "steps", "--save_steps", "1"
    )


def test_cooper_logs_its_metrics_and_updates_the_reward_model(cooper_run, model_dir):
    out, records = cooper_run
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for key in ["reward", "rewards/cooper/mean", *EVERY_STEP, *UPDATES]:
        assert all(key in r for r in steps), key
    # every group of 4 has 2 right and 2 wrong rollouts: one pair per group, one update per step
    assert all((r["rm/pairs"], r["rm/skipped_groups"]) == (4, 0) and r["rm/loss"] > 0 for r in steps)
    assert all(r["rollout_accuracy"] == 0.5 for r in steps)
    states = [json.loads((out / f"checkpoint-{s}" / "reward_model_state.json").read_text()) for s in (1, 2)]
    assert [state["steps"] for state in states] == [1, 2]
    start = RewardModel.load(model_dir).model.state_dict()
    end = RewardModel.load(out / "checkpoint-2" / "reward_model").model.state_dict()
    assert any(not torch.equal(start[k], end[k]) for k in start), "the reward model was not updated"
    assert_samples(out)


SAMPLE_KEYS = {
    "step", "question_id", "question", "reference", "completion", "answer", "verdict", "score", "reward"
}


def assert_samples(out):
    """``samples.jsonl`` holds 4 rollouts a step, a wrong one first, each with its score and verdict."""
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1] * 4 + [2] * 4
    assert all(set(line) == SAMPLE_KEYS for line in lines)
    assert [line["verdict"] for line in lines] == [False, True] * 4  # wrong ones and right ones take turns
    assert all(line["verdict"] == (line["answer"] == line["reference"]) for line in lines)
    assert all(line["reward"] == pytest.approx(1 / (1 + math.exp(-line["score"]))) for line in lines)
    assert all(f"\\boxed{{{line['answer']}}}" in line["completion"] for line in lines)


def test_a_resumed_run_cuts_its_samples_back_to_the_checkpoint(tmp_path):
    rows = [{"step": step, "score": 0.0} for step in (1, 1, 2, 2, 3)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    state = SimpleNamespace(is_world_process_zero=True, global_step=2)
    MetricsFileCallback().on_train_begin(SimpleNamespace(output_dir=str(tmp_path)), state, None)
    kept = [json.loads(line)["step"] for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert kept == [1, 1, 2, 2]


def test_resuming_restores_the_reward_model_its_optimizer_and_step(
    cooper_run, model_dir, eval_data, tmp_path
):
    whole, _ = cooper_run
    resumed = tmp_path / "resumed"
    run_cooper(
        "cooper",
        resumed,
        model_dir,
        eval_data,
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--resume",
        str(whole / "checkpoint-1"),
    )
    a, b = whole / "checkpoint-2", resumed / "checkpoint-2"
    assert (a / "reward_model_state.json").read_text() == (b / "reward_model_state.json").read_text()
    weights_a = RewardModel.load(a / "reward_model").model.state_dict()
    weights_b = RewardModel.load(b / "reward_model").model.state_dict()
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=0, atol=1e-6, msg=key)
    moments_a = torch.load(a / "reward_model_optimizer.pt", weights_only=True)["state"]
    moments_b = torch.load(b / "reward_model_optimizer.pt", weights_only=True)["state"]
    for key in moments_a:
        torch.testing.assert_close(moments_a[key]["exp_avg"], moments_b[key]["exp_avg"], rtol=0, atol=1e-6)


def test_cooper_static_keeps_its_reward_model_frozen(model_dir, eval_data, tmp_path):
    out = tmp_path / "static"
    records = run_cooper(
        "cooper_static", out, model_dir, eval_data, "--save_strategy", "steps", "--save_steps", "2"
    )
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for key in ["rewards/cooper_static/mean", *EVERY_STEP]:
        assert all(key in r for r in steps), key
    assert not any(key in r for r in steps for key in UPDATES)
    assert steps[0]["rm/heldout_accuracy"] == steps[1]["rm/heldout_accuracy"]
    assert not (out / "checkpoint-2" / "reward_model").exists()
    assert_samples(out)


ASSISTANT = ["rm/assistant_calls", "rm/assistant_cached", "rm/assistant_failed", "rm/assistant_invalid"]


def test_cooper_takes_its_negatives_from_the_stand_in_assistant(model_dir, eval_data, tmp_path):
    out = tmp_path / "assistant"
    records = run_cooper(
        "cooper", out, model_dir, eval_data, "--negative_source", "assistant", "--assistant_model", "stand-in"
    )
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        # every group has a right rollout: one assistant pair each, and no pair of two rollouts
        counts = [r[f"rm/{key}"] for key in ("pairs", "assistant_pairs", "rollout_pairs", "skipped_groups")]
        assert counts == [4, 4, 0, 0]
        assert [r[f"rm/assistant_{key}"] for key in ("failed", "invalid", "over_budget")] == [0, 0, 0]
        assert r["rm/assistant_calls"] + r["rm/assistant_cached"] == 4 and r["rm/loss"] > 0
    cache = [json.loads(line) for line in (out / "assistant_negatives.jsonl").read_text().splitlines()]
    assert len(cache) == sum(r["rm/assistant_calls"] for r in steps) and {c["backend"] for c in cache} == {
        "stand-in"
    }


def test_cooper_takes_negatives_from_an_openai_compatible_assistant_and_its_rollouts(
    model_dir, eval_data, tmp_path
):
    def positive_answer(body: dict) -> str:
        return re.search(r"boxed\{(\d+)\}", body["messages"][-1]["content"])[1]

    def reply(answer: str, attempt: int) -> Reply:
        # an even answer is echoed (right: an invalid negative), an odd one gets a wrong solution
        return Reply(content=f"so \\boxed{{{answer if int(answer) % 2 == 0 else 1000}}}")

    out = tmp_path / "both"
    with StubServer(reply, key=positive_answer) as server:
        records = run_cooper(
            "cooper", out, model_dir, eval_data, "--negative_source", "both", "--assistant_backend", "openai",
            "--assistant_model", "stub-model", "--assistant_base_url", server.url,
            "--assistant_api_key_env", "none", "--pointwise_weight", "0.5",
        )
    steps = [r for r in records if "reward" in r]
    for r in steps:
        assert r["rm/rollout_pairs"] == 4 and r["rm/assistant_pairs"] + r["rm/assistant_invalid"] == 4
        assert r["rm/pairs"] == r["rm/rollout_pairs"] + r["rm/assistant_pairs"]
        assert r["rm/assistant_failed"] == 0
        assert r["rm/pointwise_loss"] > 0 and r["rm/loss"] > 0
    assert sum(r["rm/assistant_calls"] for r in steps) == sum(server.received.values())
    assert all(sum(r[key] for r in steps) > 0 for key in ("rm/assistant_invalid", "rm/assistant_pairs"))
    assert {body["model"] for body in server.bodies} == {"stub-model"}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"method": "cooper_static", "negative_source": "both", "assistant_model": "stand-in"}, "does not"),
        ({"method": "cooper_static", "pointwise_weight": 0.5}, "does not update a reward model"),
        ({"method": "cooper", "negative_source": "teacher"}, "unknown negative_source .teacher.: expected one of"),
        ({"method": "cooper", "negative_source": "assistant"}, "needs assistant_model"),
        ({"method": "cooper", "negative_source": "both", "assistant_model": "m"}, "assistant_base_url"),
        ({"method": "cooper", "negative_source": "both", "assistant_model": "m", "assistant_backend": "x"},
         "assistant_backend must be one of"),
        ({"method": "cooper", "pointwise_weight": -0.1}, "pointwise_weight must be at least 0"),
        ({"method": "cooper", "samples_per_step": -1}, "samples_per_step"),
    ],
)
def test_reward_model_settings_are_checked_before_any_work(settings, message):
    with pytest.raises(ValueError, match=message):
        CoRewardingConfig(**settings)


def test_the_assistant_settings_are_plain_command_line_settings():
    options = "--negative_source assistant --assistant_model stand-in --assistant_api_key_env none"
    config = config_from_args("tiny/cooper", options.split())
    assert (config.negative_source, config.assistant_model, config.assistant_api_key_env) == (
        "assistant", "stand-in", None
    )
    assert (config.pointwise_weight, config.samples_per_step) == (0.0, 4)


def test_cooper_needs_the_reference_answers():
    from corewarding.data.records import Problem
    from corewarding.training.run import TrainingDataError, training_dataset

    with pytest.raises(TrainingDataError, match="reads the reference answer"):
        training_dataset([Problem("1", "What is 1+1?", None)], "cooper", None)


@pytest.mark.slow
@pytest.mark.parametrize("negative_source, pairs", [("rollouts", 4), ("both", 8)])
def test_two_processes_update_identical_replicas_as_one_process_does(
    model_dir, tmp_path, negative_source, pairs
):
    """``both``: the stand-in's negatives are written on the main process and broadcast, and a pointwise
    term is shared out like the pairs."""
    script = Path(__file__).with_name("distributed_cooper.py")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29541",
    ]
    for command, out in (([sys.executable], tmp_path / "one"), (torchrun, tmp_path / "two")):
        processes = "2" if command is torchrun else "1"
        done = subprocess.run(
            [*command, str(script), str(model_dir), str(out), processes, negative_source],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (
        json.loads((tmp_path / "one.json").read_text()),
        json.loads((tmp_path / "two.json").read_text()),
    )
    assert [(r["rm/pairs"], r["rm/skipped_groups"]) for r in one] == [(pairs, 0), (pairs, 0)]
    assert [r["rm/pairs"] for r in two] == [pairs, pairs]
    # the loss of step 2 is that of the weights after step 1: the same update in 1 and 2 processes
    for key in ("rm/loss", "rm/pointwise_loss") if negative_source == "both" else ("rm/loss",):
        assert [r[key] for r in two] == pytest.approx([r[key] for r in one], abs=1e-5), key
    single = torch.load(tmp_path / "one.0.pt")
    rank0, rank1 = torch.load(tmp_path / "two.0.pt"), torch.load(tmp_path / "two.1.pt")
    assert all(torch.equal(rank0[key], rank1[key]) for key in single)  # the replicas stay identical
    for key in single:
        # Summing in another order changes near-zero gradients by rounding, and Adam turns any
        # gradient into a step of up to the learning rate (1e-3): a few weights differ by that much.
        torch.testing.assert_close(rank0[key], single[key], rtol=0, atol=2e-3, msg=key)


def test_the_rm_commands_defaults_are_the_settings_defaults():
    from corewarding.cli.reward_model import rm_annotate, rm_train

    def defaults(command):
        return {name: p.default for name, p in inspect.signature(command).parameters.items()}

    annotate_defaults, train_defaults = defaults(rm_annotate), defaults(rm_train)
    for name in ("samples", "temperature", "max_new_tokens", "heldout_fraction"):
        assert annotate_defaults[name] == getattr(AnnotationSettings(), name), name
    for name in ("epochs", "batch_size", "learning_rate", "save_steps", "seed"):
        assert train_defaults[name] == getattr(RewardTrainingConfig(), name), name
    for name in ("question_chars", "reference_chars", "completion_chars"):
        assert train_defaults[name] == getattr(TemplateBounds(), name), name
