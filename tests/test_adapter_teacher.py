"""LoRA as a training path (TRL's ``use_peft`` / ``peft_config``), and Co-rewarding-II's teacher as an EMA
adapter over the policy's frozen model (corewarding/training/adapter_teacher.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from peft import IA3Config, LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.core.errors import SettingError, UserError
from corewarding.core.teacher_schedule import ema_rate
from corewarding.inference.models import load_model
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.adapter_teacher import TEACHER_ADAPTER, AdapterTeacher
from corewarding.training.config import CoRewardingConfig, lora_config
from corewarding.training.run import training_dataset
from corewarding.training import trl_internals
from corewarding.training.settings import config_from_args
from corewarding.training.trainer import CoRewardingTrainer, completion_text

# Rates large enough that the teacher's move stands out of float32 noise.
START, END = 0.3, 0.1


def lora_trainer(tmp_path, steps: int = 2, method: str = "co_rewarding_ii", peft_config=None, **settings):
    """A small trainer on the tiny model with a LoRA adapter on every linear layer: from ``peft_config``
    (TRL's argument) or, without it, from the config's ``use_peft``."""
    model, tokenizer = load_model("tiny", device="cpu")
    defaults = dict(
        method=method, output_dir=str(tmp_path), max_steps=steps, num_generations=4,
        per_device_train_batch_size=8, max_completion_length=16, learning_rate=1e-2,
        lr_scheduler_type="constant", report_to=[], disable_tqdm=True, heldout_dataset=None, seed=0,
        save_strategy="no", teacher_rate_start=START, teacher_rate_end=END,
        use_peft=peft_config is None, lora_r=4, lora_target_modules=["all-linear"], lora_dropout=0.0,
    )
    config = CoRewardingConfig(**{**defaults, **settings})
    problems = synthetic_problems("tiny", 32, "train", seed=0)
    return CoRewardingTrainer(
        model=model, args=config, train_dataset=training_dataset(problems, method, config.system_prompt),
        processing_class=tokenizer, peft_config=peft_config, reward_funcs=[shorter],
    )


def shorter(completions, **kwargs) -> list[float]:
    """A reward that differs within a group from the first step (the tiny model's first 16 tokens rarely
    hold an answer, so the label-free rewards alone would leave the policy where it is)."""
    return [-len(completion_text(c)) / 100 for c in completions]


def adapter(trainer, name: str) -> dict[str, torch.Tensor]:
    """The weights of adapter ``name``, by their name with the adapter's name taken out."""
    return {
        key.replace(f".{name}.", "."): p.detach().clone()
        for key, p in trainer.model.named_parameters() if f".{name}." in key
    }


# ------------------------------------------------------------------------------------------ settings


def test_use_peft_and_the_lora_settings_build_trls_lora_config(tmp_path):
    recipe = tmp_path / "lora.yaml"
    recipe.write_text(
        "base: tiny/co_rewarding_ii\nuse_peft: true\nlora_r: 8\nlora_target_modules: [q_proj, o_proj]\n"
    )
    from_recipe = lora_config(config_from_args(recipe, []))
    assert from_recipe.r == 8 and set(from_recipe.target_modules) == {"q_proj", "o_proj"}
    config = config_from_args(
        "tiny/co_rewarding_ii",
        ["--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8",
         "--lora_target_modules", "q_proj", "v_proj"],
    )
    lora = lora_config(config)
    assert isinstance(lora, LoraConfig)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (4, 8, 0.05)  # TRL's default dropout
    assert set(lora.target_modules) == {"q_proj", "v_proj"}
    assert lora_config(config_from_args("tiny/co_rewarding_ii", [])) is None
    # TRL's own reading of one name: "all-linear" is peft's keyword, not a module called so.
    one = lora_config(CoRewardingConfig(use_peft=True, lora_target_modules=["all-linear"], output_dir="x"))
    assert one.target_modules == "all-linear"


def test_use_peft_without_peft_is_one_line(monkeypatch):
    from corewarding.training import config

    monkeypatch.setattr(config.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SettingError, match="use_peft needs the peft package: pip install peft"):
        CoRewardingConfig(use_peft=True, output_dir="x")


def test_co_rewarding_ii_refuses_an_adapter_other_than_lora_in_one_line(tmp_path):
    with pytest.raises(UserError, match="LoRA adapter: peft_config must be a LoraConfig, got IA3Config"):
        lora_trainer(tmp_path, peft_config=IA3Config())


def test_co_rewarding_ii_with_lora_refuses_vllm_in_one_line(tmp_path):
    with pytest.raises(UserError, match="teacher adapter with transformers, not vLLM: set use_vllm false"):
        lora_trainer(tmp_path, use_vllm=True)


# Every method: the recipe's command line, LoRA on, one step on the tiny model.
LORA = [
    "--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj", "--max_steps", "1",
    "--num_generations", "4", "--per_device_train_batch_size", "8", "--max_completion_length", "16",
    "--max_train_problems", "16", "--heldout_dataset", "none", "--eval_strategy", "no",
]
METHOD_RECIPES = {
    "ground_truth": [], "majority_vote": [], "self_certainty": [], "entropy": [], "co_rewarding_i": [],
    "co_rewarding_ii": [], "co_rewarding_iii": [],
    # Cooper's reward model with a fresh head on the tiny backbone (the recipes make one first: minutes).
    "cooper": [
        "--reward_model_path", "tiny", "--make_reward_model", "false", "--reward_model_eval_data", "none"
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHOD_RECIPES))
def test_every_method_trains_a_lora_adapter_through_the_command_line(method, tmp_path):
    out = tmp_path / method
    result = CliRunner().invoke(
        app, ["train", "--config", f"tiny/{method}", *LORA, *METHOD_RECIPES[method], "--output_dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert not (out / "model.safetensors").exists()  # the final model is the adapter, as TRL saves it
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all("lora_" in key for key in weights)
    if method in ("co_rewarding_ii", "co_rewarding_iii"):
        teacher = load_file(out / "checkpoint-1" / "teacher.safetensors")
        assert teacher.keys() == {k.replace(".weight", f".{TEACHER_ADAPTER}.weight") for k in weights}


# ------------------------------------------------------------------------------------------ the teacher


class AdapterLog(TrainerCallback):
    """Before each step: the policy's and the teacher's adapters; after it: the teacher's."""

    def __init__(self, trainer):
        self.trainer, self.before, self.after = trainer, [], []

    def on_step_begin(self, args, state, control, **kwargs):
        teacher = self.trainer.teacher  # its master: T_(s−1), before the step's update
        names = [n.replace(f".{TEACHER_ADAPTER}.", ".") for n in teacher._names()]
        master = {n: m.clone() for n, m in zip(names, teacher.master)}
        self.before.append((adapter(self.trainer, "default"), master))

    def on_step_end(self, args, state, control, **kwargs):
        self.after.append(adapter(self.trainer, TEACHER_ADAPTER))


@pytest.mark.slow
def test_peft_config_from_python_trains_co_rewarding_ii_with_the_ema_of_the_adapter(tmp_path):
    """Issue 29 item 7: a ``peft_config`` from Python used to fail at step 1 (a full copy of the model as
    teacher against the PeftModel's parameters, 38 vs 54). Now the teacher is a second adapter whose weights
    obey T_s = (1 − a_s)·T_(s−1) + a_s·θ_(s−1) at every step, the base model is shared, and only the
    policy's adapter trains."""
    steps = 3
    trainer = lora_trainer(tmp_path, steps, peft_config=LoraConfig(r=4, target_modules="all-linear"))
    assert isinstance(trainer.teacher, AdapterTeacher)
    base = {k: p.detach().clone() for k, p in trainer.model.named_parameters() if "lora_" not in k}
    log = AdapterLog(trainer)
    trainer.add_callback(log)
    trainer.train()
    moved = 0.0
    for step, ((policy, teacher), after) in enumerate(zip(log.before, log.after), start=1):
        rate = ema_rate(step, steps, START, END)
        for name, value in after.items():
            expected = torch.lerp(teacher[name].double(), policy[name].double(), rate)
            assert float((value.double() - expected).abs().max()) < 1e-6, (step, name)
            moved = max(moved, float((value - teacher[name]).abs().max()))
    assert moved > 1e-3  # the teacher moved (the policy's B left zero after step 1)
    trained = [k for k, p in trainer.model.named_parameters() if p.requires_grad]
    assert trained and all(".default." in k for k in trained)
    assert all(torch.equal(p, base[k]) for k, p in trainer.model.named_parameters() if k in base)


@pytest.mark.slow
def test_the_teacher_adapter_draws_the_teachers_samples(tmp_path):
    """The same seed draws the same samples from teacher and policy while their adapters are equal; a
    perturbed teacher adapter changes the teacher's samples and not the policy's, and after the teacher's
    samples the policy's adapter is active and trainable again."""
    trainer = lora_trainer(tmp_path)
    prompts = [x["prompt"] for x in trainer.train_dataset.select(range(4))]
    prompt_ids = trl_internals.prompt_token_ids(trainer, prompts)

    def samples(teacher: bool) -> list[list[int]]:
        torch.manual_seed(0)
        if not teacher:
            return trainer._sample(trainer.model, prompt_ids * 4)
        with trainer.teacher.sampling(trainer.model) as model:
            return trainer._sample(model, prompt_ids * 4)

    policy_before, teacher_before = samples(False), samples(True)
    assert teacher_before == policy_before
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if f"lora_B.{TEACHER_ADAPTER}." in name:
                p.normal_(0, 1.0)
    assert samples(True) != teacher_before
    assert samples(False) == policy_before
    assert trainer.model.active_adapter == "default"
    grads = {k: p.requires_grad for k, p in trainer.model.named_parameters() if "lora_" in k}
    assert all(v == (".default." in k) for k, v in grads.items())


@pytest.mark.slow
def test_with_a_kl_term_the_teacher_adapter_is_the_reference(tmp_path):
    """Issue 29 item 7: with ``beta`` > 0 and LoRA the trainer failed at construction (TRL's reference model,
    None under PEFT, was taken as the teacher). The teacher adapter is now TRL's reference: a teacher
    perturbed before the first step gives a KL term there, where the policy still equals the base model (its
    B is zero), so a reference taken with the adapters disabled would give 0."""
    trainer = lora_trainer(tmp_path, steps=1, beta=0.5, logging_steps=1)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if f"lora_B.{TEACHER_ADAPTER}." in name:
                p.normal_(0, 0.5)
    trainer.train()
    assert trainer.state.log_history[0]["kl"] > 1e-3


@pytest.mark.slow
def test_a_resumed_lora_run_ends_with_the_uninterrupted_runs_adapters(tmp_path):
    """Checkpoints hold the teacher adapter (float32, ``teacher.safetensors``) beside TRL's adapter: a run
    resumed from step 2 of 3 ends with the policy's and the teacher's adapters of the uninterrupted run."""
    whole = lora_trainer(tmp_path / "whole", steps=3, save_strategy="steps", save_steps=1)
    whole.train()
    checkpoint = tmp_path / "whole" / "checkpoint-2"
    saved = load_file(checkpoint / "teacher.safetensors")
    assert saved and all(f".{TEACHER_ADAPTER}." in k and v.dtype == torch.float32 for k, v in saved.items())
    assert json.loads((checkpoint / "teacher_state.json").read_text()) == {"last_update_step": 2}
    # transformers also restores peft's copy of every adapter (ref/, in the adapter's dtype: bfloat16 under
    # ZeRO-3); without it the float32 master of teacher.safetensors alone must restore the teacher.
    shutil.rmtree(checkpoint / TEACHER_ADAPTER)
    resumed = lora_trainer(tmp_path / "resumed", steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for name in ("default", TEACHER_ADAPTER):
        expected, got = adapter(whole, name), adapter(resumed, name)
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=f"{name}: {key}")


@pytest.mark.slow
def test_a_lora_run_is_extended_republished_and_evaluated_from_its_folder(tmp_path):
    """A finished LoRA run resumed to a later step publishes its adapter over the first one (the teacher's
    folder ``ref/`` included, which a rename alone cannot replace); a publication cut short is redone from the
    last checkpoint; ``corewarding eval RUN`` loads the adapter onto its base model."""
    out = tmp_path / "run"
    args = ["train", "--config", "tiny/co_rewarding_ii", *LORA, "--output_dir", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    (out / TEACHER_ADAPTER / "stale").write_text("from step 1")
    extended = CliRunner().invoke(app, [*args, "--max_steps", "2", "--resume", "last"])
    assert extended.exit_code == 0, extended.output
    assert sorted(p.name for p in (out / TEACHER_ADAPTER).iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"
    ]
    assert not (out / ".final-model").exists() and not list(out.glob(".replaced-*"))

    (out / "adapter_model.safetensors").unlink()  # a publication cut short
    again = CliRunner().invoke(app, [*args, "--max_steps", "2", "--resume", "last"])
    assert again.exit_code == 0 and "nothing to train" in again.output, again.output
    published = load_file(out / "adapter_model.safetensors")
    saved = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    assert published.keys() == saved.keys() and all(torch.equal(published[k], saved[k]) for k in saved)
    evaluated = CliRunner().invoke(
        app, ["eval", str(out), "synthetic", "--limit", "4", "--max-new-tokens", "16"]
    )
    assert evaluated.exit_code == 0, evaluated.output


@pytest.mark.slow
def test_a_peft_model_given_with_a_kl_term_has_trls_reference_adapter_as_teacher(tmp_path):
    """A model that is already a PeftModel keeps its adapter under ``use_peft`` (TRL refuses a second
    ``peft_config``); with ``beta`` > 0 TRL copies it as its reference adapter, which becomes the teacher."""
    model, tokenizer = load_model("tiny", device="cpu")
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    config = CoRewardingConfig(
        method="co_rewarding_ii", output_dir=str(tmp_path), max_steps=1, num_generations=4, use_peft=True,
        per_device_train_batch_size=8, max_completion_length=16, report_to=[], heldout_dataset=None,
        save_strategy="no", beta=0.1,
    )
    problems = synthetic_problems("tiny", 32, "train", seed=0)
    trainer = CoRewardingTrainer(
        model=model, args=config, processing_class=tokenizer,
        train_dataset=training_dataset(problems, "co_rewarding_ii", config.system_prompt),
    )
    assert list(trainer.model.peft_config) == ["default", TEACHER_ADAPTER]
    assert trainer.teacher._names() and all("q_proj" in name for name in trainer.teacher._names())
    trainer.train()
    assert trainer.state.global_step == 1
