"""IFEval and MMLU-Pro through lm-evaluation-harness on fixture files, with the tiny model, through the real
entry point; and the base-vs-trained report of all three families. The harness is the optional extra
``corewarding[eval]``: these tests run in .ci/eval's environment and are skipped without it, except the
one-line errors, which need no harness."""

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corewarding.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
IFEVAL, MMLU_PRO, CODE = (
    FIXTURES / "ifeval_like.jsonl", FIXTURES / "mmlu_pro_like.jsonl", FIXTURES / "code_problems.jsonl",
)
needs_lm_eval = pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is None,
    reason="lm-eval not installed (pip install 'corewarding[eval]')",
)


def test_without_the_harness_the_general_suite_is_one_line_saying_how_to_install_it(monkeypatch):
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else found(name, *a)
    )
    result = CliRunner().invoke(app, ["eval", "tiny", "--suite", "general", "--ifeval", str(IFEVAL)])
    assert result.exit_code == 2, result.output
    assert "pip install 'corewarding[eval]'" in result.output and "Traceback" not in result.output


def test_a_missing_data_file_or_none_is_one_line(tmp_path):
    absent = CliRunner().invoke(
        app, ["eval", "tiny", "--suite", "general", "--mmlu-pro", str(tmp_path / "x.parquet")]
    )
    assert absent.exit_code == 2 and "--mmlu-pro" in absent.output and "no such file" in absent.output
    none = CliRunner().invoke(app, ["eval", "tiny", "--suite", "general"])
    assert none.exit_code == 2 and "--ifeval FILE" in none.output


@needs_lm_eval
@pytest.mark.lm_eval
def test_a_file_without_the_benchmarks_columns_is_one_line(tmp_path):
    wrong = tmp_path / "ifeval.jsonl"
    wrong.write_text(json.dumps({"prompt": "Say hi."}) + "\n")
    result = CliRunner().invoke(
        app, ["eval", "tiny", "--suite", "general", "--ifeval", str(wrong), "--threads", "1"]
    )
    assert result.exit_code == 2 and "no column key, instruction_id_list, kwargs" in result.output


@needs_lm_eval
@pytest.mark.lm_eval
@pytest.mark.slow
def test_the_report_of_a_run_folder_against_its_base_shows_all_three_families(model_dir, tmp_path):
    """A model folder (what a run writes) against the shipped tiny model: math, code and general."""
    output = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        ["eval", str(model_dir), "synthetic", "--limit", "8", "--suite", "math,code,general",
         "--code", str(CODE), "--ifeval", str(IFEVAL), "--mmlu-pro", str(MMLU_PRO), "--compare", "tiny",
         "--max-new-tokens", "16", "--threads", "1", "-o", str(output)],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(output.read_text())
    rows = {(r["family"], r["benchmark"], r["metric"]): r for r in record["comparison"]}
    assert set(rows) == {
        ("math", "synthetic", "greedy"), ("code", "code_problems", "pass@1"),
        ("general", "ifeval", "prompt_level_strict_acc"), ("general", "mmlu_pro", "exact_match"),
    }
    assert [rows[key]["num_questions"] for key in sorted(rows)] == [4, 6, 4, 8]
    general = {s["benchmark"]: s for s in record["trained"]["suites"]["general"]["scores"]}
    assert set(general["ifeval"]["metrics"]) == {
        "prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc",
    }
    # Each benchmark's score is the mean of its questions' (what the comparison pairs).
    for score in general.values():
        assert score["value"] == pytest.approx(sum(score["per_question"]) / len(score["per_question"]))
    assert all(row["reading"] in {"higher", "lower", "level"} for row in rows.values())


def test_the_general_suite_on_another_backend_is_one_line():
    result = CliRunner().invoke(
        app, ["eval", "tiny", "--suite", "general", "--ifeval", str(IFEVAL), "--backend", "vllm"]
    )
    assert result.exit_code == 2 and "--backend transformers" in result.output
