"""The demo as a newcomer runs it (`corewarding demo --quick`), end to end on a 2-step budget."""

import json

import pytest
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.demo import DEFAULT_BUDGET, DEMO_METHODS, QUICK_BUDGET, budget_for


def number(cell: str) -> float:
    return float(cell)


@pytest.mark.slow
def test_quick_demo_writes_a_report_with_every_method_and_a_figure(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--quick", "--steps", "2", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{len(DEMO_METHODS)} methods in" in result.output

    lines = (tmp_path / "report.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| run |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == len(columns) and cells[0] != "run":
            rows[cells[1]] = dict(zip(columns, cells))
    assert sorted(rows) == sorted(DEMO_METHODS)
    for method, row in rows.items():
        assert number(row["steps"]) == 2
        # Evaluated before training and at the end: the same start for every method (same model, seed).
        start, best, final = (number(row[c]) for c in ("held-out start %", "best %", "final %"))
        assert 0 <= start <= best <= 100 and 0 <= final <= best
        assert start == number(rows["ground_truth"]["held-out start %"])
        assert 0 <= number(row["sampled final %"]) <= 100
        number(row["reward"])
        assert row["collapse"] == "no" or row["collapse"].startswith("step ")
        if method not in ("self_certainty", "entropy"):  # these do not vote, so there is no label
            assert 0 <= number(row["label acc. %"]) <= 100

    figure = tmp_path / "curves.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000
    for method in DEMO_METHODS:
        records = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if "reward" in r] == [1, 2]
        assert [r["step"] for r in records if "eval_greedy_accuracy" in r] == [0, 2]


def test_budgets_are_identical_across_methods_and_steps_override_length_only():
    assert budget_for(False, None) == DEFAULT_BUDGET and budget_for(True, None) == QUICK_BUDGET
    custom = budget_for(True, 5)
    assert custom.steps == 5 and custom.eval_steps == QUICK_BUDGET.eval_steps


def test_demo_refuses_an_unknown_method(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--methods", "ground_truth,vibes", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: unknown method 'vibes'")
