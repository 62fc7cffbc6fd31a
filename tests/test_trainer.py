"""CoRewardingTrainer on the tiny model: a step changes the policy, the EMA teacher follows the float32
closed form of the run's own policy (in a bfloat16 run too), the caller's config is left as given."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from transformers import TrainerCallback

from corewarding.core.teacher_schedule import ema_rate
from corewarding.inference.models import load_model
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.config import CoRewardingConfig
from corewarding.training.precision import changed_share
from corewarding.training.run import training_dataset
from corewarding.training.trainer import CoRewardingTrainer


class ShadowEMA(TrainerCallback):
    """θ_shadow ← (1 − a_s)·θ_shadow + a_s·θ_policy in float64 before every step s, from the policy's weights
    after s − 1 steps: what the teacher must hold. Also keeps the policy's weights at the start."""

    def __init__(self, model, total_steps: int, start: float, end: float):
        self.model, self.total_steps, self.start, self.end = model, total_steps, start, end
        self.initial = [p.detach().double().clone() for p in model.parameters()]
        self.shadow = [p.clone() for p in self.initial]

    def on_step_begin(self, args, state, control, **kwargs):
        rate = ema_rate(state.global_step + 1, self.total_steps, self.start, self.end)
        for s, p in zip(self.shadow, self.model.parameters()):
            s.lerp_(p.detach().double(), rate)


def trainer_for(method: str, dtype: torch.dtype, tmp_path, steps: int, **settings) -> CoRewardingTrainer:
    model, tokenizer = load_model("tiny", device="cpu", dtype=dtype)
    config = CoRewardingConfig(
        method=method,
        output_dir=str(tmp_path),
        max_steps=steps,
        num_generations=4,
        per_device_train_batch_size=16,
        max_completion_length=32,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        report_to=[],
        disable_tqdm=True,
        heldout_dataset=None,
        seed=0,
        save_strategy="no",
        **settings,
    )
    problems = synthetic_problems("tiny", 64, "train", seed=0)
    return CoRewardingTrainer(
        model=model,
        args=config,
        train_dataset=training_dataset(problems, method, config.system_prompt),
        processing_class=tokenizer,
    )


@pytest.mark.slow
def test_a_step_changes_the_policy_and_leaves_the_config_as_given(tmp_path):
    trainer = trainer_for("ground_truth", torch.float32, tmp_path, steps=1)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert changed_share(before, [p.detach() for p in trainer.model.parameters()]) > 0.5
    assert trainer.args.reward_weights is None  # the format reward's weight 0 is TRL's, not the caller's
    assert trainer.reward_weights.tolist() == [1.0, 0.0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "dtype, beta", [(torch.float32, 0.0), (torch.bfloat16, 0.0), (torch.float32, 0.001)],
    ids=["float32", "bfloat16", "float32-kl"],
)
def test_the_teacher_holds_the_float32_ema_of_the_runs_policy(tmp_path, dtype, beta):
    """After 4 steps the teacher's master weights equal the EMA of the policy's weights at each step (the
    schedule's rate, in float64 here), whatever the run's dtype; in bfloat16 the master is float32 and the
    module that samples holds it rounded. The teacher moved: a frozen one would fail the comparison. With a
    KL term (beta > 0, the reference code's 0.001) the teacher is TRL's reference model: the KL is taken
    to the updated teacher, not to a frozen copy of the initial policy."""
    steps, start, end = 4, 0.3, 0.1  # rates large enough that the move stands out of float32 noise
    trainer = trainer_for(
        "co_rewarding_ii", dtype, tmp_path, steps, teacher_rate_start=start, teacher_rate_end=end, beta=beta
    )
    shadow = ShadowEMA(trainer.model, steps, start, end)
    trainer.add_callback(shadow)
    trainer.train()
    master = trainer.teacher.master
    assert all(m.dtype == torch.float32 for m in master)
    moved = sum(float((s - i).norm()) for s, i in zip(shadow.shadow, shadow.initial))
    error = sum(float((m.double() - s).norm()) for m, s in zip(master, shadow.shadow))
    assert moved > 0 and error < 1e-3 * moved, (error, moved)
    module = list(trainer.teacher.module.parameters())
    assert all(torch.equal(p.data, m.to(p.dtype)) for p, m in zip(module, master))
    if beta:
        reference = list(trainer.ref_model.parameters())
        assert all(torch.equal(p.data, m.to(p.dtype)) for p, m in zip(reference, master))
        assert all("kl" in r for r in trainer.state.log_history if "reward" in r)


@pytest.mark.slow
def test_co_rewarding_iii_teacher_samples_the_rephrasing_and_the_policy_the_question(tmp_path):
    """The authors' ``use_aug`` path: the teacher's samples come from ``teacher_prompt`` (the rephrasing),
    the policy's from the question; a teacher that sampled the question would fail."""
    trainer = trainer_for("co_rewarding_iii", torch.float32, tmp_path, steps=1)
    tokenizer = trainer.processing_class
    sampled_by_teacher = []
    sample = trainer._sample

    def recording_sample(model, prompt_ids):
        unwrap = trainer.accelerator.unwrap_model
        if unwrap(model) is unwrap(trainer.teacher.module):
            sampled_by_teacher.extend(tokenizer.decode(ids) for ids in prompt_ids)
        return sample(model, prompt_ids)

    trainer._sample = recording_sample
    trainer.train()
    problems = synthetic_problems("tiny", 64, "train", seed=0)
    rephrasings = {p.rephrasing for p in problems}
    questions = {p.question for p in problems}
    assert len(sampled_by_teacher) == 16  # one sample per rollout slot: 4 prompts x 4
    assert all(any(r in text for r in rephrasings) for text in sampled_by_teacher)
    assert not any(any(q in text for q in questions) for text in sampled_by_teacher)


def short_answers(completions, **kwargs) -> list[float]:
    """A TRL user's own reward function: 0.5 for a completion under 30 characters."""
    return [0.5 if len(completion) < 30 else 0.0 for completion in completions]


@pytest.mark.slow
def test_a_trl_users_script_trains_unchanged(tmp_path):
    """A TRL script — a ``prompt``-only dataset and a reward function of its own — with CoRewardingTrainer in
    place of GRPOTrainer: the method's reward and the user's are logged apart and summed."""
    from datasets import Dataset

    model, tokenizer = load_model("tiny", device="cpu")
    problems = synthetic_problems("tiny", 16, "train", seed=0)
    dataset = Dataset.from_dict({"prompt": [p.question for p in problems]})
    config = CoRewardingConfig(
        method="majority_vote",
        output_dir=str(tmp_path),
        max_steps=2,
        num_generations=4,
        per_device_train_batch_size=16,
        max_completion_length=32,
        report_to=[],
        disable_tqdm=True,
        heldout_dataset=None,
        save_strategy="no",
        logging_steps=1,
    )
    trainer = CoRewardingTrainer(
        model=model,
        reward_funcs=short_answers,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    steps = [r for r in trainer.state.log_history if "reward" in r]
    assert len(steps) == 2
    for record in steps:
        method, own = record["rewards/majority_vote/mean"], record["rewards/short_answers/mean"]
        assert 0 < method <= 1 and 0 <= own <= 0.5
        assert record["reward"] == pytest.approx(method + own, abs=1e-5)
        assert "majority_ratio" in record


def test_a_dataset_without_what_the_method_needs_is_refused_in_one_line(tmp_path):
    from datasets import Dataset

    from corewarding.core.errors import UserError

    model, tokenizer = load_model("tiny", device="cpu")
    config = CoRewardingConfig(
        method="co_rewarding_i",
        output_dir=str(tmp_path),
        heldout_dataset=None,
        per_device_train_batch_size=16,
        num_generations=8,
    )
    with pytest.raises(
        UserError, match="co_rewarding_i needs the column question_id in the training set"
    ) as error:
        CoRewardingTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_dict({"prompt": ["1+1?"] * 8}),
            processing_class=tokenizer,
        )
    assert "\n" not in str(error.value)
    ground_truth = CoRewardingConfig(method="ground_truth", output_dir=str(tmp_path), heldout_dataset=None)
    with pytest.raises(UserError, match="ground_truth needs the column answer or solution"):
        CoRewardingTrainer(
            model=model,
            args=ground_truth,
            train_dataset=Dataset.from_dict({"prompt": ["1+1?"] * 8}),
            processing_class=tokenizer,
        )


@pytest.mark.slow
def test_trls_grpo_quickstart_runs_with_only_the_class_name_changed(tmp_path, monkeypatch, caplog):
    # TRL's quickstart (docs/source/grpo_trainer.md, TRL 1.16) loads trl-lib/DeepMath-103K and a hub model;
    # the same calling form here, with a local dataset of that form (a conversational prompt, a
    # solution) and the tiny model. args left out: the run folder is the config's default, runs/<method>.
    from datasets import Dataset
    from trl.rewards import accuracy_reward

    monkeypatch.chdir(tmp_path)
    problem = synthetic_problems("tiny", 1, "train", seed=0)[0]
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": problem.question}], "solution": problem.answer}]
    )

    trainer = CoRewardingTrainer(
        model="tiny",
        reward_funcs=accuracy_reward,
        train_dataset=dataset,
    )
    trainer.train()

    assert trainer.state.global_step == 3  # one prompt a step, TRL's 3 epochs
    steps = [r for r in trainer.state.log_history if "reward" in r]
    assert len(steps) == 3 and all("rewards/accuracy_reward/mean" in r for r in steps)
    assert all("rewards/co_rewarding_ii/mean" in r for r in steps)
    assert trainer.teacher is not None and (tmp_path / "runs" / "co_rewarding_ii").is_dir()
    notes = [r.getMessage() for r in caplog.records if "plus your 1 reward function" in r.getMessage()]
    assert notes == [
        "CoRewardingTrainer trains on co_rewarding_ii's label-free reward (an EMA teacher: one more copy of "
        "the model) plus your 1 reward function, summed; choose the method with "
        "args=CoRewardingConfig(method=…), or weigh them with reward_weights (the format reward's 0 second)"
    ]


PYTHON_API_RUN = """
from corewarding.inference.models import load_model
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training import CoRewardingConfig, CoRewardingTrainer, training_dataset

model, tokenizer = load_model("tiny")
config = CoRewardingConfig(method="co_rewarding_ii", output_dir="run", max_steps=1, num_generations=2,
                           per_device_train_batch_size=4, max_completion_length=8, heldout_dataset=None,
                           eval_strategy="no", report_to="none")
dataset = training_dataset(synthetic_problems("tiny", 4, "train", seed=0), config.method, config.system_prompt)
CoRewardingTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer).train()
"""


def test_the_python_api_shows_no_deprecation_notice_only_a_library_could_act_on(tmp_path):
    # A fresh interpreter with Python's default filters, as a user's script runs: TRL 1.16 calls transformers
    # 5's renamed gradient_checkpointing* every step, and the tiny model's loading bar is noise.
    done = subprocess.run([sys.executable, "-c", PYTHON_API_RUN], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FutureWarning" not in done.stderr and "Loading weights" not in done.stderr, done.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoint-1" / "teacher_state.json").is_file()  # it trained, with its teacher


def test_the_arguments_come_in_trls_order_and_a_plain_grpo_config_is_one_line(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig

    from corewarding.core.errors import UserError

    config = CoRewardingConfig(method="majority_vote", output_dir=str(tmp_path), heldout_dataset=None)
    dataset = Dataset.from_dict({"prompt": ["1+1?"] * 8})
    trainer = CoRewardingTrainer("tiny", None, config, dataset)
    assert trainer.args is config and trainer.train_dataset is dataset
    assert trainer.reward_func_names == ["majority_vote", "format"]
    with pytest.raises(UserError, match="args is a GRPOConfig; CoRewardingTrainer takes a CoRewardingConfig"):
        CoRewardingTrainer("tiny", None, GRPOConfig(output_dir=str(tmp_path), bf16=False), dataset)


def test_co_rewarding_ii_under_fsdp1_is_refused_in_one_line():
    """FSDP1 flattens the teacher's parameters into per-process flat views: it sampled on them ('weight'
    must be 2-D) and its checkpoint held process 0's pieces only. Refused, naming FSDP2 (FSDP1 itself does
    not start on CPU processes, so the engines job cannot run it: accelerate's FSDP1 plugin asks for a
    device)."""
    from types import SimpleNamespace

    from corewarding.core.errors import UserError
    from corewarding.training.trainer import CoRewardingTrainer

    fsdp1 = SimpleNamespace(
        is_fsdp_enabled=True, args=SimpleNamespace(method="co_rewarding_ii"),
        accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=1))),
    )
    with pytest.raises(UserError, match=r"^co_rewarding_ii does not run under FSDP1 .*: use FSDP2"):
        CoRewardingTrainer._make_teacher(fsdp1, None)


def test_the_teacher_probe_records_the_teachers_majority_on_the_same_questions_every_step(tmp_path):
    """teacher_probe_problems: every step, the teacher's majority on the first N training questions, with
    their references, and its accuracy logged."""
    import json

    from corewarding.training.trainer import TEACHER_PROBE_FILE

    trainer = trainer_for("co_rewarding_ii", torch.float32, tmp_path, steps=2, teacher_probe_problems=3)
    trainer.train()
    records = [json.loads(line) for line in (tmp_path / TEACHER_PROBE_FILE).read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    first_three = [trainer.train_dataset[i] for i in range(3)]
    for record in records:
        assert record["references"] == [row["answer"] for row in first_three]
        assert len(record["labels"]) == 3 and len(set(record["question_ids"])) == 3
    logged = [r["teacher_probe/label_accuracy"] for r in trainer.state.log_history if "reward" in r]
    right = [sum(a == b for a, b in zip(r["references"], r["labels"])) / 3 for r in records]
    assert logged == pytest.approx(right)


@pytest.mark.parametrize(
    "extraction,expected",
    [("boxed", [None, "60"]), ("last_number", ["60", "61"])],
)
def test_rewards_read_answers_as_answer_extraction_says(tmp_path, extraction, expected):
    trainer = trainer_for("ground_truth", torch.float32, tmp_path, steps=1, answer_extraction=extraction)
    inputs = [{"question_id": 0, "answer": "60", "prompt": "What is 23 + 37?"}] * 2
    completions = ["23 + 37 = 60", r"\boxed{60}, or 61"]
    local = trainer._local_reward_inputs(inputs, [x["prompt"] for x in inputs], completions, None)
    assert local["answers"] == expected
