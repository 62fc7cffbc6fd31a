"""Every TRL internal the trainer uses exists in the installed TRL: a release that moves one fails here,
naming the member and the version."""

from __future__ import annotations

import inspect

import pytest
import trl
from transformers import Trainer
from trl import GRPOTrainer
from trl.generation.vllm_generation import VLLMGeneration

from corewarding.training import trl_internals
from corewarding.training.trainer import CoRewardingTrainer

OWNERS = {"GRPOTrainer": GRPOTrainer, "Trainer": Trainer, "VLLMGeneration": VLLMGeneration}
#: The leading parameters each method must keep (after self).
SIGNATURES = {
    "_calculate_rewards": ["inputs", "prompts", "completions", "completion_ids_list"],
    "_tokenize_prompts": ["prompts"],
    "_generate_single_turn": ["prompt_ids", "images", "multimodal_fields", "num_generations"],
    "_get_train_sampler": ["dataset"],
    "training_step": ["model", "inputs", "num_items_in_batch"],
    "_save_checkpoint": ["model", "trial"],
    "_load_optimizer_and_scheduler": ["checkpoint"],
    "_get_output_dir": ["trial"],
    "generate": ["prompts", "images", "num_generations"],
}


@pytest.mark.parametrize("owner,member,why", trl_internals.PRIVATE_MEMBERS, ids=lambda x: str(x)[:30])
def test_trl_has_the_member(owner, member, why):
    where = f"trl {trl.__version__}: {owner}.{member} ({why})"
    if owner == "instance":
        source = inspect.getsource(GRPOTrainer.__init__)
        assert f"self.{member} =" in source or f"self.{member}:" in source, f"{where} is no longer set"
        return
    cls = OWNERS[owner]
    if member == "model":  # an attribute VLLMGeneration sets
        assert "self.model = model" in inspect.getsource(cls.__init__), f"{where} is no longer set"
        return
    assert hasattr(cls, member), f"{where} is gone"
    expected = SIGNATURES.get(member)
    if expected:
        parameters = list(inspect.signature(getattr(cls, member)).parameters)[1:]
        assert parameters[: len(expected)] == expected, f"{where}: signature is now {parameters}"


def test_the_overrides_keep_trls_signatures():
    for member in ("_calculate_rewards", "_get_train_sampler", "training_step", "_save_checkpoint"):
        ours = list(inspect.signature(getattr(CoRewardingTrainer, member)).parameters)
        theirs = list(inspect.signature(getattr(GRPOTrainer, member)).parameters)
        assert ours == theirs, member


@pytest.mark.parametrize(
    "version,supported", [("1.16.0", True), ("1.16.3", True), ("1.17.0", False), ("1.15.2", False)]
)
def test_the_supported_range_is_checked_in_one_line(version, supported):
    if supported:
        trl_internals.check_trl_version(version)
        return
    with pytest.raises(ImportError) as error:
        trl_internals.check_trl_version(version)
    assert "\n" not in str(error.value) and version in str(error.value)
