"""Cooper: the reward model's template, pair selection, pairwise updates, labelled data, BCE training,
and 2-step runs of ``cooper`` and ``cooper_static`` with checkpoints."""

import copy
import inspect
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from stub_openai_server import Reply, StubServer
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.cooper import supervised as reward_model_training
from corewarding.cooper.annotate import (
    AnnotationSettings,
    LabelledExample,
    annotate,
    label_completions,
    read_labelled,
    split_of_question,
)
from corewarding.cooper.co_training import CooperRewardModel, Pair, select_pairs, telling_samples
from corewarding.cooper.reward_model import (
    ELLIPSIS,
    RewardModel,
    TemplateBounds,
    bradley_terry_loss,
    classification_scores,
    reward_model_text,
    truncate_middle,
)
from corewarding.cooper.supervised import RewardTrainingConfig, evaluate_reward_model, train_reward_model
from corewarding.core.methods import RewardInputs, method_rewards
from corewarding.core.rewards import Rollouts, cooper_rewards
from corewarding.data.synthetic import chain_of, generate_problems, worked_solution
from corewarding.inference.generation import Completion
from corewarding.tiny.model import build_model, build_tokenizer
from corewarding.tiny.regimes import synthetic_problems, tiny_model_dir
from corewarding.training.config import CoRewardingConfig, config_from_args
from corewarding.training.callbacks import MetricsFileCallback
from corewarding.training.trainer import CoRewardingTrainer

TINY_MODEL_DIR = tiny_model_dir("tiny")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The round trip annotates this many questions of the tiny task and asserts a held-out AUC with margin
# (chance: 0.5). With the default 500 questions the reward model reaches 0.81 on the default (distractor)
# model, whose slips are harder to tell from right answers, and 1.00 on the shortcut model, whose wrong
# answers stop early (docs/results.md, Cooper).
ROUND_TRIP_PROBLEMS = 300
ROUND_TRIP_AUC = 0.65


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A freshly initialised tiny model (causal LM): the policy and, with a fresh head, the reward model."""
    path = tmp_path_factory.mktemp("tiny")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------------- template


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


# ----------------------------------------------------------------------------------- rewards and pairs


def test_cooper_reward_is_the_probability_or_its_threshold():
    batch = Rollouts(answers=["5", "4", "5", None], question_ids=[0] * 4, references=["5"] * 4)
    soft = cooper_rewards(batch, [0.0, 3.0, -3.0, -10.0])
    assert soft.rewards == pytest.approx([0.5, 0.9526, 0.0474, 0.0000454], abs=1e-4)
    # verdicts at 0.5: accept, accept (wrong), reject (right), reject -> 2 of 4 agree with the verifier
    assert soft.metrics["rm/rule_agreement"] == 0.5 and soft.metrics["rm/false_positive_rate"] == 0.5
    hard = method_rewards(
        "cooper_static",
        batch,
        RewardInputs(reward_model_scores=[0.0, 3.0, -3.0, -10.0], reward_threshold=0.9),
    )
    assert hard.rewards == [0.0, 1.0, 0.0, 0.0]
    assert hard.metrics["rm/rule_agreement"] == 0.25
    with pytest.raises(ValueError, match="reward model's scores"):
        method_rewards("cooper", batch)


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


def test_a_group_with_only_right_or_only_wrong_rollouts_gives_no_pair():
    scores = [0.0] * 4
    assert select_pairs([[0, 1, 2, 3]], [True] * 4, scores).pairs == []
    assert select_pairs([[0, 1, 2, 3]], [False] * 4, scores).skipped_groups == 1


def test_a_mixed_group_pairs_its_worst_ordered_rollouts():
    # the accepted rollout scored lowest (3) against the rejected rollout scored highest (1)
    selection = select_pairs([[0, 1, 2, 3]], [True, False, False, True], [5.0, 2.0, -1.0, 0.5])
    assert selection.pairs == [Pair(positive=3, negative=1)] and selection.skipped_groups == 0


def test_every_group_with_an_accepted_rollout_has_a_positive_for_the_assistant():
    # all right (0-1), all wrong (2-3), mixed (4-5): the assistant can give the first group a pair too
    accepted = [True, True, False, False, False, True]
    selection = select_pairs([[0, 1], [2, 3], [4, 5]], accepted, [1.0, 0.5] * 3)
    assert selection.positives == [1, 5] and selection.pairs == [Pair(5, 4)] and selection.skipped_groups == 2


def test_samples_show_the_wrong_completions_rewarded_most_and_the_right_ones_rewarded_least():
    accepted = [True, False, True, False, False, True]
    scores = [3.0, 2.5, -1.0, -2.0, 0.1, 0.0]
    assert telling_samples(accepted, scores, 4) == [1, 2, 4, 5]
    assert telling_samples([False] * 3, [0.0, 2.0, 1.0], 5) == [1, 2, 0]  # fewer than asked: all
    assert telling_samples(accepted, scores, 0) == []


def test_pairs_are_chosen_within_groups_whatever_their_layout():
    groups = [[0, 2, 4], [1, 3, 5], [6, 7]]  # interleaved groups, as a gathered batch may hold them
    accepted = [True, True, False, False, False, True, True, True]
    scores = [1.0, 0.0, 2.0, 0.0, 3.0, -1.0, 0.0, 0.0]
    selection = select_pairs(groups, accepted, scores)
    assert selection.pairs == [Pair(0, 4), Pair(5, 3)] and selection.skipped_groups == 1


def test_ties_go_to_the_earlier_rollout():
    selection = select_pairs([[0, 1, 2, 3]], [True, True, False, False], [0.0] * 4)
    assert selection.pairs == [Pair(0, 2)]


def test_bradley_terry_loss():
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(
        0.6931, abs=1e-4
    )
    ordered = bradley_terry_loss(torch.tensor([3.0, 1.0]), torch.tensor([-3.0, 0.0]))
    assert ordered.item() == pytest.approx(
        (torch.log1p(torch.exp(torch.tensor(-6.0))) + torch.log1p(torch.exp(torch.tensor(-1.0)))).item() / 2
    )
    assert bradley_terry_loss(torch.tensor([-50.0]), torch.tensor([50.0])).item() == pytest.approx(100.0)


def test_pairwise_updates_order_the_pair_and_checkpoints_restore_them(model_dir, tmp_path):
    texts = [
        reward_model_text("Start with 3. Add 4.", "7", c) for c in ("3+4=7. \\boxed{7}", "3+4=9. \\boxed{9}")
    ]
    cooper = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3)
    before = cooper.reward_model.scores(texts)
    losses = [cooper.update(texts, [Pair(0, 1)]).pairwise for _ in range(5)]
    after = cooper.reward_model.scores(texts)
    assert losses == sorted(losses, reverse=True) and after[0] - after[1] > before[0] - before[1]
    assert cooper.update(texts, []) is None and cooper.steps == 5

    cooper.save(tmp_path)
    restored = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3)
    restored.load(tmp_path)
    assert restored.steps == 5 and restored.reward_model.scores(texts) == pytest.approx(after, abs=1e-6)
    cooper.update(texts, [Pair(0, 1)])
    restored.update(texts, [Pair(0, 1)])  # the same AdamW moments: the same next step
    assert restored.reward_model.scores(texts) == pytest.approx(cooper.reward_model.scores(texts), abs=1e-6)
    with pytest.raises(FileNotFoundError, match="not saved by a cooper run"):
        restored.load(tmp_path / "elsewhere")


def toy_batch() -> tuple[list[str], list[bool], list[Pair]]:
    """Four questions, each with its worked solution, one with an arithmetic slip and one that stops
    early; pairs of the right solution with each wrong one."""
    texts, labels = [], []
    for problem in generate_problems(4, "train", seed=2):
        chain = chain_of(problem)
        for solution, right in (
            (worked_solution(chain), True),
            (worked_solution(chain, slip=(0, 1)), False),
            (worked_solution(chain, stop_early=True), False),
        ):
            texts.append(reward_model_text(problem.question, problem.answer, solution))
            labels.append(right)
    return texts, labels, [Pair(3 * k, 3 * k + j) for k in range(4) for j in (1, 2)]


def test_the_pointwise_term_pins_the_score_level_the_pairwise_loss_leaves_free(model_dir):
    texts, labels, pairs = toy_batch()
    # A reward model that accepts everything (σ(s) ≈ 0.97): a few BCE steps towards "all correct".
    accepting = RewardModel.load(model_dir)
    optimizer = torch.optim.AdamW(accepting.model.parameters(), lr=1e-3)
    for _ in range(20):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            accepting.logits(texts), torch.ones(len(texts))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def wrong_probability(model: RewardModel) -> float:
        probabilities = torch.sigmoid(torch.tensor(model.scores(texts)))
        return probabilities[[i for i, right in enumerate(labels) if not right]].mean().item()

    assert wrong_probability(accepting) > 0.9
    after = {}
    for weight in (0.0, 1.0):
        cooper = CooperRewardModel(copy.deepcopy(accepting), learning_rate=1e-3, pointwise_weight=weight)
        losses = [cooper.update(texts, pairs, labels) for _ in range(5)]
        assert all(loss.pairwise > 0 for loss in losses)
        assert all((loss.pointwise is not None) == (weight > 0) for loss in losses)
        after[weight] = wrong_probability(cooper.reward_model)
    # Ordering alone can leave wrong completions above 0.5 (a 0/1 reward at 0.5 would pay for them);
    # the cross-entropy on the verifier's labels brings them below.
    assert after[0.0] > 0.5 > after[1.0]


def test_with_a_pointwise_term_a_batch_without_pairs_still_updates(model_dir):
    texts, labels, _ = toy_batch()
    cooper = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3, pointwise_weight=0.5)
    losses = cooper.update(texts, [], labels)
    assert losses.pairwise is None and losses.pointwise > 0 and cooper.steps == 1
    pairwise_only = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3)
    assert pairwise_only.update(texts, [], labels) is None
    with pytest.raises(ValueError, match="pointwise_weight"):
        CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3, pointwise_weight=-1.0)


def test_a_frozen_reward_model_is_neither_updated_nor_checkpointed(model_dir, tmp_path):
    frozen = CooperRewardModel(RewardModel.load(model_dir), learning_rate=1e-3, frozen=True)
    assert not any(p.requires_grad for p in frozen.reward_model.model.parameters())
    for call in (lambda: frozen.update(["a", "b"], [Pair(0, 1)]), lambda: frozen.save(tmp_path)):
        with pytest.raises(RuntimeError, match="frozen"):
            call()


# ----------------------------------------------------------------------------------- labelled data


class ScriptedSampler:
    """A generation backend whose completion j of a question is right (boxed answer), wrong (answer + 1)
    or unboxed, by j mod 3."""

    description = "scripted"

    def __init__(self):
        self.asked: list[str] = []

    def generate(self, conversations, settings, on_result=None):
        out = []
        for conversation in conversations:
            question = conversation[-1]["content"]
            self.asked.append(question)
            answer = int(next(p.answer for p in PROBLEMS if p.question == question))
            forms = [f"so \\boxed{{{answer}}}", f"so \\boxed{{{answer + 1}}}", f"so it is {answer}"]
            out.append([Completion(forms[j % 3]) for j in range(settings.n)])
        return out


class YesJudge:
    description = "stub-judge"

    def __init__(self, reply="Checking... YES"):
        self.reply, self.prompts = reply, []

    def generate(self, conversations, settings, on_result=None):
        for i, conversation in enumerate(conversations):
            self.prompts.append(conversation[-1]["content"])
            on_result(i, [Completion(self.reply)])
        return [[Completion(self.reply)] for _ in conversations]


PROBLEMS = generate_problems(12, "train", seed=0)


def test_verifier_labels_and_the_judge_decides_only_what_it_cannot_parse():
    labels, labelers, answers, unclear = label_completions(
        ["q"] * 3, ["12"] * 3, ["\\boxed{12}", "\\boxed{13}", "it is 12"]
    )
    assert (labels, labelers, answers, unclear) == (
        [True, False, False],
        ["verifier"] * 3,
        ["12", "13", None],
        0,
    )
    judge = YesJudge()
    labels, labelers, _, _ = label_completions(
        ["q"] * 3, ["12"] * 3, ["\\boxed{12}", "\\boxed{13}", "it is 12"], judge=judge
    )
    assert labels == [True, False, True] and labelers == ["verifier", "verifier", "judge"]
    assert len(judge.prompts) == 1 and "<completion>it is 12</completion>" in judge.prompts[0]
    _, labelers, _, unclear = label_completions(["q"], ["12"], ["it is 12"], judge=YesJudge("hmm"))
    assert labelers == ["verifier"] and unclear == 1


def test_annotate_writes_labelled_rows_and_resumes(tmp_path):
    out = tmp_path / "data.jsonl"
    settings = AnnotationSettings(samples=3, chunk_size=4, heldout_fraction=0.5)
    sampler = ScriptedSampler()
    first = annotate(PROBLEMS[:6], sampler, out, settings, policy="scripted", progress=False)
    assert (first.written, first.positives, first.labelers) == (18, 6, {"verifier": 18})
    rows = read_labelled(out)
    assert [r.label for r in rows[:3]] == [True, False, False] and rows[0].reference == PROBLEMS[0].answer
    assert {r.split for r in rows} == {"train", "heldout"}
    assert all(r.split == split_of_question(r.question_id, 0.5) for r in rows)

    # killed in the middle of a write: a question with 2 of its 3 rows and a cut-off line
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:20])
    second = annotate(PROBLEMS, sampler, out, settings, policy="scripted", progress=False)
    assert second.done_before == 5 and second.written == 7 * 3
    assert sampler.asked[6:] == [p.question for p in PROBLEMS[5:]]
    rows = read_labelled(out)
    assert len(rows) == 36 and len({(r.question_id, r.completion) for r in rows}) == 36

    with pytest.raises(ValueError, match="other settings"):
        annotate(PROBLEMS, sampler, out, AnnotationSettings(samples=4), policy="scripted", progress=False)


def test_read_labelled_skips_a_last_line_cut_inside_a_character_and_refuses_a_junk_byte(tmp_path):
    row = LabelledExample("0", "Combien font 2 et 2 ?", "4", "Ça fait \\boxed{4}.", "4", True, "verifier", "")
    rows = [replace(row, question_id=str(i), split="train") for i in range(3)]
    lines = [(json.dumps(asdict(row), ensure_ascii=False) + "\n").encode() for row in rows]
    path = tmp_path / "data.jsonl"
    path.write_bytes(lines[0] + lines[1] + lines[2][: lines[2].index("Ç".encode()) + 1])
    assert read_labelled(path) == rows[:2]
    path.write_bytes(lines[0] + lines[1].replace(b"2 et 2", b"2 \xff 2") + lines[2])
    with pytest.raises(ValueError, match=re.escape(f"{path}:2 is not a labelled completion (not UTF-8;")):
        read_labelled(path)


def test_annotate_command_reports_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "a labelled row"}\n')
    result = CliRunner().invoke(app, ["rm", "train", str(bad), "-o", str(tmp_path / "rm")])
    assert (
        result.exit_code == 2
        and result.output.startswith("error: ")
        and "is not a labelled completion" in result.output
    )
    result = CliRunner().invoke(app, ["rm", "train", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "no labelled data at" in result.output


# ----------------------------------------------------------------------------------- BCE training


def labelled(count: int, split: str = "train") -> list[LabelledExample]:
    """Two completions of each of ``count`` questions: the right answer, and one too high."""
    rows = []
    for problem in generate_problems(count, "train", seed=1):
        for answer in (problem.answer, str(int(problem.answer) + 1)):
            right = answer == problem.answer
            completion = f"\\boxed{{{answer}}}"
            rows.append(
                LabelledExample(
                    problem.id, problem.question, problem.answer, completion, answer, right, "verifier", split
                )
            )
    return rows


@pytest.mark.slow
def test_annotate_train_score_round_trip_on_the_tiny_task(tmp_path):
    """The commands with their defaults (fewer questions): a reward model clearly better than chance."""
    if not (TINY_MODEL_DIR / "config.json").is_file():
        pytest.skip(f"the pretrained tiny model is not in {TINY_MODEL_DIR}")
    data, out = tmp_path / "data.jsonl", tmp_path / "reward_model"
    for command in (
        ["rm", "annotate", str(data), "--problems", str(ROUND_TRIP_PROBLEMS)],
        ["rm", "train", str(data), "-o", str(out)],
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
    final = json.loads((out / "rm_train.json").read_text())["epochs"][-1]
    assert final["auc"] >= ROUND_TRIP_AUC and final["balanced_accuracy"] > 0.5, final
    scored = evaluate_reward_model(RewardModel.load(out), read_labelled(data, "heldout"))
    assert asdict(scored) == {k: final[k] for k in asdict(scored)}  # the saved model is the one scored


def test_reward_model_training_resumes_to_the_weights_of_an_uninterrupted_run(
    model_dir, tmp_path, monkeypatch
):
    config = RewardTrainingConfig(epochs=2, batch_size=8, learning_rate=1e-3, save_steps=3)
    train, heldout = labelled(12), labelled(4, "heldout")
    whole = train_reward_model(
        RewardModel.load(model_dir), train, heldout, tmp_path / "whole", config, progress=False
    )
    assert (
        [e["epoch"] for e in whole.epochs] == [1, 2]
        and whole.epochs[-1]["count"] == 8
        and "group_auc" in whole.epochs[-1]
    )

    # A run that dies right after its checkpoint at step 3 (of 6), then the same call again.
    save_checkpoint = reward_model_training._save_checkpoint

    def save_and_die(*args):
        save_checkpoint(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(reward_model_training, "_save_checkpoint", save_and_die)
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(
            RewardModel.load(model_dir), train, heldout, tmp_path / "cut", config, progress=False
        )
    monkeypatch.undo()
    assert (tmp_path / "cut" / "checkpoint-3" / "checkpoint_complete.json").is_file()
    resumed = train_reward_model(
        RewardModel.load(model_dir), train, heldout, tmp_path / "cut", config, progress=False
    )
    assert resumed.resumed_from_step == 3 and resumed.epochs == whole.epochs
    texts = [reward_model_text(e.question, e.reference, e.completion) for e in heldout]
    a, b = RewardModel.load(tmp_path / "whole"), RewardModel.load(tmp_path / "cut")
    assert a.scores(texts) == pytest.approx(b.scores(texts), abs=1e-5)
    assert not list((tmp_path / "cut").glob("checkpoint-*"))

    again = train_reward_model(
        RewardModel.load(model_dir), train, heldout, tmp_path / "cut", config, progress=False
    )
    assert again.epochs == whole.epochs  # a finished run is only reported
    with pytest.raises(ValueError, match="other settings"):
        train_reward_model(
            RewardModel.load(model_dir),
            train,
            heldout,
            tmp_path / "cut",
            RewardTrainingConfig(epochs=3),
            progress=False,
        )


# ----------------------------------------------------------------------------------- training runs

# Small enough for seconds per step: 4 prompts x 4 rollouts, short completions (as the smoke tests).
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
        ({"method": "cooper", "negative_source": "teacher"}, "negative_source must be one of"),
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
