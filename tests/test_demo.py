"""The demo as a newcomer runs it (`corewarding demo --quick`), end to end on a 2-step budget."""

import json

import pytest
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.demo import BUDGETS, DEFAULT_BUDGET, DEMO_METHODS, QUICK_BUDGET, budget_for
from corewarding.training.settings import load_recipe


def report_rows(path) -> dict[str, dict[str, str]]:
    lines = path.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| run |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == len(columns) and cells[0] != "run":
            rows[cells[1]] = dict(zip(columns, cells))
    return rows


@pytest.mark.slow
def test_quick_demo_writes_a_report_with_every_method_and_a_figure_and_refuses_to_mix_runs(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--quick", "--steps", "2", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{len(DEMO_METHODS)} methods in" in result.output
    assert "What to look for: " in result.output and "Next: your own questions" in result.output

    rows = report_rows(tmp_path / "report.md")
    assert sorted(rows) == sorted(DEMO_METHODS)
    for method, row in rows.items():
        records = [
            json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in records if "reward" in r] == [1, 2]
        evaluations = [r for r in records if "eval_greedy_accuracy" in r]
        assert [r["step"] for r in evaluations] == [0, 2]
        # The report's cells are the run's numbers, in %.
        assert float(row["steps"]) == 2
        assert float(row["greedy start %"]) == pytest.approx(
            100 * evaluations[0]["eval_greedy_accuracy"], abs=0.05
        )
        assert float(row["greedy final %"]) == pytest.approx(
            100 * evaluations[-1]["eval_greedy_accuracy"], abs=0.05
        )
        assert float(row["sampled final %"]) == pytest.approx(
            100 * evaluations[-1]["eval_sampled_accuracy"], abs=0.05
        )
        rewards = [r["reward"] for r in records if "reward" in r]
        assert float(row["reward"]) == pytest.approx(sum(rewards) / len(rewards), abs=5e-4)
        # Same model, data and seed: every method starts from the same held-out accuracy.
        assert row["greedy start %"] == rows["ground_truth"]["greedy start %"]
        assert row["sampled start %"] == rows["ground_truth"]["sampled start %"]
        assert (row["label acc. %"] == "–") == (method in ("self_certainty", "entropy"))  # no vote, no label

    figure = tmp_path / "curves.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000

    # A second demo into the same folder is refused in one line; with --overwrite the old runs are gone.
    again = CliRunner().invoke(
        app, ["demo", "--quick", "--steps", "1", "--methods", "majority_vote", "-o", str(tmp_path)]
    )
    assert again.exit_code == 2 and "already holds a demo" in again.output and "--overwrite" in again.output
    (tmp_path / "majority_vote" / "collapse.json").write_text("{}")  # a stale file of the old run
    replaced = CliRunner().invoke(
        app,
        ["demo", "--quick", "--steps", "1", "--methods", "majority_vote", "--overwrite", "-o", str(tmp_path)],
    )
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["majority_vote"]
    assert not (tmp_path / "majority_vote" / "collapse.json").exists()
    assert list(report_rows(tmp_path / "report.md")) == ["majority_vote"]


def test_budgets_are_identical_across_methods_and_steps_override_length_only():
    assert budget_for(False, None) == DEFAULT_BUDGET and budget_for(True, None) == QUICK_BUDGET
    custom = budget_for(True, 5)
    assert custom.steps == 5 and custom.eval_steps == QUICK_BUDGET.eval_steps
    assert budget_for(False, None, "smollm2") == BUDGETS["smollm2"][0]
    assert load_recipe("smollm2/majority_vote").max_steps == BUDGETS["smollm2"][0].steps


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "ground_truth,vibes"], "error: unknown method 'vibes'"),
        (["--regime", "noisy"], "error: unknown regime 'noisy'"),
        (["--model", "gpt5"], "error: unknown model 'gpt5'"),
        (["--model", "smollm2", "--methods", "cooper"], "error: unknown method 'cooper'"),
    ],
)
def test_demo_refuses_bad_input_in_one_line(tmp_path, args, message):
    result = CliRunner().invoke(app, ["demo", *args, "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(message)


def test_demo_into_a_file_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(app, ["demo", "--methods", "majority_vote", "-o", str(tmp_path / "a-file")])
    assert (
        result.exit_code == 2
        and result.output.strip() == f"error: demo output {tmp_path / 'a-file'} is a file, not a folder"
    )


@pytest.mark.slow
def test_a_signal_stops_the_demo_at_a_steps_end_in_one_line(tmp_path):
    """SIGUSR1 (Slurm's warning) during the first method: it stops at that step's end, exit code 75, and
    the methods after it do not start."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from corewarding.core.collapse import read_metrics

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "corewarding", "demo", "--quick", "--steps", "6", "--methods",
               "majority_vote,ground_truth", "-o", str(tmp_path)]
    metrics = tmp_path / "majority_vote" / "metrics.jsonl"
    with open(tmp_path / "log", "w") as log:
        demo = subprocess.Popen(command, env=env, cwd=repo, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while not (metrics.is_file() and any("reward" in r for r in read_metrics(metrics))):
        assert demo.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()[-3000:]
        time.sleep(0.1)
    demo.send_signal(signal.SIGUSR1)
    assert demo.wait(timeout=600) == 75, (tmp_path / "log").read_text()[-3000:]
    step = max(r["step"] for r in read_metrics(metrics) if "reward" in r)
    assert 2 <= step < 6
    assert (tmp_path / "log").read_text().strip().splitlines()[-1] == (
        f"stopped by SIGUSR1 at step {step} of majority_vote: the finished methods' runs (none) are in "
        f"{tmp_path}; a demo does not resume: run it again with --overwrite"
    )
    assert not (tmp_path / "ground_truth").exists() and not (tmp_path / "report.md").exists()
