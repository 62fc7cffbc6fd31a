"""Every script in ``benchmarks/`` runs through its real entry point in its smallest size, so that none can
rot unnoticed (``bench_rewards.py`` once crashed on main for want of such a test), and the interleaved
measurement they share (``benchmarks/interleaved.py``) computes what it claims.

The smoke runs check that a script finishes and prints its table, never its figures: timings on a shared
machine are what the benchmarks measure, not what a test may assert.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from interleaved import Ratio, machine_quiet, ratio, round_robin, verdict  # noqa: E402


def bench(script: str, *arguments: str, cwd=None) -> str:
    """``python benchmarks/SCRIPT ARGUMENTS`` as a user runs it, one torch thread; its output, or a failure
    with its error output."""
    environment = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments], capture_output=True, text=True,
        cwd=cwd or REPO_ROOT, env=environment, check=False, timeout=900,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


# ------------------------------------------------------------------------- the interleaved measurement


def test_round_robin_rotates_the_order_and_drops_the_warm_up_round():
    calls = []

    def contestant(name):
        def call():
            calls.append(name)
            return len(calls)

        return call

    results = round_robin({name: contestant(name) for name in "abc"}, rounds=3, warmup=1)
    assert calls == list("abc" "bca" "cab" "abc")
    assert results == {"a": [6, 8, 10], "b": [4, 9, 11], "c": [5, 7, 12]}


def test_ratio_is_the_median_of_per_round_ratios_with_quartiles():
    # Each round's load scales both sides alike: the per-round ratio is 1.1 whatever the load.
    reference = [1.0, 5.0, 2.0, 3.0, 8.0]
    measured = ratio([1.1 * r for r in reference], reference)
    assert measured.median == pytest.approx(1.1) and measured.q1 == pytest.approx(1.1)
    assert measured.q3 == pytest.approx(1.1) and measured.rounds == 5
    spread = ratio([1, 2, 3, 4, 5], [1, 1, 1, 1, 1])
    assert (spread.median, spread.q1, spread.q3) == (3, 2, 4)


def test_a_target_is_judged_only_when_the_self_check_is_quiet():
    assert machine_quiet(Ratio(1.02, 0.9, 1.1, 10)) and not machine_quiet(Ratio(1.04, 1.0, 1.1, 10))
    assert machine_quiet(Ratio(1.08, 1.0, 1.1, 10), tolerance=0.10)
    assert verdict(Ratio(1.04, 1.0, 1.09, 10), 1.05, 1.10, quiet=True) == "met"
    assert verdict(Ratio(1.04, 1.0, 1.12, 10), 1.05, 1.10, quiet=True) == "missed"
    assert verdict(Ratio(1.07, 1.0, 1.09, 10), 1.05, 1.10, quiet=True) == "missed"
    assert verdict(Ratio(1.04, 1.0, 1.09, 10), 1.05, 1.10, quiet=False) == "not judged (noisy)"


# ------------------------------------------------------------------------------------------ smoke runs


def test_every_benchmark_script_has_a_smoke_test():
    """A script added to ``benchmarks/`` (a file with a ``__main__`` entry; ``interleaved.py`` is a helper)
    without ``test_<script>_smoke`` here fails this test, so that no benchmark goes untested."""
    scripts = [p.stem for p in BENCHMARKS.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()]
    assert len(scripts) >= 10
    missing = [name for name in scripts if f"test_{name}_smoke" not in globals()]
    assert not missing, f"benchmarks without a smoke test in tests/test_benchmarks.py: {missing}"



def test_bench_rewards_smoke():
    out = bench("bench_rewards.py", "--groups", "4", "--rollouts", "2", "--rounds", "2")
    assert "math-verify workers:" in out and "a self-check outside 1.00" in out


@pytest.mark.slow  # each of its six cases starts fresh math-verify workers: 20-40 s in all
def test_bench_equivalence_smoke():
    out = bench("bench_equivalence.py", "--answers", "5", "--rounds", "2")
    assert "self-check" in out and "targets: each" in out


def test_bench_cli_smoke():
    out = bench("bench_cli.py", "--repeats", "1", "--limit", "2")
    assert "`corewarding --help`" in out and "`corewarding demo --help`" in out


@pytest.mark.slow
def test_bench_trainer_smoke(tmp_path):
    out = bench(
        "bench_trainer.py", "--rounds", "2", "--prompts", "2", "--generations", "2",
        "--methods", "ground_truth,co_rewarding_ii,self_certainty", cwd=tmp_path,
    )
    for row in ("TRL GRPOTrainer (reference)", "TRL GRPOTrainer again (self-check)", "co_rewarding_ii"):
        assert row in out
    assert "self-check (TRL against TRL)" in out


@pytest.mark.slow
def test_bench_trainer_with_vllm_smoke(tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (bash .ci/vllm makes an environment with it)")
    out = bench(
        "bench_trainer.py", "--rounds", "1", "--prompts", "2", "--generations", "2",
        "--methods", "ground_truth", "--vllm", cwd=tmp_path,
    )
    assert "vLLM colocate" in out


@pytest.mark.slow
def test_bench_threads_smoke(tmp_path):
    out = bench(
        "bench_threads.py", "--repeats", "1", "--steps", "1", "--questions", "2", "--threads", "1",
        cwd=tmp_path,
    )
    assert "| train (majority_vote, 1 steps) |" in out and "| eval (tiny, 2 questions, -k 4) |" in out


def test_bench_precision_refuses_a_teacher_that_cannot_have_moved():
    """One Co-rewarding-II step leaves the teacher where it started (its first update copies the
    unchanged policy), and the table divided by that zero distance after minutes of training."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_precision.py"), "--steps-ii", "1"], capture_output=True,
        text=True, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, check=False,
    )
    assert done.returncode == 2 and "--steps-ii must be at least 2" in done.stderr.splitlines()[-1]


@pytest.mark.slow
def test_bench_precision_smoke(tmp_path):
    out = bench("bench_precision.py", "--steps-gt", "1", "--steps-ii", "2", cwd=tmp_path)
    assert "bf16 weights" in out


@pytest.mark.slow
def test_validate_diagnose_smoke(tmp_path):
    report = REPO_ROOT / "docs" / "results" / "distractor" / "report.md"
    out = bench(
        "validate_diagnose.py", f"distractor=tiny:{report}", "--seeds", "0", "--questions", "4", "-k", "2",
        "--probe-steps", "1", cwd=tmp_path,
    )
    assert "basis: recommendation right on" in out


@pytest.mark.slow
def test_vote_errors_smoke():
    out = bench("vote_errors.py", "tiny", "--problems", "4", "-k", "2")
    assert "premature" in out


@pytest.mark.slow
def test_entropy_controls_smoke(tmp_path):
    assert "| a rollout's mean token entropy" in bench(
        "entropy_controls.py", "anatomy", "--questions", "2", "--group", "2"
    )
    out = bench(
        "entropy_controls.py", "runs", "-o", str(tmp_path / "runs"), "--only", "entropy", "--steps", "2"
    )
    assert "| entropy |" in out


def test_gpu_check_says_in_one_line_that_it_needs_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: test_gpu_check_smoke runs the check itself")
    environment = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--steps", "1"], capture_output=True, text=True,
        env=environment, check=False,
    )
    assert done.returncode != 0 and done.stderr.strip() == "gpu_check needs a CUDA GPU"


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (none here); test_gpu_check_says_in_one_line_that_it_needs_a_gpu ran")
    out = bench("gpu_check.py", "--steps", "2", "--out", str(tmp_path / "result.json"), cwd=tmp_path)
    assert (tmp_path / "result.json").is_file() and "GPU check on" in out


@pytest.mark.slow
def test_bench_teacher_memory_smoke(tmp_path):
    out = bench("bench_teacher_memory.py", "--rank", "2", "--sizes", "tiny", "--json", str(tmp_path / "m.json"))
    assert "| tiny | float32 | adapter |" in out and "Qwen3-8B (computed)" in out
    assert (tmp_path / "m.json").exists()


def test_validate_diagnose_fresh_smoke():
    """Its regimes are drawn from its seed, and its table comes from the stored files (the validation itself
    takes about an hour of both cores)."""
    first = bench("validate_diagnose_fresh.py", "--draw-only")
    assert first == bench("validate_diagnose_fresh.py", "--draw-only")
    assert first != bench("validate_diagnose_fresh.py", "--draw-only", "--draw-seed", "1")
    table = bench("validate_diagnose_fresh.py", "table")
    assert table.startswith("| regime | method | with answers |") and "fresh-20261206-0" in table


@pytest.mark.slow
def test_bench_real_model_smoke(tmp_path):
    """The profile's sections on the tiny model (SmolLM2 itself is fetched and trained by tests/test_smollm2.py)."""
    out = bench("bench_real_model.py", "--model", "tiny", "--steps", "2", "--variants", "fp32",
                "--json", str(tmp_path / "profile.json"))
    assert "fp32" in out and "generation" in out
    assert (tmp_path / "profile.json").exists()


def test_results_tables_smoke():
    out = bench("results_tables.py")
    assert out.count("<!-- generated: python benchmarks/results_tables.py ") >= 3 and "<!-- end -->" in out


def test_headline_seeds_smoke(tmp_path):
    """Two steps of each method with seed 0, stored and reported (the real one: 15 runs of 180 steps)."""
    bench("headline_seeds.py", "run", "--seeds", "0", "--steps", "2", "--runs", str(tmp_path / "runs"),
          "--stored", str(tmp_path / "stored"))
    report = (tmp_path / "stored" / "report.md").read_text()
    for method in ("ground_truth", "majority_vote", "co_rewarding_i"):
        assert (tmp_path / "stored" / "seed-0" / method / "metrics.jsonl.gz").is_file()
        assert f"| {method} | {method} | 2 |" in report


def test_teacher_drift_smoke():
    """Its table from the stored runs (its `run` is the experiment itself: hours)."""
    assert "frozen" in bench("teacher_drift.py", "table")


@pytest.mark.engines
def test_bench_engines_smoke(tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed runs in the engines job's environment (.ci/engines)")
    out = bench("bench_engines.py", "--steps", "2", "--methods", "ground_truth", "--out", str(tmp_path / "e.json"))
    assert "| ground_truth |" in out and (tmp_path / "e.json").exists()


def test_smollm2_study_smoke(tmp_path):
    """Two steps of a method and of the format control on the tiny model, stored and tabled (the study
    itself: SmolLM2, 24 runs of 30 steps)."""
    out = bench("smollm2_study.py", "run", "--model", "tiny", "--steps", "2", "--seeds", "0",
                "--only", "majority_vote", "fixed_format/ground_truth",
                "--runs", str(tmp_path / "runs"), "--stored", str(tmp_path / "stored"))
    for name in ("majority_vote", "fixed_format/ground_truth"):
        assert (tmp_path / "stored" / name / "seed-0" / "metrics.jsonl.gz").is_file()
        assert f"| {name} | 0 |" in out
    control = (tmp_path / "runs" / "data" / "arithmetic_fixed_format_train.jsonl").read_text()
    assert "Reply with only the number." in control and "####" not in control


def test_smollm2_study_echo_smoke(tmp_path):
    """The echo measurement on the tiny model, its table and JSON (the study's: SmolLM2 before and after)."""
    out = bench("smollm2_study.py", "echo", "--control", "--models", "start=tiny", "--out", str(tmp_path / "e.json"))
    assert "| start |" in out
    record = json.loads((tmp_path / "e.json").read_text())
    figures = record["models"]["start"]
    assert record["questions"] == "fixed_format" and record["count"] == 32
    assert 0 <= figures["answer_in_question_share"] <= 1 and 0 <= figures["right"] <= 1
