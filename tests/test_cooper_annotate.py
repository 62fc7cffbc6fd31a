"""Labelled completions for Cooper's reward model (cooper/annotate.py): the verifier and the judge,
resuming, reading the file back, the command's errors."""

import json
import re
from dataclasses import asdict, replace

import pytest
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.cooper.annotate import (
    AnnotationSettings,
    LabelledExample,
    annotate,
    label_completions,
    read_labelled,
    split_of_question,
)
from corewarding.data.synthetic import generate_problems
from corewarding.inference.generation import Completion


class ScriptedSampler:
    """A generation backend whose completion j of a question is right (boxed answer), wrong (answer + 1)
    or unboxed, by j mod 3."""

    description = "scripted"

    def __init__(self):
        self.asked: list[str] = []

    def generate(self, conversations, settings, on_result=None):
        out = []
        for conversation in conversations:
            question = conversation[-1]["content"]
            self.asked.append(question)
            answer = int(next(p.answer for p in PROBLEMS if p.question == question))
            forms = [f"so \\boxed{{{answer}}}", f"so \\boxed{{{answer + 1}}}", f"so it is {answer}"]
            out.append([Completion(forms[j % 3]) for j in range(settings.n)])
        return out


class YesJudge:
    description = "stub-judge"

    def __init__(self, reply="Checking... YES"):
        self.reply, self.prompts = reply, []

    def generate(self, conversations, settings, on_result=None):
        for i, conversation in enumerate(conversations):
            self.prompts.append(conversation[-1]["content"])
            on_result(i, [Completion(self.reply)])
        return [[Completion(self.reply)] for _ in conversations]


PROBLEMS = generate_problems(12, "train", seed=0)


def test_verifier_labels_and_the_judge_decides_only_what_it_cannot_parse():
    labels, labelers, answers, unclear = label_completions(
        ["q"] * 3, ["12"] * 3, ["\\boxed{12}", "\\boxed{13}", "it is 12"]
    )
    assert (labels, labelers, answers, unclear) == (
        [True, False, False],
        ["verifier"] * 3,
        ["12", "13", None],
        0,
    )
    judge = YesJudge()
    labels, labelers, _, _ = label_completions(
        ["q"] * 3, ["12"] * 3, ["\\boxed{12}", "\\boxed{13}", "it is 12"], judge=judge
    )
    assert labels == [True, False, True] and labelers == ["verifier", "verifier", "judge"]
    assert len(judge.prompts) == 1 and "<completion>it is 12</completion>" in judge.prompts[0]
    _, labelers, _, unclear = label_completions(["q"], ["12"], ["it is 12"], judge=YesJudge("hmm"))
    assert labelers == ["verifier"] and unclear == 1


def test_annotate_writes_labelled_rows_and_resumes(tmp_path):
    out = tmp_path / "data.jsonl"
    settings = AnnotationSettings(samples=3, chunk_size=4, heldout_fraction=0.5)
    sampler = ScriptedSampler()
    first = annotate(PROBLEMS[:6], sampler, out, settings, policy="scripted", progress=False)
    assert (first.written, first.positives, first.labelers) == (18, 6, {"verifier": 18})
    rows = read_labelled(out)
    assert [r.label for r in rows[:3]] == [True, False, False] and rows[0].reference == PROBLEMS[0].answer
    assert {r.split for r in rows} == {"train", "heldout"}
    assert all(r.split == split_of_question(r.question_id, 0.5) for r in rows)

    # killed in the middle of a write: a question with 2 of its 3 rows and a cut-off line
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:20])
    second = annotate(PROBLEMS, sampler, out, settings, policy="scripted", progress=False)
    assert second.done_before == 5 and second.written == 7 * 3
    assert sampler.asked[6:] == [p.question for p in PROBLEMS[5:]]
    rows = read_labelled(out)
    assert len(rows) == 36 and len({(r.question_id, r.completion) for r in rows}) == 36

    with pytest.raises(ValueError, match="other settings"):
        annotate(PROBLEMS, sampler, out, AnnotationSettings(samples=4), policy="scripted", progress=False)


def test_read_labelled_skips_a_last_line_cut_inside_a_character_and_refuses_a_junk_byte(tmp_path):
    row = LabelledExample("0", "Combien font 2 et 2 ?", "4", "Ça fait \\boxed{4}.", "4", True, "verifier", "")
    rows = [replace(row, question_id=str(i), split="train") for i in range(3)]
    lines = [(json.dumps(asdict(row), ensure_ascii=False) + "\n").encode() for row in rows]
    path = tmp_path / "data.jsonl"
    path.write_bytes(lines[0] + lines[1] + lines[2][: lines[2].index("Ç".encode()) + 1])
    assert read_labelled(path) == rows[:2]
    path.write_bytes(lines[0] + lines[1].replace(b"2 et 2", b"2 \xff 2") + lines[2])
    with pytest.raises(ValueError, match=re.escape(f"{path}:2 is not a labelled completion (not UTF-8;")):
        read_labelled(path)


def test_annotate_command_reports_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "a labelled row"}\n')
    result = CliRunner().invoke(app, ["rm", "train", str(bad), "-o", str(tmp_path / "rm")])
    assert (
        result.exit_code == 2
        and result.output.startswith("error: ")
        and "is not a labelled completion" in result.output
    )
    result = CliRunner().invoke(app, ["rm", "train", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "no labelled data at" in result.output
