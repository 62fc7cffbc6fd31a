"""The scripts in examples/ run as a user runs them (on the tiny model, a short budget)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_your_questions_script(tmp_path):
    questions = tmp_path / "questions.jsonl"
    rows = [{"question": f"Start with {n}. Add {n % 5 + 1}. What is the result?"} for n in range(1, 21)]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = subprocess.run(
        [
            sys.executable, str(REPO_ROOT / "examples" / "train_your_questions.py"), str(questions), "tiny",
            "2",
        ],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[1.0, 1.0, 0.0, 0.0]"
    run = tmp_path / "runs" / "my-questions"
    assert (run / "model.safetensors").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "reward" in r] == [1, 2]
    assert all("teacher_policy_agreement" in r for r in records if "reward" in r)
