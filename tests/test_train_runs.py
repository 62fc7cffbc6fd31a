"""`corewarding train` as a user meets it: their own unlabelled questions, default checkpoints and
`--resume last`, a run folder that is never mixed, one-line errors, and a closing summary."""

import json

import pytest
import torch
from typer.testing import CliRunner

from corewarding.cli import app

FAST = [
    "--max_steps", "2", "--num_generations", "4", "--per_device_train_batch_size", "16",
    "--max_completion_length", "24", "--heldout_dataset", "none", "--eval_strategy", "no",
]


def train(*args):
    return CliRunner().invoke(app, ["train", *args])


def steps(out) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "reward" in r]


@pytest.fixture
def questions(tmp_path):
    """A questions-only JSONL, as a user brings it: no answers, their own column name."""
    path = tmp_path / "questions.jsonl"
    rows = [
        {"text": f"Start with {n}. Add {n % 5 + 1}. Multiply by 2. What is the result?"} for n in range(1, 13)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.slow
def test_label_free_training_on_a_questions_only_file_logs_what_it_can(questions, tmp_path):
    out = tmp_path / "run"
    result = train("--config", "tiny/co_rewarding_ii", "--dataset", str(questions), "--dataset_columns",
                   "question=text", "--output_dir", str(out), *FAST)
    assert result.exit_code == 0, result.output
    records = [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"reward"' in line
    ]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:  # without references: no label accuracy, but what a label-free run can know
        assert "label_accuracy" not in record and "rollout_accuracy" not in record
        assert {"majority_ratio", "no_answer_rate", "teacher_policy_agreement"} <= set(record)
    assert f"corewarding report {out}" in result.output and "2 steps" in result.output
    card = (out / "README.md").read_text()
    assert (
        "base_model: tiny" in card
        and "co_rewarding_ii" in card
        and str(questions) in card
        and "None" not in card
    )
    # The final model is in the run folder, as TRL leaves it: `corewarding eval RUN` reads it.
    report = tmp_path / "eval.json"
    evaluated = CliRunner().invoke(
        app, ["eval", str(out), "synthetic", "--limit", "4", "--max-new-tokens", "16", "-o", str(report)]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(report.read_text())["model"] == str(out)


def test_methods_that_need_references_say_so_in_one_line(questions, tmp_path):
    for method in ("ground_truth", "cooper"):
        result = train("--config", f"tiny/{method}", "--dataset", str(questions), "--dataset_columns",
                       "question=text", "--output_dir", str(tmp_path / method), *FAST)
        assert result.exit_code == 2
        assert result.output.strip().splitlines()[-1] == (
            f"error: {method} reads the reference answer: 12 of 12 problems have none (first: 0)"
        )


@pytest.mark.slow
def test_a_default_run_can_be_resumed_and_extended_and_is_never_mixed_with_another(tmp_path):
    out = tmp_path / "run"
    first = train("--config", "tiny/majority_vote", "--output_dir", str(out), *FAST)
    assert first.exit_code == 0, first.output
    assert (out / "checkpoint-2" / "checkpoint_complete.json").is_file()  # saved at the end by default

    again = train("--config", "tiny/majority_vote", "--output_dir", str(out), *FAST)
    assert again.exit_code == 2 and "already holds a run" in again.output and "--resume last" in again.output

    extended = train("--config", "tiny/majority_vote", "--output_dir", str(out), *FAST, "--max_steps", "4",
                     "--resume", "last")
    assert extended.exit_code == 0, extended.output
    assert f"resuming from {out / 'checkpoint-2'}" in extended.output.splitlines()
    assert steps(out) == [1, 2, 3, 4]  # each step once, across the two sessions

    fresh = train(
        "--config", "tiny/majority_vote", "--output_dir", str(out), *FAST, "--overwrite_output_dir", "true"
    )
    assert fresh.exit_code == 0, fresh.output
    assert steps(out) == [1, 2] and not (out / "checkpoint-4").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume", "last"], "--resume last: {out} has no complete checkpoint yet"),
        (
            ["--max_train_problems", "3"],
            "the training set has 3 prompts, fewer than one generation batch (4 prompts",
        ),
    ],
)
def test_nothing_to_resume_or_too_little_data_is_one_line(tmp_path, args, message):
    out = tmp_path / "run"
    result = train("--config", "tiny/majority_vote", "--output_dir", str(out), *FAST, *args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: " + message.format(out=out))


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = train("--config", "tiny/majority_vote", "--output_dir", str(tmp_path / "a-file"), *FAST)
    assert result.exit_code == 2
    assert (
        result.output.strip().splitlines()[-1]
        == f"error: output_dir {tmp_path / 'a-file'} is a file, not a folder"
    )


def test_pairs_nobody_checked_are_validated_before_co_rewarding_i_trains_on_them(tmp_path):
    from corewarding.data.rephrasing_prompt import REFERENCE_PLACEHOLDER

    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"question": f"Start with {n}. Add 2. What is the result?", "rephrasing": f"Begin at {n}, add 2."}
        for n in range(1, 12)
    ]
    rows[3]["rephrasing"] = REFERENCE_PLACEHOLDER  # the release's placeholder echo
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = train(
        "--config", "tiny/co_rewarding_i", "--dataset", str(pairs), "--dataset_columns",
        "question=question,rephrasing=rephrasing", "--output_dir", str(tmp_path / "run"), *FAST,
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(
        "error: 1 of 11 rephrasings fail the validator (first: 3: placeholder"
    )


@pytest.mark.slow
def test_a_final_model_cut_short_is_published_again_when_the_finished_run_is_resumed(tmp_path):
    """A crash while the final model was published (after the last checkpoint was complete) leaves the
    staging folder; resuming the finished run trains nothing and publishes the last checkpoint's model."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    args = ["--config", "tiny/majority_vote", "--output_dir", str(out), *FAST]
    assert train(*args).exit_code == 0
    (out / "model.safetensors").unlink()
    (out / ".final-model").mkdir()
    again = train(*args, "--resume", "last")
    assert again.exit_code == 0, again.output
    assert "nothing to train" in again.output
    assert not (out / ".final-model").exists()
    published, saved = load_file(out / "model.safetensors"), load_file(out / "checkpoint-2" / "model.safetensors")
    assert saved.keys() <= published.keys() and all(torch.equal(published[k], saved[k]) for k in saved)


@pytest.mark.slow
def test_a_run_whose_output_is_closed_goes_quiet_and_finishes(tmp_path):
    """`corewarding train … | head -1`: the reader goes after one line; the run finishes, its folder
    complete (it ended with exit code 1, no message and no final model before)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from corewarding import checkpoints

    out = tmp_path / "run"
    command = [sys.executable, "-m", "corewarding", "train", "--config", "tiny/majority_vote", "--output_dir",
               str(out), "--save_steps", "2", *FAST]
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    piped = subprocess.run(
        ["bash", "-c", '"$@" 2>&1 | head -1; exit "${PIPESTATUS[0]}"', "bash", *command],
        env=env, cwd=repo, capture_output=True, text=True, timeout=600,
    )
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 1, piped.stdout
    assert steps(out) == [1, 2]
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    assert [p.name for p in checkpoints.complete_checkpoints(out)] == ["checkpoint-2"]
