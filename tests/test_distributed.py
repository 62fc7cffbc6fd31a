"""Group-aware rewards in a 2-process run equal a 1-process run on the same completions."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corewarding.inference.model_names import tiny_model_dir

TINY_MODEL_DIR = tiny_model_dir("tiny")

SCRIPT = Path(__file__).with_name("distributed_rewards.py")
REPO_ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], env: dict) -> None:
    completed = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_give_the_rewards_and_labels_of_one(tmp_path):
    model_dir = TINY_MODEL_DIR
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    run([sys.executable, str(SCRIPT), str(model_dir), str(one), "1"], env)
    torchrun = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"
    ]
    run([*torchrun, str(SCRIPT), str(model_dir), str(two), "2"], env)
    single, double = json.loads(one.read_text()), json.loads(two.read_text())

    assert (
        set(single)
        == set(double)
        == {"majority_vote", "co_rewarding_i", "co_rewarding_ii", "self_certainty"}
    )
    for method in single:
        a, b = single[method], double[method]
        assert a["question_ids"] == b["question_ids"] and a["answers"] == b["answers"], method
        assert a["labels"] == b["labels"], method
        assert a["teacher_answers"] == b["teacher_answers"], method
        # What TRL trains on: each process's slice of the rewards, gathered in rank order. It equals the
        # rewards of the whole batch (the slices fit together) and the 1-process run's. abs: self-certainty
        # comes from logits, and padding differs by process.
        assert b["rewards"] == pytest.approx(a["rewards"], abs=1e-5), method
        for run_ in (a, b):
            assert run_["trl_rewards"] == pytest.approx(run_["rewards"], abs=1e-5), method
    # The teacher's answers are its own (scripted apart from the policy's), on both layouts.
    for run_ in (single, double):
        teacher = run_["co_rewarding_ii"]
        assert teacher["teacher_answers"] != teacher["answers"]
        assert len(teacher["teacher_answers"]) == len(teacher["answers"])

    # The 2-process layout really splits: majority voting's second group (rows 4-7) straddles the
    # two processes' halves (rows 0-5 and 6-11), and each view of a Co-rewarding-I pair is on its own
    # process (rows 0-3 and 4-7): a per-process vote would have seen half a group or one view.
    votes = single["majority_vote"]
    assert len(set(votes["question_ids"][4:8])) == 1
    pair = single["co_rewarding_i"]
    assert pair["views"] == [0] * 4 + [1] * 4 and len(set(pair["question_ids"])) == 1
    assert any(r == 1.0 for r in pair["rewards"]) and any(label is not None for label in pair["labels"])
