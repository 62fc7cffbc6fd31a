"""The base-vs-trained report: the paired difference and its standard error, the reading, records that do
not match, and ``eval --compare`` on a results file through the real entry point (the code suite)."""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.core.errors import UserError
from corewarding.inference.comparison import compare_records, compare_scores

PROBLEMS = Path(__file__).parent / "fixtures" / "eval" / "code_problems.jsonl"


def test_the_difference_and_its_paired_standard_error():
    row = compare_scores("math", "set", "greedy", [0, 0, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1])
    differences = [1, 1, 0, 0, 1, 0]
    mean = 0.5
    error = math.sqrt(sum((d - mean) ** 2 for d in differences) / 5) / math.sqrt(6)
    assert (row.base, row.trained, row.difference) == (0.5, 1.0, 0.5)
    assert row.standard_error == pytest.approx(error)
    assert row.reading == "higher"  # 0.5 > 2 × 0.224


def test_readings_lower_and_level():
    assert compare_scores("code", "b", "pass@1", [1] * 8, [0] * 8).reading == "lower"
    assert compare_scores("code", "b", "pass@1", [1, 0] * 4, [0, 1] * 4).reading == "level"
    assert compare_scores("code", "b", "pass@1", [1], [1]).standard_error is None


def test_different_questions_or_benchmarks_are_one_line_errors():
    with pytest.raises(UserError, match="same questions"):
        compare_scores("math", "set", "greedy", [1, 0], [1])
    record = {"suites": {"code": {"scores": [{"benchmark": "b", "metric": "pass@1", "per_question": [1.0]}]}}}
    with pytest.raises(UserError, match="code/b/pass@1 was measured for one model only"):
        compare_records(record, {"suites": {}})


def test_eval_compare_reads_the_base_from_its_results_file(tmp_path):
    base = tmp_path / "base.json"
    common = ["--suite", "code", "--code", str(PROBLEMS), "--max-new-tokens", "8", "--threads", "1"]
    first = CliRunner().invoke(app, ["eval", "tiny-shortcut", *common, "-o", str(base)])
    assert first.exit_code == 0, first.output
    report = tmp_path / "report.json"
    second = CliRunner().invoke(app, ["eval", "tiny", *common, "--compare", str(base), "-o", str(report)])
    assert second.exit_code == 0, second.output
    assert "against" in second.output and "reading" in second.output
    record = json.loads(report.read_text())
    assert record["base"] == json.loads(base.read_text())
    (row,) = record["comparison"]
    assert (row["family"], row["benchmark"], row["metric"], row["num_questions"]) == (
        "code", "code_problems", "pass@1", 4,
    )
    expected = sum(record["trained"]["suites"]["code"]["per_question"]) / 4 - sum(
        record["base"]["suites"]["code"]["per_question"]
    ) / 4
    assert row["difference"] == pytest.approx(expected)


def test_a_results_file_of_another_kind_is_one_line(tmp_path):
    other = tmp_path / "math.json"
    other.write_text(json.dumps({"model": "tiny", "evaluation": {}}))
    result = CliRunner().invoke(
        app, ["eval", "tiny", "--suite", "code", "--code", str(PROBLEMS), "--compare", str(other)]
    )
    assert result.exit_code == 2 and "not a results file" in result.output


def test_both_models_answer_the_trained_models_math_questions(monkeypatch):
    """The synthetic task is read from each model's folder; the base must still get the trained model's
    questions, or the paired difference would pair different questions."""
    import corewarding.inference.evaluate as evaluation

    asked = []
    real = evaluation.evaluate

    def recording(problems, *args, **kwargs):
        asked.append([p.question for p in problems])
        return real(problems, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", recording)
    result = CliRunner().invoke(
        app,
        ["eval", "tiny", "synthetic", "--limit", "4", "--suite", "math", "--compare", "tiny-shortcut",
         "--max-new-tokens", "8", "--threads", "1"],
    )
    assert result.exit_code == 0, result.output
    assert len(asked) == 2 and asked[0] == asked[1]


def test_an_unknown_suite_is_one_line_with_the_closest_name():
    result = CliRunner().invoke(app, ["eval", "tiny", "--suite", "math,cod"])
    assert result.exit_code == 2 and "did you mean code?" in result.output
