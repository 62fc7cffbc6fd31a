"""Cooper's reward model (cooper/reward_model.py): the template and its bounds, cutting long
sequences, the pairwise loss, its classification scores (within groups too)."""

import pytest
import torch

from corewarding.cooper.reward_model import (
    ELLIPSIS,
    RewardModel,
    TemplateBounds,
    bradley_terry_loss,
    classification_scores,
    reward_model_text,
    truncate_middle,
)
from corewarding.core.rewards import Rollouts, cooper_rewards


def test_template_puts_each_field_in_its_tags():
    text = reward_model_text("How many?", "12", "6*2=12. \\boxed{12}")
    assert text == (
        "<question>How many?</question>\n<reference_answer>12</reference_answer>\n"
        "<completion>6*2=12. \\boxed{12}</completion>"
    )


def test_truncation_keeps_head_and_tail_of_long_fields_only():
    assert truncate_middle("short", 10) == "short"
    assert truncate_middle("x" * 10, 10) == "x" * 10
    long = "START" + "m" * 1000 + "the answer is \\boxed{42}"
    cut = truncate_middle(long, 60)
    assert len(cut) == 60 and cut.startswith("START") and cut.endswith("\\boxed{42}") and ELLIPSIS in cut
    assert cut == long[:27] + ELLIPSIS + long[-28:]  # head ⌊55/2⌋, tail the rest


def test_template_bounds_apply_per_field():
    bounds = TemplateBounds(question_chars=20, reference_chars=10, completion_chars=30)
    text = reward_model_text("q" * 100, "r" * 100, "c" * 100, bounds)
    question, reference, completion = (part.split(">", 1)[1].rsplit("<", 1)[0] for part in text.split("\n"))
    assert (len(question), len(reference), len(completion)) == (20, 10, 30)
    with pytest.raises(ValueError, match="completion_chars"):
        TemplateBounds(completion_chars=3)


def test_reward_model_cuts_long_sequences_from_the_left(model_dir):
    model = RewardModel.load(model_dir, bounds=TemplateBounds(completion_chars=100_000))
    text = reward_model_text("q", "1", "7+1=8. " * 500 + "\\boxed{8}", model.bounds)
    batch = model.tokenizer([text], truncation=True, max_length=model.max_length)
    assert len(batch.input_ids[0]) == model.max_length == 256
    assert model.tokenizer.decode(batch.input_ids[0]).endswith("\\boxed{8}</completion>")
    assert len(model.scores([text, "short"])) == 2




def test_bradley_terry_loss():
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(
        0.6931, abs=1e-4
    )
    ordered = bradley_terry_loss(torch.tensor([3.0, 1.0]), torch.tensor([-3.0, 0.0]))
    assert ordered.item() == pytest.approx(
        (torch.log1p(torch.exp(torch.tensor(-6.0))) + torch.log1p(torch.exp(torch.tensor(-1.0)))).item() / 2
    )
    assert bradley_terry_loss(torch.tensor([-50.0]), torch.tensor([50.0])).item() == pytest.approx(100.0)


def test_a_reward_model_that_only_knows_which_questions_are_easy_is_no_use_to_grpo():
    # question A (positions 0-3): 3 of 4 right; question B: 1 of 4; the score is the question's ease only
    labels = [True, True, True, False, True, False, False, False]
    scores = [1.0] * 4 + [-1.0] * 4
    separated = classification_scores(scores, labels, groups=[[0, 1, 2, 3], [4, 5, 6, 7]])
    assert separated.auc == 0.75 and separated.group_auc == 0.5
    batch = Rollouts(
        ["5", "5", "5", "4", "7", "6", "6", "6"], ["A"] * 4 + ["B"] * 4, references=["5"] * 4 + ["7"] * 4
    )
    assert cooper_rewards(batch, scores).metrics["rm/group_auc"] == 0.5
