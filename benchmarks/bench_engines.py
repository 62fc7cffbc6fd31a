"""Step time of each distributed engine on CPU processes: the tiny model, 2 processes on gloo, through
``accelerate launch`` with the shipped configs (``configs/paper/accelerate``) and ``python -m corewarding
train``; plain DDP (no config) as the baseline. Needs DeepSpeed and the test shim (``tests/engines_shim``,
which reports the CPU processes as GPUs), as in the engines job; run it in that job's environment:

    COREWARDING_ENGINES_VENV=/tmp/engines-venv bash .ci/engines   # once, to make the environment
    /tmp/engines-venv/bin/python benchmarks/bench_engines.py [--steps 4] [--methods ground_truth,…]

Prints a table (median seconds per step over the steps after the first, each engine's ratio to DDP, and
the machine's 1-minute load before each run) and writes it to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINES = {
    "ddp": [],
    "zero2": ["--config_file", "configs/paper/accelerate/zero2.yaml"],
    "zero3": ["--config_file", "configs/paper/accelerate/zero3.yaml"],
    "fsdp2": ["--config_file", "configs/paper/accelerate/fsdp2.yaml"],
}


def step_times(engine: str, method: str, steps: int, out: Path) -> list[float]:
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests" / "engines_shim"), str(REPO_ROOT)]),
    }
    command = [
        sys.executable, "-m", "accelerate.commands.launch", *ENGINES[engine], "--num_processes", "2",
        "-m", "corewarding", "train", "--config", f"tiny/{method}", "--output_dir", str(out),
        "--max_steps", str(steps), "--save_strategy", "no", "--eval_strategy", "no", "--eval_on_start",
        "false", "--threads", "1",
    ]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{engine} {method} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [row["step_time"] for row in rows if "step_time" in row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--methods", default="ground_truth,co_rewarding_ii")
    default_out = REPO_ROOT / "docs" / "results" / "engines" / "step_times.json"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods.split(","):
            for engine in ENGINES:
                load = os.getloadavg()[0]
                times = step_times(engine, method, args.steps, Path(scratch) / f"{engine}-{method}")
                results.append({"engine": engine, "method": method, "load_before": load,
                                "step_s": median(times[1:]), "step_times": times})
                print(f"{method:16} {engine:6} {median(times[1:]):6.2f} s/step (load {load:.1f})", flush=True)
    print(f"\n| method | engine | s / step (median of steps 2-{args.steps}) | x DDP | load before |")
    print("|---|---|---|---|---|")
    for row in results:
        ddp = next(r for r in results if r["method"] == row["method"] and r["engine"] == "ddp")["step_s"]
        row["x_ddp"] = row["step_s"] / ddp
        print(f"| {row['method']} | {row['engine']} | {row['step_s']:.2f} | {row['x_ddp']:.2f}x | "
              f"{row['load_before']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "processes": 2, "steps": args.steps}
    args.out.write_text(json.dumps({"machine": machine, "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
