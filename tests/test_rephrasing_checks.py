"""The rephrasing validator: every check on hand-written pairs, the answer check with a stub solver,
the summary, and the counts on the released MATH and DAPO rephrasings."""

from __future__ import annotations

import pytest
from rich.console import Console

from corewarding.data.loaders import load_rephrased_pair
from corewarding.data.records import Problem
from corewarding.data.rephrasing_checks import (
    CHECKS,
    CheckResult,
    ValidationSettings,
    failure_counts,
    summary_table,
    text_checks,
    validate_pairs,
    with_verdicts,
)

ORIGINAL = "Tom has 7 apples and buys 3 more at the market. How many apples does he have now?"
GOOD = "Ana owns 7 pens and a friend gives her 3 more. How many pens does she own in total?"
FIGURE = '[asy]\ndraw((0,0)--(40,0)--(40,30)--cycle);\nlabel("$50$",(20,15),NW);\n[/asy]'


def failed(checks: dict[str, CheckResult]) -> set[str]:
    return {name for name, result in checks.items() if result.passed is False}


def test_a_faithful_rephrasing_passes_everything():
    checks = text_checks(ORIGINAL, GOOD)
    assert list(checks) == list(CHECKS)
    assert failed(checks) == set()
    assert checks["figure"] == CheckResult(None, "the original has no figure")
    assert checks["answers"] == CheckResult(None, "no solver")


@pytest.mark.parametrize("rephrasing", [None, "", "  \n"])
def test_output_no_rephrasing(rephrasing):
    checks = text_checks(ORIGINAL, rephrasing)
    assert checks["output"] == CheckResult(False, "empty rephrasing")
    assert all(r == CheckResult(None, "no rephrasing") for name, r in checks.items() if name != "output")


def test_output_problem_is_the_detail():
    checks = text_checks(ORIGINAL, None, output_problem="no start marker [REPHRASED]")
    assert checks["output"] == CheckResult(False, "no start marker [REPHRASED]")


@pytest.mark.parametrize(
    "rephrasing",
    [
        "<rewritten question>",
        "  <Rewritten   QUESTION>\n",
        "<rewritten problem>",
        "Ana owns 7 pens. <rewritten question>",
    ],
)
def test_placeholder_echoes(rephrasing):
    checks = text_checks(ORIGINAL, rephrasing)
    assert checks["placeholder"].passed is False
    assert "echoes the placeholder" in checks["placeholder"].detail


def test_other_placeholders_from_the_settings():
    settings = ValidationSettings(placeholders=("{{NEW}}",))
    assert text_checks(ORIGINAL, "{{new}}", settings)["placeholder"].passed is False
    assert text_checks(ORIGINAL, "<rewritten question>", settings)["placeholder"].passed is True


def test_unchanged_after_whitespace_and_case():
    checks = text_checks(
        ORIGINAL, "  tom has 7 apples and buys 3 more at the market.\nHow many apples does he have NOW?"
    )
    assert checks["unchanged"] == CheckResult(False, "same text as the original")
    assert checks["near_identical"] == CheckResult(None, "unchanged")


def test_near_identical_wording():
    wrapped = text_checks(ORIGINAL, f"<{ORIGINAL}>")  # as two DAPO rephrasings are
    assert wrapped["unchanged"].passed is True
    assert wrapped["near_identical"] == CheckResult(False, "similarity 1.00 >= 0.9")
    one_word = text_checks(ORIGINAL, ORIGINAL.replace("buys", "gets"))
    assert one_word["near_identical"].passed is False


def test_similarity_leaves_the_mathematics_out():
    formula = r"$\left\lceil \frac{12}{7} \cdot \frac{-29}{3}\right\rceil - \lfloor 12 \cdot 7 \rfloor$"
    checks = text_checks(f"Find {formula}.", f"Calculate {formula}.")
    assert checks["near_identical"] == CheckResult(True, "similarity 0.00 < 0.9")
    renamed = text_checks(
        "Let $a$ be the largest root of $x^2 = 4$. Find $a$.",
        "Let $b$ be the largest root of $y^2 = 4$. Find $b$.",
    )
    assert renamed["near_identical"].passed is False  # the wording did not change at all


def test_a_question_that_is_only_mathematics_is_compared_whole():
    checks = text_checks(r"\[ \int_{-1}^{1} |x| \, dx \]", r"$$ \int_{-1}^{1} |x| \, dx $$")
    assert checks["unchanged"].passed is True
    assert checks["near_identical"].passed is False


def test_length_bounds():
    too_short = text_checks(ORIGINAL, "Add 7 and 3.")
    assert too_short["length"] == CheckResult(False, "length ratio 0.15 < 0.25")
    too_long = text_checks("Compute $7+3$.", "Ana owns 7 pens and a friend gives her 3 more. " * 12)
    assert too_long["length"].passed is False and "allowed for an original of 14" in too_long["length"].detail
    scenario = text_checks(
        "Compute $139+27+23+11$.",
        "A store sold 139 items on Monday, 27 on Tuesday, 23 on Wednesday "
        "and 11 on Thursday. How many items did it sell over the four days?",
    )
    assert scenario["length"].passed is True  # 23 characters -> 139: within the slack


def test_length_ignores_figure_code():
    original = "Find the area of the triangle.\n" + FIGURE * 10
    checks = text_checks(original, "What is the area of the triangular garden bed shown in the plan?")
    assert checks["length"].passed is True
    assert checks["figure"] == CheckResult(False, "figure code dropped")


def test_figure_kept():
    checks = text_checks("Find $x$.\n" + FIGURE, "Determine the value of $x$ in the sketch.\n" + FIGURE)
    assert checks["figure"].passed is True


def test_missing_numbers_are_reported_not_rejected():
    rephrasing = "Ana owns 8 pens and a friend gives her 3 more. How many pens does she own in total?"
    report = validate_pairs([Problem("p", ORIGINAL, "10", rephrasing)])[0]
    assert report.checks["numbers"] == CheckResult(False, "missing 7")
    assert report.valid and report.flagged_by == ("numbers",) and report.rejected_by == ()
    strict = ValidationSettings(report_only=frozenset({"figure"}))
    assert validate_pairs([Problem("p", ORIGINAL, "10", rephrasing)], strict)[0].rejected_by == ("numbers",)


def test_numbers_as_words_separators_and_decimals():
    original = "A farm has 1,000 hens, 3 barns and 2.50 acres; each barn holds 0.5 tons. Figure: " + FIGURE
    rephrasing = "A ranch keeps 1000 chickens in three sheds on 2.5 acres, and each shed stores 0.50 tons."
    assert text_checks(original, rephrasing)["numbers"].passed is True  # 40, 30, 50 are in the figure only


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown check 'typo'"):
        ValidationSettings(report_only=frozenset({"typo"}))
    with pytest.raises(ValueError, match="output check cannot be report-only"):
        ValidationSettings(report_only=frozenset({"output"}))
    with pytest.raises(ValueError, match="max_similarity"):
        ValidationSettings(max_similarity=0)
    with pytest.raises(ValueError, match="length ratios"):
        ValidationSettings(min_length_ratio=2, max_length_ratio=1)


class StubSolver:
    """Answers each question with its scripted completions and remembers what it was asked."""

    def __init__(self, completions: dict[str, list[str]]):
        self.completions = completions
        self.asked: list[str] = []

    def __call__(self, questions, k):
        self.asked += questions
        return [self.completions[q][:k] for q in questions]


def boxed(*answers: str) -> list[str]:
    return [f"So the answer is \\boxed{{{a}}}." if a else "I am not sure." for a in answers]


def test_answer_check_with_a_stub_solver():
    pairs = [
        Problem("agree", ORIGINAL, None, GOOD),
        Problem(
            "differ", "Compute $2^{10}$.", None, "A culture doubles 10 times from 1 cell. How many cells?"
        ),
        Problem(
            "silent", "Compute $3 \\cdot 5$.", None, "A box has 3 rows of 5 eggs. How many eggs are there?"
        ),
        Problem("copied", "Compute $9-4$.", None, "compute $9-4$."),
    ]
    solver = StubSolver(
        {
            ORIGINAL: boxed("10", "10", "9"),
            GOOD: boxed("\\frac{20}{2}", "10.0", "11"),
            pairs[1].question: boxed("1024", "1024", "1024"),
            pairs[1].rephrasing: boxed("512", "512", "1024"),
            pairs[2].question: boxed("15", "15", "15"),
            pairs[2].rephrasing: boxed("", "", ""),
        }
    )
    reports = validate_pairs(pairs, ValidationSettings(answer_samples=3), solver=solver)
    answers = [r.checks["answers"] for r in reports]
    assert answers[0] == CheckResult(True, "original 10 (2/3), rephrasing \\frac{20}{2} (2/3)")
    assert answers[1] == CheckResult(False, "original 1024 (3/3), rephrasing 512 (2/3)")
    assert answers[2] == CheckResult(False, "original 15 (3/3), rephrasing no majority answer")
    assert answers[3] == CheckResult(None, "already rejected")
    assert [r.valid for r in reports] == [True, False, False, False]
    assert reports[1].rejected_by == ("answers",)
    assert "Compute $9-4$." not in solver.asked  # a rejected pair costs no solver time
    assert failure_counts(reports)["answers"] == 2


def test_a_solver_of_the_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="must return 8 completions for each of the 2 questions"):
        validate_pairs(
            [Problem("p", ORIGINAL, None, GOOD)], solver=lambda questions, k: [["x"]] * len(questions)
        )


def test_reports_summary_and_verdicts():
    problems = [
        Problem("ok", ORIGINAL, "10", GOOD),
        Problem("echo", ORIGINAL, "10", "<rewritten question>"),
        Problem("none", ORIGINAL, "10", None),
    ]
    reports = validate_pairs(problems, output_problems={"none": "request failed: HTTP 500"})
    assert [r.id for r in reports] == ["ok", "echo", "none"]
    assert reports[1].rejected_by == ("placeholder", "length")
    assert reports[2].checks["output"] == CheckResult(False, "request failed: HTTP 500")
    counts = failure_counts(reports)
    assert counts["placeholder"] == 1 and counts["output"] == 1 and counts["answers"] is None
    assert [p.rephrasing_valid for p in with_verdicts(problems, reports)] == [True, False, False]

    console = Console(record=True, width=140)
    console.print(summary_table(reports, ValidationSettings(), "checks"))
    text = console.export_text()
    assert "not run" in text and "1 of 3" in text and "reports" in text


# --- the released rephrasings --------------------------------------------------------------------


@pytest.mark.parametrize(
    "folder, original, expected",
    [
        # README of the shared data: 19 MATH and 45 DAPO placeholders, 2 unchanged MATH copies.
        (
            "corewarding-math",
            "train.parquet",
            {"placeholder": 19, "unchanged": 2, "near_identical": 1, "length": 19, "rejected": 22},
        ),
        (
            "corewarding-dapo",
            "train_original.parquet",
            {"placeholder": 45, "unchanged": 0, "near_identical": 5, "length": 47, "rejected": 52},
        ),
    ],
)
def test_released_rephrasings(shared_data, folder, original, expected):
    problems = load_rephrased_pair(
        shared_data / folder / original, shared_data / folder / "train_rewrite_Qwen3-32B.parquet"
    )
    reports = validate_pairs(problems)
    counts = failure_counts(reports)
    assert {name: counts[name] for name in ("placeholder", "unchanged", "near_identical", "length")} == {
        name: expected[name] for name in ("placeholder", "unchanged", "near_identical", "length")
    }
    assert counts["output"] == 0
    assert sum(not r.valid for r in reports) == expected["rejected"]
    placeholders = [p for p in problems if p.rephrasing.strip() == "<rewritten question>"]
    assert {p.id for p in placeholders} <= {r.id for r in reports if "placeholder" in r.rejected_by}
