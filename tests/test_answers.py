"""Answer extraction on hand-written completions and on the shared datasets' reference answers."""

import json

import pytest

from corewarding.core.answers import canonical_answer, extract_answer, last_boxed, reference_answer


@pytest.mark.parametrize(
    "completion, expected",
    [
        (r"First 3+4=7, then 7*2=14. \boxed{14}", "14"),
        (r"We get \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
        (r"Nested: \boxed{\frac{\sqrt{3}}{2}} done", r"\frac{\sqrt{3}}{2}"),
        (r"Try \boxed{3}, no wait: \boxed{5}", "5"),  # the last box wins
        (r"\fbox{42}", "42"),
        (r"so \boxed 5 is the answer", "5"),
        (r"$\boxed 7$.", "7"),
        (r"\boxed{ \left( 1, 2 \right) }", "(1,2)"),
        (r"\boxed{1,234}", "1234"),
        (r"\boxed{142.0}", "142"),
        (r"\boxed{\text{(C)}}", r"\text{(C)}"),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
        ("So 1,000 + 234 = 1,234\n#### 1,234", "1234"),
        ("#### 5\nand later\n#### 6.", "6"),
        (r"the answer is \boxed{}", None),  # SmolLM2 often leaves the box empty: no answer
        (r"truncated \boxed{\frac{1}{2", None),  # a box never closed: no answer
        ("The answer is 42", None),  # no box: no answer unless asked to fall back
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_last_number_fallback_is_opt_in():
    text = "She has 3 apples and buys 1,250 more, so -2.5 remain"
    assert extract_answer(text) is None
    assert extract_answer(text, "boxed_or_last_number") == "-2.5"
    assert extract_answer("total 1,250 apples", "boxed_or_last_number") == "1250"
    # A box, when present, still wins over the fallback.
    assert extract_answer(r"\boxed{9} then 10", "boxed_or_last_number") == "9"


def test_last_number_extraction_ignores_boxes():
    assert extract_answer("23 + 37 = 60", "last_number") == "60"
    assert extract_answer(r"\boxed{9} then 10", "last_number") == "10"
    assert extract_answer("#### 7", "last_number") == "7"
    assert extract_answer("no digits here", "last_number") is None


def test_unknown_extraction_is_refused():
    with pytest.raises(ValueError, match="boxed_or_last_number"):
        extract_answer("42", "last")


def test_last_boxed_keeps_raw_content():
    assert last_boxed(r"\boxed{\dfrac 1 2}") == r"\dfrac 1 2"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 18", "18"),  # GSM8K
        (r"So the answer is $\boxed{\frac{3}{4}}$.", r"\frac{3}{4}"),  # MATH solution
        ("142.0", "142"),  # AMC ground truth
        (27.0, "27"),  # AIME/AMC as a JSON number
        ("9 (apples)", "9"),  # ASDiv
        ("15 (balls)", "15"),
        (r"\frac{1}{2}", r"\frac{1}{2}"),  # MATH ground truth
        (r"\text{Monday}", r"\text{Monday}"),
        ("(3, 4)", "(3,4)"),  # a tuple is not a unit
        ("", None),
        (None, None),
    ],
)
def test_reference_answer(raw, expected):
    assert reference_answer(raw) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        (r"  \frac{1}{2} ", r"\frac{1}{2}"),
        (r"$\dfrac12$", r"\dfrac12"),  # notation is not rewritten: that is equivalence's job
        ("0.50", "0.5"),
        ("-0.0", "0"),
        ("12.", "12"),
        (r"\left[ 1, 2 \right)", "[1,2)"),
        (r"x \rightarrow \infty", r"x\rightarrow\infty"),  # \right is removed, \rightarrow is kept
        (r"10\,000", "10000"),
    ],
)
def test_canonical_answer(answer, expected):
    assert canonical_answer(answer) == expected


@pytest.mark.parametrize(
    "text",
    [
        "x" * 200_000 + r"\boxed{7}",
        "(" * 5000 + ")" * 5000,
        r"\boxed{" + "{" * 5000 + "}" * 5000 + "}",
        r"\boxed{__import__('os').system('touch /tmp/corewarding-pwned')}",
        r"\boxed{10**10**10**10}",
        r"\boxed{" * 20_000,
    ],
)
@pytest.mark.timeout(30)  # linear scans take milliseconds; a quadratic one would take hours
def test_hostile_completions_are_handled_quickly(text):
    extract_answer(text)
    extract_answer(text, "boxed_or_last_number")
    extract_answer(text, "last_number")


@pytest.mark.timeout(30)  # a guard against a hang: linear scans take milliseconds, the old pattern a minute
@pytest.mark.parametrize(
    "cell, expected",
    [
        ("9" * 100_000 + " (" + "a" * 99_998 + ")", "9" * 100_000),  # a number and a unit, both huge
        ("9 (" + "a" * 199_997, "9(" + "a" * 199_997),  # the unit never closed
        ("x" * 200_000 + r" so \boxed{7}", "7"),
        ("$" * 100_000 + "12" + "$" * 100_000, "12"),
        ("1 (" + "a(" * 100_000 + ")", "1(" + "a(" * 100_000 + ")"),  # brackets inside: not a unit
    ],
    ids=["unit", "unclosed-unit", "boxed", "dollars", "nested"],
)
def test_reference_answer_of_a_200k_character_cell(cell, expected):
    assert reference_answer(cell) == expected


def test_shared_reference_answers(shared_data):
    """Reference answers of the shared benchmark files come out in canonical form."""
    benchmarks = shared_data / "benchmarks"

    def rows(name):
        with open(benchmarks / name) as f:
            return [json.loads(line) for line in f]

    gsm8k = rows("gsm8k.jsonl")
    assert reference_answer(gsm8k[0]["answer"]) == "18"
    assert all(reference_answer(r["answer"]) is not None for r in gsm8k)
    asdiv = rows("asdiv.jsonl")
    assert reference_answer(asdiv[0]["answer"]) == "9"
    math500 = rows("math500.jsonl")
    assert sum(reference_answer(r["answer"]) is None for r in math500) == 0
    amc = rows("amc23.jsonl")
    assert reference_answer(amc[0]["answer"]) == "27"
