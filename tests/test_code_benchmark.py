"""The code benchmark: the three problem formats, code extraction, pass@k from sandboxed runs (a scripted
backend writes known right, wrong and hostile solutions), and the command line with the tiny model."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.core.errors import UserError
from corewarding.core.sandbox import SandboxLimits
from corewarding.inference.code_benchmark import (
    check_solution,
    evaluate_code,
    extract_code,
    load_code_problems,
)
from corewarding.inference.generation import Completion

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
PROBLEMS = FIXTURES / "code_problems.jsonl"
LIMITS = SandboxLimits(timeout_s=3.0)

RIGHT = {
    "fixture/add": "```python\ndef add(a, b):\n    return a + b\n```",
    # A base model's continuation of the prompt: the body only.
    "fixture/reverse_words": "    return ' '.join(reversed(text.split()))\n",
    "fixture/is_even": "Sure.\n```python\ndef is_even(n):\n    return n % 2 == 0\n```\nDone.",
    "fixture/sum_line": "```\na, b = map(int, input().split())\nprint(a + b)\n```",
}
WRONG = {
    "fixture/add": "```python\ndef add(a, b):\n    return a - b\n```",
    "fixture/reverse_words": "```python\ndef reverse_words(text):\n    while True:\n        pass\n```",
    "fixture/is_even": "```python\nimport os\nos.fork()\ndef is_even(n):\n    return True\n```",
    "fixture/sum_line": "```python\nprint(bytearray(10 * 1024**3))\n```",
}


class ScriptedBackend:
    """Answers problem i's j-th sample with ``script[i][j]``."""

    description = "scripted"

    def __init__(self, script):
        self.script = script

    def generate(self, conversations, settings, on_result=None):
        groups = []
        for i, _ in enumerate(conversations):
            groups.append([Completion(text) for text in self.script[i][: settings.n]])
            if on_result:
                on_result(i, groups[-1])
        return groups


def test_the_three_formats_load():
    problems = load_code_problems(PROBLEMS)
    assert [p.task_id for p in problems] == list(RIGHT)
    add, reverse, even, sum_line = problems
    assert add.entry_point == "add" and "check(add)" in add.test_code
    assert even.entry_point is None and "assert is_even(4)" in even.test_code
    assert sum_line.io_tests == (("2 3\n", "5\n"), ("-4 10\n", "6\n"))


def test_a_file_without_tests_is_one_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Write f."}) + "\n")
    with pytest.raises(UserError, match="row 1: no tests"):
        load_code_problems(path)
    with pytest.raises(UserError, match="no such file"):
        load_code_problems(tmp_path / "absent.jsonl")


def test_extract_code_takes_the_first_fenced_block_or_everything():
    assert extract_code("a\n```py\nx = 1\n```\n```python\ny = 2\n```") == "x = 1\n"
    assert extract_code("x = 1") == "x = 1"


def test_right_solutions_pass_and_wrong_or_hostile_ones_fail():
    problems = load_code_problems(PROBLEMS)
    for problem in problems:
        assert check_solution(problem, extract_code(RIGHT[problem.task_id]), LIMITS) == "passed", problem
    statuses = [check_solution(p, extract_code(WRONG[p.task_id]), LIMITS) for p in problems]
    assert statuses == ["failed", "timeout", "failed", "failed"]


def test_pass_at_k_counts_the_samples_that_pass():
    problems = load_code_problems(PROBLEMS)
    # Problem i gets i+1 right samples of 4: c = 1, 2, 3, 4.
    script = [
        [RIGHT[p.task_id]] * (i + 1) + [WRONG["fixture/add"]] * (3 - i) for i, p in enumerate(problems)
    ]
    result = evaluate_code(problems, ScriptedBackend(script), n=4, temperature=0.8, limits=LIMITS)
    assert result.per_question == [0.25, 0.5, 0.75, 1.0]
    assert result.pass_at_k[1] == pytest.approx(0.625)
    # pass@2 = mean(1 - C(4-c, 2)/C(4, 2)) over c = 1..4 = mean(1/2, 5/6, 1, 1)
    assert result.pass_at_k[2] == pytest.approx((0.5 + 5 / 6 + 1 + 1) / 4)
    assert result.pass_at_k[4] == 1.0
    assert result.statuses == {"passed": 10, "failed": 6}


def test_the_eval_command_runs_the_code_suite_with_the_tiny_model(tmp_path):
    output = tmp_path / "code.json"
    result = CliRunner().invoke(
        app,
        ["eval", "tiny", "--suite", "code", "--code", str(PROBLEMS), "--max-new-tokens", "8", "--threads",
         "1", "-o", str(output)],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(output.read_text())
    code = record["suites"]["code"]
    assert code["num_problems"] == 4 and code["n"] == 1 and set(code["pass_at_k"]) == {"1"}
    assert sum(code["statuses"].values()) == 4 and len(code["per_question"]) == 4


def test_the_code_suite_without_its_file_is_one_line():
    result = CliRunner().invoke(app, ["eval", "tiny", "--suite", "code"])
    assert result.exit_code == 2 and "--code" in result.output and "Traceback" not in result.output
