"""The rephrasing instruction and reading rephrasings out of completions, on hand-written outputs."""

from __future__ import annotations

import pytest

from corewarding.data.rephrasing_prompt import (
    DEFAULT_INSTRUCTION,
    Instruction,
    InstructionError,
    ParsedRephrasing,
    parse_rephrasing,
)

REPHRASING = "Ana owns 7 pens and gets 3 more from a friend. How many pens does she own?"


def answer(body: str) -> str:
    return f"[REPHRASED]\n{body}\n[/REPHRASED]"


@pytest.mark.parametrize(
    "completion",
    [
        answer(REPHRASING),
        "Sure, here it is:\n\n" + answer(REPHRASING) + "\nI kept every number.",
        "<think>The scenario could be pens.\n[REPHRASED]\ndraft\n[/REPHRASED]</think>\n" + answer(REPHRASING),
        "pens, then... ok.\n</think>\n\n" + answer(REPHRASING),  # <think> opened by the chat template
        "[REPHRASED]\n" + REPHRASING,  # end marker forgotten
        "**[REPHRASED]**\n" + REPHRASING + "\n**[/REPHRASED]**",
        "[rephrased]\n" + REPHRASING + "\n[/rephrased]",
        "```\n" + answer(REPHRASING) + "\n```",
        answer("```text\n" + REPHRASING + "\n```"),
        "[REPHRASED]\n```\n" + REPHRASING,  # fenced and cut short of the closing fence and marker
        # the instruction echoed, then the answer
        DEFAULT_INSTRUCTION.render("Tom has 7 apples and buys 3 more. How many apples?")
        + "\n\n"
        + answer(REPHRASING),
    ],
    ids=[
        "plain",
        "preamble-and-epilogue",
        "thinking-block",
        "template-opened-thinking",
        "no-end-marker",
        "bold-markers",
        "lower-case-markers",
        "fenced-answer",
        "fenced-rephrasing",
        "cut-fence",
        "instruction-echoed",
    ],
)
def test_the_rephrasing_is_found(completion):
    assert parse_rephrasing(completion) == ParsedRephrasing(REPHRASING)


@pytest.mark.parametrize(
    "completion, problem",
    [
        ("", "empty output"),
        (None, "empty output"),
        ("  \n ", "empty output"),
        ("<think>Let me think about a scenario with pens and", "the output ended while thinking"),
        ("Ana owns 7 pens and gets 3 more. How many pens?", "no start marker [REPHRASED]"),
        ("<think>[REPHRASED] x [/REPHRASED]</think> I refuse.", "no start marker [REPHRASED]"),
        ("[REPHRASED]\n\n[/REPHRASED]", "nothing between the markers"),
    ],
)
def test_no_rephrasing_and_why(completion, problem):
    assert parse_rephrasing(completion) == ParsedRephrasing(None, problem)


def test_an_echoed_placeholder_is_returned_for_the_checks_to_reject():
    assert parse_rephrasing(answer("<rewritten problem>")).text == "<rewritten problem>"
    echo_only = DEFAULT_INSTRUCTION.render("Tom has 7 apples.")
    assert parse_rephrasing(echo_only).text == "<rewritten problem>"


def test_a_missing_end_marker_is_refused_when_the_completion_was_cut_off():
    cut = "[REPHRASED]\nAna owns 7 pens and gets 3 more from a"
    assert parse_rephrasing(cut).text == "Ana owns 7 pens and gets 3 more from a"
    parsed = parse_rephrasing(cut, truncated=True)
    assert parsed.text is None and "cut off at the token limit" in parsed.problem
    assert parse_rephrasing(answer(REPHRASING), truncated=True).text == REPHRASING


def test_custom_markers():
    instruction = Instruction("Rephrase: {question}\nFormat: <new>...</new>", "<new>", "</new>", "...")
    assert parse_rephrasing(f"<new>{REPHRASING}</new>", instruction).text == REPHRASING
    assert parse_rephrasing("<new>...</new>", instruction).text == "..."


def test_render_replaces_the_question_literally():
    instruction = Instruction("Keep $\\frac{a}{b}$ and {braces}: {question}\n[REPHRASED]\n[/REPHRASED]")
    assert instruction.render("What is {x}?").startswith("Keep $\\frac{a}{b}$ and {braces}: What is {x}?")


def test_fingerprint_depends_on_question_template_and_markers():
    other_template = Instruction(DEFAULT_INSTRUCTION.template + "\nBe brief.")
    other_markers = Instruction(
        DEFAULT_INSTRUCTION.template.replace("[REPHRASED]", "[NEW]"), start_marker="[NEW]"
    )
    prints = {
        DEFAULT_INSTRUCTION.fingerprint("q"),
        DEFAULT_INSTRUCTION.fingerprint("q "),
        other_template.fingerprint("q"),
        other_markers.fingerprint("q"),
    }
    assert len(prints) == 4
    assert DEFAULT_INSTRUCTION.fingerprint("q") == Instruction(DEFAULT_INSTRUCTION.template).fingerprint("q")


@pytest.mark.parametrize(
    "template, markers, message",
    [
        ("No slot here [REPHRASED] [/REPHRASED]", {}, "{question} exactly once, found 0"),
        ("{question} {question} [REPHRASED] [/REPHRASED]", {}, "exactly once, found 2"),
        ("{question} [/REPHRASED]", {}, "never shows the start marker '[REPHRASED]'"),
        ("{question} <a> </a>", {"start_marker": "<a>", "end_marker": "</b>"}, "never shows the end marker"),
        ("{question} [REPHRASED] [/REPHRASED]", {"start_marker": "  "}, "the start marker is empty"),
    ],
)
def test_bad_instructions_are_one_line_errors(template, markers, message):
    with pytest.raises(InstructionError) as excinfo:
        Instruction(template, **markers)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_instruction_from_file(tmp_path):
    path = tmp_path / "instruction.txt"
    path.write_text("Say it again: {question}\n<<A>>\n<new>\n<</A>>\n", encoding="utf-8")
    instruction = Instruction.from_file(path, start_marker="<<A>>", end_marker="<</A>>", placeholder="<new>")
    assert instruction.render("2+3?") == "Say it again: 2+3?\n<<A>>\n<new>\n<</A>>"
    with pytest.raises(
        InstructionError, match="instruction.txt: the instruction never shows the start marker"
    ):
        Instruction.from_file(path)
    with pytest.raises(InstructionError, match="cannot read the instruction file"):
        Instruction.from_file(tmp_path / "missing.txt")
