"""Dataset loaders: every format and preset on small files, every error path, and the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corewarding.core.prompts import SYSTEM_PROMPT
from corewarding.data.loaders import (
    MAX_QUESTION_CHARS,
    PRESETS,
    ColumnMap,
    detect_columns,
    load_problems,
    load_rephrased_pair,
)
from corewarding.data.rows import DatasetError


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def verl_row(index: int, question: str, ground_truth: str, **extra) -> dict:
    """A row as Co-rewarding's verl parquet files hold it."""
    return {
        "data_source": "DigitalLearningGmbH/MATH-lighteval",
        "prompt": [{"content": SYSTEM_PROMPT, "role": "system"}, {"content": question, "role": "user"}],
        "ability": "math",
        "reward_model": {"ground_truth": ground_truth, "style": "rule"},
        "extra_info": {"index": index, "split": "train"},
        **extra,
    }


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    return message


# --- every format and preset -------------------------------------------------------------------------


def test_gsm8k_jsonl(tmp_path):
    path = write_jsonl(
        tmp_path / "gsm8k.jsonl",
        [
            {"question": " Janet has 16 eggs. ", "answer": "16 - 3 = <<16-3=13>>13\n#### 13", "idx": 0},
            {"question": "How many?", "answer": "Lots.\n#### 1,234", "idx": 1},
        ],
    )
    problems = load_problems(path)
    assert [(p.id, p.question, p.answer) for p in problems] == [
        ("0", "Janet has 16 eggs.", "13"),
        ("1", "How many?", "1234"),
    ]
    assert problems[0].source == f"{tmp_path.name}/gsm8k"
    assert problems[0].rephrasing is None and problems[0].rephrasing_valid is None


def test_math_jsonl_keeps_level_and_type(tmp_path):
    path = write_jsonl(
        tmp_path / "math.jsonl",
        [
            {
                "problem": "Halve 1.",
                "solution": r"It is $\boxed{\frac{1}{2}}$.",
                "level": "Level 1",
                "type": "Algebra",
            }
        ],
    )
    [problem] = load_problems(path)
    assert problem.answer == r"\frac{1}{2}"
    assert problem.id == "0"  # no id column: rows are numbered
    assert problem.meta == {"level": "Level 1", "type": "Algebra"}


def test_aime_and_amc_numeric_answers(tmp_path):
    """AMC writes answers as floats (``27.0``); AIME has a worked ``solution`` and the bare ``answer``."""
    amc = write_jsonl(
        tmp_path / "amc23.jsonl", [{"id": 0, "problem": "Meet?", "question": "Meet?", "answer": 27.0}]
    )
    aime = write_jsonl(
        tmp_path / "aime24.jsonl",
        [{"id": 60, "problem": "Walk?", "solution": "so 3 hours, the total is 204 minutes", "answer": "204"}],
    )
    assert load_problems(amc)[0].answer == "27"
    [problem] = load_problems(aime)
    assert (problem.id, problem.answer) == ("60", "204")


def test_minerva_worked_solution(tmp_path):
    path = write_jsonl(
        tmp_path / "minerva.jsonl",
        [
            {
                "problem": "Diameter?",
                "solution": r"s = \boxed{1.6} \mathrm{~cm}",
                "type": "Astronomy",
                "idx": 0,
            }
        ],
    )
    [problem] = load_problems(path)
    assert (problem.question, problem.answer, problem.meta) == ("Diameter?", "1.6", {"type": "Astronomy"})


def test_svamp_and_asdiv_join_body_and_question(tmp_path):
    svamp = write_jsonl(
        tmp_path / "svamp.jsonl",
        [
            {
                "Answer": 145.0,
                "Question": "How big is each group?",
                "Body": "290 bananas are in 2 groups",
                "ID": "chal-777",
            }
        ],
    )
    asdiv = write_jsonl(
        tmp_path / "asdiv.jsonl",
        [
            {
                "body": "Seven red apples and two green apples are in the basket.",
                "question": "How many apples?",
                "answer": "9 (apples)",
                "idx": 0,
            },
            {
                "body": "If she adds 12 more pounds,",
                "question": "how many pounds?",
                "answer": "17 (pounds)",
                "idx": 1,
            },
        ],
    )
    [problem] = load_problems(svamp)
    assert (problem.id, problem.question, problem.answer) == (
        "chal-777",
        "290 bananas are in 2 groups. How big is each group?",
        "145",
    )
    problems = load_problems(asdiv)
    assert [(p.question, p.answer) for p in problems] == [
        ("Seven red apples and two green apples are in the basket. How many apples?", "9"),
        ("If she adds 12 more pounds, how many pounds?", "17"),
    ]


def test_verl_parquet_drops_the_system_message(tmp_path):
    path = write_parquet(
        tmp_path / "train.parquet",
        [
            verl_row(7, "What is 1+1?", "2", level="Level 1", type="Algebra"),
            verl_row(3, "And 2+2?", "4.0", level="Level 2", type="Algebra"),
        ],
    )
    problems = load_problems(path)
    assert [(p.id, p.question, p.answer) for p in problems] == [
        ("7", "What is 1+1?", "2"),
        ("3", "And 2+2?", "4"),
    ]
    assert problems[0].meta == {
        "level": "Level 1",
        "type": "Algebra",
        "data_source": "DigitalLearningGmbH/MATH-lighteval",
    }


def test_aligned_verl_pair_gives_rephrasings(tmp_path):
    original = write_parquet(
        tmp_path / "train.parquet", [verl_row(0, "What is 1+1?", "2"), verl_row(1, "What is 2+3?", "5")]
    )
    rephrased = write_parquet(
        tmp_path / "train_rewrite.parquet",
        [verl_row(0, "Add one apple to one apple.", "2"), verl_row(1, "Three cats join two cats.", "5")],
    )
    problems = load_rephrased_pair(original, rephrased)
    assert [(p.id, p.question, p.rephrasing, p.answer) for p in problems] == [
        ("0", "What is 1+1?", "Add one apple to one apple.", "2"),
        ("1", "What is 2+3?", "Three cats join two cats.", "5"),
    ]
    assert problems[0].rephrasing_valid is None


def test_misaligned_verl_pair_fails(tmp_path):
    original = write_parquet(
        tmp_path / "a.parquet", [verl_row(0, "Q0", "2"), verl_row(1, "Q1", "5"), verl_row(2, "Q2", "7")]
    )
    swapped = write_parquet(
        tmp_path / "b.parquet", [verl_row(0, "R0", "2"), verl_row(1, "R2", "7"), verl_row(2, "R1", "5")]
    )
    shorter = write_parquet(tmp_path / "c.parquet", [verl_row(0, "R0", "2")])
    with pytest.raises(DatasetError) as excinfo:
        load_rephrased_pair(original, swapped)
    message = one_line_error(excinfo)
    assert "not row-aligned" in message and "2 of 3 rows" in message and "first row 1" in message
    assert "'5' vs '7'" in message
    with pytest.raises(DatasetError) as excinfo:
        load_rephrased_pair(original, shorter)
    assert "3 rows vs 1" in one_line_error(excinfo)


def test_train_pairs_parquet(tmp_path):
    path = write_parquet(
        tmp_path / "train_pairs.parquet",
        [
            {
                "idx": 0,
                "original_question": "Find $a+b$.",
                "rephrased_question": "A company charges... find $a + b$.",
                "solution": "0",
                "level": "Level 5",
                "type": "Algebra",
                "original_message": [
                    {"content": SYSTEM_PROMPT, "role": "system"},
                    {"content": "Find $a+b$.", "role": "user"},
                ],
                "rephrased_message": [
                    {"content": SYSTEM_PROMPT, "role": "system"},
                    {"content": "A company...", "role": "user"},
                ],
            }
        ],
    )
    [problem] = load_problems(path)
    assert (problem.id, problem.question, problem.rephrasing, problem.answer) == (
        "0",
        "Find $a+b$.",
        "A company charges... find $a + b$.",
        "0",
    )
    assert problem.meta == {"level": "Level 5", "type": "Algebra"}


def test_csv_and_json_list(tmp_path):
    (tmp_path / "qa.csv").write_text('question,answer\n"Two, plus two?",#### 4\n', encoding="utf-8")
    (tmp_path / "qa.json").write_text(json.dumps([{"problem": "2+3?", "answer": 5}]), encoding="utf-8")
    (tmp_path / "lines.json").write_text(
        json.dumps({"problem": "2+4?", "answer": 6}) + "\n", encoding="utf-8"
    )
    assert [(p.question, p.answer) for p in load_problems(tmp_path / "qa.csv")] == [("Two, plus two?", "4")]
    assert [(p.question, p.answer) for p in load_problems(tmp_path / "qa.json")] == [("2+3?", "5")]
    assert [(p.question, p.answer) for p in load_problems(tmp_path / "lines.json")] == [("2+4?", "6")]


def test_saved_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"question": "1+1?", "answer": "#### 2"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows),
            "test": datasets.Dataset.from_list([{"question": "2+2?", "answer": "#### 4"}]),
        }
    ).save_to_disk(str(tmp_path / "splits"))
    assert load_problems(tmp_path / "single")[0].answer == "2"
    assert load_problems(tmp_path / "splits", split="test")[0].answer == "4"
    with pytest.raises(DatasetError) as excinfo:
        load_problems(tmp_path / "splits")
    assert "train, test" in one_line_error(excinfo)


def test_explicit_column_map_and_named_preset(tmp_path):
    path = write_jsonl(
        tmp_path / "custom.jsonl",
        [{"q": {"text": "What is 6*7?"}, "gold": "42", "key": "a", "alt": "Six sevens?", "topic": "x"}],
    )
    columns = ColumnMap(question="q.text", answer="gold", id="key", rephrasing="alt", meta=("topic",))
    [problem] = load_problems(path, columns, source="custom")
    assert (
        problem.id,
        problem.question,
        problem.answer,
        problem.rephrasing,
        problem.source,
        problem.meta,
    ) == ("a", "What is 6*7?", "42", "Six sevens?", "custom", {"topic": "x"})
    unlabeled = load_problems(path, ColumnMap(question="alt", answer=None))
    assert (unlabeled[0].question, unlabeled[0].answer) == ("Six sevens?", None)

    # A file with both layouts: detection picks asdiv, the named preset overrides it.
    both = write_jsonl(
        tmp_path / "both.jsonl", [{"body": "Ann has 2 pens.", "question": "How many?", "answer": "2 (pens)"}]
    )
    assert load_problems(both)[0].question == "Ann has 2 pens. How many?"
    assert load_problems(both, "qa")[0].question == "How many?"


def test_detect_columns_order():
    assert detect_columns(
        ["prompt", "reward_model", "reward_model.ground_truth", "extra_info.index", "level"]
    ) == ColumnMap(
        question="prompt", answer="reward_model.ground_truth", id="extra_info.index", meta=("level",)
    )
    assert detect_columns(["problem", "solution", "answer", "id"]).answer == "answer"
    assert list(PRESETS)[-1] == "qa"  # the generic layout is tried last


def test_unparsable_reference_answer_is_none(tmp_path):
    path = write_jsonl(
        tmp_path / "q.jsonl", [{"question": "?", "answer": ""}, {"question": "!", "answer": None}]
    )
    assert [p.answer for p in load_problems(path)] == [None, None]


# --- errors: one line, DatasetError ------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        load_problems(tmp_path / "nope.jsonl")
    assert "no such dataset file or folder" in one_line_error(excinfo)


def test_unknown_format(tmp_path):
    (tmp_path / "data.txt").write_text("question: 1+1\n")
    with pytest.raises(DatasetError) as excinfo:
        load_problems(tmp_path / "data.txt")
    assert "unknown dataset format '.txt'" in one_line_error(excinfo)


def test_unreadable_files(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not a parquet file at all")
    write_jsonl(tmp_path / "broken.jsonl", [{"question": "ok", "answer": "1"}])
    with (tmp_path / "broken.jsonl").open("a") as file:
        file.write("{not json\n")
    (tmp_path / "array.jsonl").write_text("[1, 2]\n")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "not-a-dataset").mkdir()
    expected = {
        "broken.parquet": "cannot read",
        "broken.jsonl": "line 2 is not valid JSON",
        "array.jsonl": "line 1 is a JSON list",
        "binary.jsonl": "cannot read",
        "not-a-dataset": "not a dataset saved by datasets",
    }
    for name, fragment in expected.items():
        with pytest.raises(DatasetError) as excinfo:
            load_problems(tmp_path / name)
        assert fragment in one_line_error(excinfo), name


def test_missing_column_names_it_and_lists_the_columns(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "1+1?", "answer": "2"}])
    with pytest.raises(DatasetError) as excinfo:
        load_problems(path, ColumnMap(question="question", answer="solution"))
    assert one_line_error(excinfo).endswith("has no column 'solution'; columns present: question, answer")


def test_no_preset_fits(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"text": "1+1?", "label": "2"}])
    with pytest.raises(DatasetError) as excinfo:
        load_problems(path)
    assert "no preset" in one_line_error(excinfo) and "text, label" in str(excinfo.value)
    with pytest.raises(DatasetError) as excinfo:
        load_problems(path, "svamp")
    assert "does not fit preset 'svamp'" in one_line_error(excinfo)
    with pytest.raises(DatasetError) as excinfo:
        load_problems(path, "gsm9k")
    assert "unknown preset 'gsm9k'" in one_line_error(excinfo)


def test_empty_dataset(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    write_parquet(tmp_path / "empty.parquet", [])
    for name in ("empty.jsonl", "empty.parquet"):
        with pytest.raises(DatasetError) as excinfo:
            load_problems(tmp_path / name)
        assert "has no rows" in one_line_error(excinfo)


def test_row_without_question_and_duplicate_ids(tmp_path):
    no_question = write_jsonl(
        tmp_path / "a.jsonl", [{"question": "1+1?", "answer": "2"}, {"question": " ", "answer": "3"}]
    )
    duplicates = write_jsonl(
        tmp_path / "b.jsonl",
        [{"question": "1+1?", "answer": "2", "id": 4}, {"question": "2?", "answer": "2", "id": 4}],
    )
    with pytest.raises(DatasetError) as excinfo:
        load_problems(no_question)
    assert "row 1 has no question" in one_line_error(excinfo)
    with pytest.raises(DatasetError) as excinfo:
        load_problems(duplicates)
    assert "id '4' appears 2 times" in one_line_error(excinfo)
    assert [p.id for p in load_problems(duplicates, ColumnMap(question="question", answer="answer"))] == [
        "0",
        "1",
    ]


def test_a_question_over_the_length_limit_is_refused_in_one_line(tmp_path):
    long_question = "How many? " + "x" * MAX_QUESTION_CHARS
    rows = [{"question": "1+1?", "answer": "2"}, {"question": long_question, "answer": "3"}]
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    with pytest.raises(DatasetError) as excinfo:
        load_problems(path)
    assert f"row 1 has a question of {len(long_question):,} characters" in one_line_error(excinfo)
    assert len(load_problems(path, max_question_chars=None)) == 2
    pairs = write_parquet(
        tmp_path / "pairs.parquet",
        [{"original_question": "1+1?", "rephrased_question": long_question, "solution": "2", "idx": 0}],
    )
    with pytest.raises(DatasetError) as excinfo:
        load_problems(pairs)
    assert "row 0 has a rephrasing of" in one_line_error(excinfo)


@pytest.mark.parametrize(
    "row, column, shown",
    [
        ({"question": 0, "answer": "1"}, "question", "int, not text, in row 1 (0)"),
        ({"question": {"a": 1}, "answer": "1"}, "question", "dict, not text, in row 1 ({'a': 1})"),
        ({"question": ["1+1?", "2+2?"], "answer": "1"}, "question", "list, not text, in row 1 (['1+1?', '2+"),
        ({"question": "1+1?", "answer": [1, 2]}, "answer", "list, not text, in row 1 ([1, 2])"),
        ({"question": "1+1?", "answer": True}, "answer", "bool, not text, in row 1 (True)"),
    ],
)
def test_a_question_or_answer_that_is_not_text_is_refused_naming_column_type_and_row(
    tmp_path, row, column, shown
):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "1+1?", "answer": "2"}, row])
    with pytest.raises(DatasetError) as excinfo:
        load_problems(path)
    assert one_line_error(excinfo).startswith(f"{path}: column {column!r} holds {shown}")


def test_binary_questions_are_refused_and_numbers_and_chat_messages_are_read(tmp_path):
    binary = write_parquet(tmp_path / "b.parquet", [{"question": b"\xff\x00", "answer": "1"}])
    with pytest.raises(DatasetError) as excinfo:
        load_problems(binary)
    assert "column 'question' holds bytes, not text, in row 0 (b'\\xff\\x00')" in one_line_error(excinfo)
    rows = [
        {"question": [{"role": "user", "content": "What is 2+2?"}], "answer": 4},
        {"question": "What is 1.5*2?", "answer": 3.0},
    ]
    problems = load_problems(write_jsonl(tmp_path / "ok.jsonl", rows))
    assert [(p.question, p.answer) for p in problems] == [("What is 2+2?", "4"), ("What is 1.5*2?", "3")]


def test_hub_id_offline_is_one_line(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError) as excinfo:
        load_problems("openai/gsm8k", subset="main", split="test")
    assert "not a local file or folder, and loading it from the hub failed" in one_line_error(excinfo)


# --- the shared data ---------------------------------------------------------------------------------

# (file, rows, rows whose reference answer does not parse). The two MATH-train rows (indices 5341 and
# 5343) have an empty ground truth in the Co-rewarding release itself.
SHARED_FILES = [
    ("corewarding-math/train.parquet", 7500, 2),
    ("corewarding-math/train_rewrite_Qwen3-32B.parquet", 7500, 2),
    ("corewarding-math/train_pairs.parquet", 7500, 2),
    ("corewarding-math/test.parquet", 5000, 0),
    ("corewarding-amc/test.parquet", 83, 0),
    ("corewarding-amc/test_rewrite_Qwen3-32B.parquet", 83, 0),
    ("corewarding-dapo/train_original.parquet", 14109, 0),
    ("corewarding-dapo/train_rewrite_Qwen3-32B.parquet", 14109, 0),
    ("benchmarks/gsm8k.jsonl", 1319, 0),
    ("benchmarks/gsm8k_train.jsonl", 7473, 0),
    ("benchmarks/math500.jsonl", 500, 0),
    ("benchmarks/aime24.jsonl", 30, 0),
    ("benchmarks/amc23.jsonl", 40, 0),
    ("benchmarks/minerva_math.jsonl", 272, 0),
    ("benchmarks/svamp.jsonl", 1000, 0),
    ("benchmarks/asdiv.jsonl", 2215, 0),
]

# (original, rephrased, rows, rephrasings that are the template placeholder)
SHARED_PAIRS = [
    ("corewarding-math/train.parquet", "corewarding-math/train_rewrite_Qwen3-32B.parquet", 7500, 19),
    ("corewarding-amc/test.parquet", "corewarding-amc/test_rewrite_Qwen3-32B.parquet", 83, 0),
    (
        "corewarding-dapo/train_original.parquet",
        "corewarding-dapo/train_rewrite_Qwen3-32B.parquet",
        14109,
        45,
    ),
]


@pytest.mark.parametrize(("relative", "rows", "unparsable"), SHARED_FILES)
def test_shared_file(shared_file, relative, rows, unparsable):
    problems = load_problems(shared_file(relative))
    assert len(problems) == rows
    assert sum(p.answer is None for p in problems) == unparsable
    assert all(p.question and SYSTEM_PROMPT not in p.question for p in problems)


@pytest.mark.parametrize(("original", "rephrased", "rows", "placeholders"), SHARED_PAIRS)
def test_shared_rephrased_pair(shared_file, original, rephrased, rows, placeholders):
    problems = load_rephrased_pair(shared_file(original), shared_file(rephrased))
    assert len(problems) == rows
    assert all(p.rephrasing for p in problems)
    assert sum(p.rephrasing == "<rewritten question>" for p in problems) == placeholders


def test_shared_train_pairs_match_the_aligned_files(shared_file):
    from_pairs = load_problems(shared_file("corewarding-math/train_pairs.parquet"))
    from_files = load_rephrased_pair(
        shared_file("corewarding-math/train.parquet"),
        shared_file("corewarding-math/train_rewrite_Qwen3-32B.parquet"),
    )
    assert [(p.id, p.question, p.rephrasing, p.answer) for p in from_pairs] == [
        (p.id, p.question, p.rephrasing, p.answer) for p in from_files
    ]
