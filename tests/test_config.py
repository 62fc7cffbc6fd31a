"""The config: one description per setting (its field), the help screen and docs/settings.md generated
from it, checks that change nothing, and settings left unset derived in one named step."""

import inspect
import typing
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml
from trl import GRPOConfig

from corewarding.training import config as config_module
from corewarding.training.config import SETTING_GROUPS, CoRewardingConfig, default_bf16
from corewarding.training.settings import settings_help, settings_markdown, shown_settings
from corewarding.training.settings_index import INDEX_PATH, build_index

DOCS = Path(__file__).parents[1] / "docs" / "settings.md"
FIELDS = {f.name: f for f in fields(CoRewardingConfig)}
TRL_FIELDS = {f.name: f for f in fields(GRPOConfig)}


def test_docs_settings_table_is_the_generated_one():
    assert DOCS.read_text() == settings_markdown(), (
        "docs/settings.md is out of date: write corewarding.training.settings.settings_markdown() into it"
    )


def test_the_shipped_settings_index_is_the_configs():
    assert INDEX_PATH.read_text(encoding="utf-8") == build_index().to_json(), (
        "corewarding/training/settings_index.json is out of date: "
        "python -m corewarding.training.settings_index"
    )


def test_every_declared_setting_has_a_group_and_help_and_is_shown_once():
    declared = list(inspect.get_annotations(CoRewardingConfig))
    shown = [name for names in shown_settings().values() for name in names]
    assert sorted(shown) == sorted(declared) and len(shown) == len(set(shown))
    for name in declared:
        assert FIELDS[name].metadata["help"].group in SETTING_GROUPS, name
        assert len(FIELDS[name].metadata["help"]) > 10, name
    help_lines = settings_help().splitlines()
    for name in declared:
        assert any(line.startswith(f"  --{name} ") for line in help_lines), name


def test_trl_settings_declared_again_keep_trls_type_default_and_help():
    hints = typing.get_type_hints(CoRewardingConfig)
    trl_hints = typing.get_type_hints(GRPOConfig)
    own_defaults = {  # the defaults this project changes, each described in its own help
        "output_dir", "bf16", "dataloader_pin_memory", "save_strategy", "save_steps", "save_total_limit",
        "logging_steps",
    }
    for name in inspect.get_annotations(CoRewardingConfig):
        if name not in TRL_FIELDS or name in own_defaults:
            continue
        assert hints[name] == trl_hints[name], name
        assert FIELDS[name].default == TRL_FIELDS[name].default, name
        assert FIELDS[name].metadata["help"] == TRL_FIELDS[name].metadata["help"], name


def test_bf16_left_unset_follows_the_hardware_and_an_explicit_value_is_kept(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert default_bf16(fp16=False) is True and default_bf16(fp16=True) is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert default_bf16(fp16=False) is False
    monkeypatch.undo()
    on_this_machine = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert default_bf16(fp16=False) is on_this_machine
    derived = []
    monkeypatch.setattr(config_module, "default_bf16", lambda fp16: derived.append(fp16) or False)
    assert CoRewardingConfig(bf16=None).bf16 is False and derived == [False]
    assert CoRewardingConfig(bf16=False).bf16 is False and derived == [False]  # not derived again


def test_bf16_left_unset_follows_accelerate_launch_mixed_precision(monkeypatch):
    # accelerate launch with a DeepSpeed config in bf16 on a machine without CUDA bf16 (the engines job)
    # was refused by DeepSpeed: its bf16 differed from the run's.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert default_bf16(fp16=False) is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    for precision in ("no", "fp16"):
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", precision)
        assert default_bf16(fp16=False) is False, precision


def test_config_yaml_records_the_resolved_values(tmp_path):
    recorded = yaml.safe_load(yaml.safe_dump(CoRewardingConfig(output_dir=str(tmp_path)).to_dict()))
    assert recorded["bf16"] is default_bf16(fp16=False)
    assert recorded["dataloader_pin_memory"] is torch.cuda.is_available()
    assert recorded["save_strategy"] == "steps" and recorded["output_dir"] == str(tmp_path)
    assert CoRewardingConfig(method="entropy").output_dir == "runs/entropy"


def test_stop_on_collapse_derives_an_unset_save_strategy_and_refuses_a_conflicting_one():
    collapse = {"stop_on_collapse": True, "eval_strategy": "steps", "eval_steps": 5}
    config = CoRewardingConfig(**collapse)
    assert (config.save_strategy, config.metric_for_best_model) == ("best", "eval_greedy_accuracy")
    chosen = CoRewardingConfig(**collapse, metric_for_best_model="eval_sampled_accuracy")
    assert chosen.metric_for_best_model == "eval_sampled_accuracy"
    with pytest.raises(ValueError, match="save_strategy must be best .or left unset., got steps"):
        CoRewardingConfig(**collapse, save_strategy="steps")
    # In test-time training the labels may not choose a checkpoint: the last one is kept.
    assert CoRewardingConfig(**collapse, test_time_training=True).save_strategy == "steps"
    assert CoRewardingConfig(save_strategy="no").save_strategy == "no"


def test_checking_changes_no_setting():
    config = CoRewardingConfig(method="majority_vote", stop_on_collapse=False, num_generations=4)
    before = dict(vars(config))
    config._check_settings()
    config._check_reward_model_settings()
    assert vars(config) == before


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"method": "vibes"}, "unknown method 'vibes': expected one of ground_truth, majority_vote"),
        ({"method": "majority_votes"}, r"unknown method 'majority_votes' \(did you mean majority_vote\?\)"),
        ({"vote_samples": 12}, "vote_samples must be a multiple of num_generations"),
        ({"method": "entropy", "vote_samples": 16}, "vote_samples: entropy does not vote"),
        ({"stop_on_collapse": True}, "stop_on_collapse keeps the best checkpoint"),
        ({"training_view": "both"}, "unknown training_view 'both': expected one of original, rephrased"),
        ({"reward_threshold": 1.0}, "reward_threshold must be in"),
        ({"negative_source": "assistant", "method": "cooper"}, "needs assistant_model"),
        ({"method": "co_rewarding_i", "per_device_train_batch_size": 8, "generation_batch_size": 8},
         "must be a multiple of 2 x num_generations"),
    ],
)
def test_bad_settings_are_one_clear_value_error(settings, message):
    with pytest.raises(ValueError, match=message):
        CoRewardingConfig(**settings)
