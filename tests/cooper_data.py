"""Labelled completions for the Cooper tests: right and wrong answers of synthetic questions."""

from corewarding.cooper.annotate import LabelledExample
from corewarding.data.synthetic import generate_problems


def labelled(count: int, split: str = "train") -> list[LabelledExample]:
    """Two completions of each of ``count`` questions: the right answer, and one too high."""
    rows = []
    for problem in generate_problems(count, "train", seed=1):
        for answer in (problem.answer, str(int(problem.answer) + 1)):
            right = answer == problem.answer
            completion = f"\\boxed{{{answer}}}"
            rows.append(
                LabelledExample(
                    problem.id, problem.question, problem.answer, completion, answer, right, "verifier", split
                )
            )
    return rows
