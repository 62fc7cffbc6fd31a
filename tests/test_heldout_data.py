"""Held-out accuracy follows the user's data: a split of their answered questions, kept out of training;
none without answers, said once; a warning when the tiny model meets questions that are not its task."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.inference.models import load_model
from corewarding.tiny.familiarity import reads_as_task
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.run import heldout_problems, training_problems
from corewarding.training.settings import load_recipe

WORD_PROBLEMS = [
    (("Natalia sold clips to {a} of her friends in April, and then she sold half as many clips in May. How "
     "many clips did Natalia sell altogether?"), lambda a: a + a // 2),
    (("Weng earns ${a} an hour for babysitting. Yesterday, she just did 2 hours of babysitting. How much did "
     "she earn?"), lambda a: 2 * a),
    (("Betty is saving money for a new wallet which costs ${a}. Her parents gave her fifteen dollars. How "
     "much more does she need?"), lambda a: a - 15),
    (("James writes a {a}-page letter to 2 different friends twice a week. How many pages does he write a "
     "week?"), lambda a: 4 * a),
]
FAST = [
    "--max_steps", "1", "--per_device_train_batch_size", "16", "--heldout_samples", "1",
    "--max_completion_length", "16", "--save_strategy", "no",
]


def train(*args):
    """``corewarding train --config tiny/majority_vote`` for one step."""
    return CliRunner().invoke(app, ["train", "--config", "tiny/majority_vote", *FAST, *args])


def word_problems(path, answers: bool = True, count: int = 40):
    """Natural-language questions (GSM8K's style) in a JSONL file, with an answer column or without."""
    rows = []
    for i in range(count):
        text, answer = WORD_PROBLEMS[i % len(WORD_PROBLEMS)]
        a = 20 + 2 * i
        rows.append({"question": text.format(a=a), **({"answer": str(answer(a))} if answers else {})})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def eval_records(folder):
    records = map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
    return [r for r in records if "eval_greedy_accuracy" in r]


def test_the_heldout_split_is_the_users_answered_questions_kept_out_of_training(tmp_path):
    data = word_problems(tmp_path / "q.jsonl")
    config = load_recipe("tiny/majority_vote", dataset=str(data), output_dir=str(tmp_path / "run"))
    assert config.heldout_dataset == "split"  # `auto` with a dataset file
    heldout, train = heldout_problems(config), training_problems(config)
    assert len(heldout) == 4 and len(train) == 36  # heldout_fraction 0.1 of 40
    assert not {p.id for p in heldout} & {p.id for p in train}
    assert all(p.question.startswith(("Natalia", "Weng", "Betty", "James")) for p in heldout)
    # The same questions whatever the seed: runs of several seeds compare on one held-out set.
    other = load_recipe("tiny/majority_vote", dataset=str(data), seed=7, output_dir=str(tmp_path / "run"))
    assert [p.id for p in heldout_problems(other)] == [p.id for p in heldout]
    # On the synthetic task nothing changes: its own test split.
    assert load_recipe("tiny/majority_vote").heldout_dataset == "synthetic"


def test_the_tiny_model_reads_its_task_and_not_word_problems():
    _, tokenizer = load_model("tiny")
    for regime in ("tiny", "tiny-shortcut", "tiny-hard"):
        assert reads_as_task(tokenizer, [p.question for p in synthetic_problems(regime, 100, "test")])
    assert not reads_as_task(tokenizer, [text.format(a=40) for text, _ in WORD_PROBLEMS])
    # Plain-English arithmetic in the task's own words (4.5 characters a token) passed the old threshold,
    # 3.5, and the model scored 0% on it.
    apples = [f"Ann has {a} apples. She buys {b} more apples. How many apples does Ann have now?"
              for a in range(2, 9) for b in range(1, 6)]
    assert not reads_as_task(tokenizer, apples)


@pytest.mark.slow
def test_training_on_word_problems_with_answers_evaluates_on_a_split_of_them(tmp_path, caplog):
    out = tmp_path / "run"
    data = word_problems(tmp_path / "q.jsonl")
    result = train("--dataset", str(data), "--output_dir", str(out))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    said = [line for line in lines if line.startswith("held-out accuracy: on 4 questions of")]
    warned = [line for line in lines if line.startswith("warning: the tiny model reads only its synthetic")]
    assert len(said) == 1 and len(warned) == 1, result.output
    # and, measured, it cannot: one line at step 0 says so and what to do (a logged warning: stderr)
    cannot = [r.getMessage() for r in caplog.records if r.getMessage().startswith("warning: at step 0")]
    assert len(cannot) == 1 and "corewarding diagnose" in cannot[0], result.output
    assert yaml.safe_load((out / "config.yaml").read_text())["heldout_dataset"] == "split"
    assert len(eval_records(out)) == 2  # at the start and at the end, on the 4 held-out word problems


@pytest.mark.slow
def test_training_on_questions_without_answers_says_once_there_is_no_heldout_accuracy(tmp_path):
    out = tmp_path / "run"
    data = word_problems(tmp_path / "q.jsonl", answers=False)
    result = train("--dataset", str(data), "--output_dir", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.count("no held-out accuracy:") == 1
    assert f"no held-out accuracy: {data} has no questions with an answer to hold out" in result.output
    assert eval_records(out) == []
    assert (out / "metrics.jsonl").read_text()  # it trained
