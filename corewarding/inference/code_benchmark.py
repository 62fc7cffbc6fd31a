r"""The code benchmark: a model writes programs for problems with tests; each program is run in the sandbox
(:mod:`corewarding.core.sandbox`), never in this process, and scored by pass@k.

Problems come from a local JSON lines, JSON or Parquet file, one per row, in any of three formats
(told apart by their columns):

* **HumanEval-style**: ``prompt`` (a signature and docstring), ``test`` (defining ``check(candidate)``)
  and ``entry_point``; the program is the solution, then ``test``, then ``check(entry_point)``. A
  solution that does not define ``entry_point`` continues the prompt (a base model's completion), so
  the prompt is put before it.
* **MBPP-style**: ``prompt`` or ``text``, ``test_list`` (assert statements) and optionally
  ``test_setup_code``; the program is the solution, the set-up, then the asserts.
* **stdin/stdout (LiveCodeBench- and APPS-style)**: ``prompt`` or ``question``, and ``tests``: a list of
  ``{"input": …, "output": …}`` (or a JSON string of one, or of ``{"inputs": [...], "outputs": [...]}``);
  the solution passes when it prints each expected output for its input.

The solution is the completion's first fenced code block (```` ```python ```` or ```` ``` ````), else the
whole completion. Each problem gets ``n`` samples (greedy when ``n`` is 1 at temperature 0) and

    pass@k = 1 − C(n − c, k) / C(n, k)        (Chen et al. 2021, "Evaluating Large Language Models
                                                Trained on Code": the unbiased estimator)

averaged over problems, c the number of its samples that pass, for k = 1, 2, 4, … up to n
(:func:`corewarding.inference.evaluate.pass_at_k`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from rich.progress import Progress

from corewarding.core.errors import UserError
from corewarding.core.sandbox import SandboxLimits, run_program
from corewarding.core.terminal import output_console
from corewarding.data.rows import read_rows
from corewarding.inference.evaluate import pass_at_k, reported_ks
from corewarding.inference.generation import GenerationBackend, GenerationSettings, completion_texts

__all__ = [
    "CodeProblem", "load_code_problems", "extract_code", "solution_programs", "check_solution",
    "CodeResult", "evaluate_code",
]

#: What the model is asked, before the problem's own text.
CODE_INSTRUCTION = (
    "Solve the following programming problem in Python. Write the complete solution in one ```python "
    "code block."
)

_FENCED = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class CodeProblem:
    """One problem: its text and how a solution is tested (test code, or stdin/stdout pairs).

    Attributes:
        task_id: its name in the file (or its row number).
        prompt: the problem as the model sees it.
        test_code: Python run after the solution (asserts, or a ``check`` function and its call).
        entry_point: the function a HumanEval-style solution must define (its prompt is prepended when not).
        io_tests: (stdin, expected stdout) pairs.
    """

    task_id: str
    prompt: str
    test_code: str = ""
    entry_point: str | None = None
    io_tests: tuple[tuple[str, str], ...] = ()


def _io_tests(value, label: str) -> tuple[tuple[str, str], ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"{label}: 'tests' is neither a list nor JSON") from None
    if isinstance(value, dict) and "inputs" in value and "outputs" in value:
        value = [{"input": i, "output": o} for i, o in zip(value["inputs"], value["outputs"])]
    pairs = isinstance(value, list) and all(
        isinstance(t, dict) and {"input", "output"} <= t.keys() for t in value
    )
    if not pairs:
        raise UserError(f"{label}: 'tests' must be a list of {{\"input\": …, \"output\": …}}")
    return tuple((str(t["input"]), str(t["output"])) for t in value)


def load_code_problems(path: str | Path) -> list[CodeProblem]:
    """The problems of a file in one of the module docstring's three formats (a one-line error otherwise)."""
    if not Path(path).is_file():
        raise UserError(f"--code {path}: no such file")
    problems = []
    for index, row in enumerate(read_rows(path)):
        label = f"{path}, row {index + 1}"
        task_id = str(row.get("task_id", row.get("question_id", index)))
        prompt = row.get("prompt") or row.get("text") or row.get("question")
        if not prompt:
            raise UserError(f"{label}: no problem text (a 'prompt', 'text' or 'question' column)")
        if row.get("test") and row.get("entry_point"):
            test = f"{row['test']}\n\ncheck({row['entry_point']})\n"
            problems.append(CodeProblem(task_id, prompt, test, row["entry_point"]))
        elif row.get("test_list"):
            test = "\n".join([row.get("test_setup_code") or "", *row["test_list"]]) + "\n"
            problems.append(CodeProblem(task_id, prompt, test))
        elif row.get("tests") or row.get("input_output"):
            tests = _io_tests(row.get("tests") or row["input_output"], label)
            problems.append(CodeProblem(task_id, prompt, io_tests=tests))
        else:
            raise UserError(
                f"{label}: no tests ('test' with 'entry_point', 'test_list', or stdin/stdout 'tests')"
            )
    if not problems:
        raise UserError(f"--code {path}: the file holds no problems")
    return problems


def extract_code(completion: str) -> str:
    """The first fenced code block of a completion, else the completion itself.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    """
    match = _FENCED.search(completion)
    return match.group(1) if match else completion


def solution_programs(problem: CodeProblem, code: str) -> list[tuple[str, str, str | None]]:
    """The runs that test a solution: (program, stdin, expected stdout or None) for each."""
    if problem.entry_point and not re.search(rf"\bdef\s+{re.escape(problem.entry_point)}\s*\(", code):
        code = problem.prompt + code
    if problem.io_tests:
        return [(code, given, expected) for given, expected in problem.io_tests]
    return [(f"{code}\n\n{problem.test_code}", "", None)]


def check_solution(problem: CodeProblem, code: str, limits: SandboxLimits = SandboxLimits()) -> str:
    """How a solution fares: ``passed``, or the sandbox's status of its first failing run."""
    for program, given, expected in solution_programs(problem, code):
        result = run_program(program, limits, stdin=given, expected_output=expected)
        if not result.passed:
            return result.status
    return "passed"


@dataclass(frozen=True)
class CodeResult:
    """The code benchmark's scores.

    Attributes:
        num_problems, n: problems, and samples of each.
        temperature: of the samples (0: greedy).
        pass_at_k: unbiased pass@k for k = 1, 2, 4, … ≤ n.
        per_question: each problem's share of passing samples c/n (pass@1's estimate), in file order.
        statuses: how the samples ended (``passed``, ``failed``, ``timeout``, ``killed``, ``wrong_output``).
    """

    num_problems: int
    n: int
    temperature: float
    pass_at_k: dict[int, float]
    per_question: list[float]
    statuses: dict[str, int] = field(default_factory=dict)


def evaluate_code(
    problems: Sequence[CodeProblem],
    backend: GenerationBackend,
    *,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 1024,
    limits: SandboxLimits = SandboxLimits(),
    workers: int = 2,
    progress: bool = False,
) -> CodeResult:
    """Sample ``n`` solutions of each problem from ``backend``, run each with its tests in the sandbox
    (``workers`` at a time), and score pass@k."""
    settings = GenerationSettings(n, temperature, top_p, max_new_tokens)
    conversations = [[{"role": "user", "content": f"{CODE_INSTRUCTION}\n\n{p.prompt}"}] for p in problems]
    with Progress(disable=not progress, console=output_console()) as bar:
        task = bar.add_task(f"writing {n} solution(s) per problem", total=len(problems))
        groups = completion_texts(backend.generate(conversations, settings, lambda i, c: bar.advance(task)))
        jobs = [(problem, extract_code(text)) for problem, group in zip(problems, groups) for text in group]
        task = bar.add_task("running them in the sandbox", total=len(jobs))

        def run(job):
            status = check_solution(*job, limits)
            bar.advance(task)
            return status

        with ThreadPoolExecutor(max_workers=workers) as pool:
            statuses = list(pool.map(run, jobs))
    passed = [sum(s == "passed" for s in statuses[i * n : (i + 1) * n]) for i in range(len(problems))]
    return CodeResult(
        num_problems=len(problems),
        n=n,
        temperature=settings.temperature,
        pass_at_k={k: fmean(pass_at_k(n, c, k) for c in passed) for k in reported_ks(n)},
        per_question=[c / n for c in passed],
        statuses=dict(Counter(statuses)),
    )
