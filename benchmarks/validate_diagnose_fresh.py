"""Validate ``corewarding diagnose`` out of sample: draw fresh regimes of the tiny model, pretrain them,
diagnose each, run the methods, and write the per-regime table — the protocol of docs/diagnose_protocol.md.

A regime is a base corpus (``corewarding pretrain --regime``) and the corpus options below, drawn uniformly
from :data:`RANGES` with ``--draw-seed`` (a draw too close to a shipped regime is drawn again). For each:

1. ``corewarding pretrain --regime BASE --seed 0 … -o DIR/<name>/model``;
2. ``corewarding diagnose DIR/<name>/model synthetic --json DIR/<name>/diagnosis.json`` (200 questions,
   k = 8, the 30-step probe); the verdict without answers is judged from the same measurements;
3. ``corewarding train --config tiny/<method> --max_steps 100`` for ground truth, majority vote,
   Co-rewarding-I and Co-rewarding-II and each ``--seeds``, ``--parallel`` (2) at a time, one thread each;
4. per regime and method: *collapses* when the collapse monitor flagged at least half of its seeds; else
   *helps* when its mean held-out sampled-accuracy gain is at least half of ground truth's; else *no real
   gain*. The recommendation is right when the recommended methods among those run are exactly those
   that helped.

Every step is skipped when its output exists, so an interrupted validation goes on where it stopped::

    python benchmarks/validate_diagnose_fresh.py --draw-seed 20261206 --regimes 4 --dir runs/fresh \\
        --output docs/results/diagnose_fresh.md

``--draw-only`` prints the drawn regimes and exits (seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import fmean

from corewarding.core import metric_names
from corewarding.core.collapse import detect_collapse, read_metrics
from corewarding.diagnosis.verdict import COLLAPSES, HELPS, NO_SIGNAL, SHARPENS, judge

#: The corpus options and their ranges (uniform; slip_max an integer).
RANGES = {
    "slip_rate": (0.0, 0.5),
    "slip_max": (1, 5),
    "distractor_rate": (0.0, 0.6),
    "distractor_use_rate": (0.0, 0.9),
    "shortcut_rate": (0.0, 0.9),
}
BASES = ("distractor", "shortcut", "hard")
#: The shipped regimes' corpus values (corewarding/tiny/regimes.py), which a draw must not repeat.
SHIPPED = {
    "distractor": {"slip_rate": 0.4, "slip_max": 3, "distractor_rate": 0.35, "distractor_use_rate": 0.85,
                   "shortcut_rate": 0.0},
    "shortcut": {"slip_rate": 0.0, "slip_max": 3, "distractor_rate": 0.0, "distractor_use_rate": 0.0,
                 "shortcut_rate": 0.95},
    "hard": {"slip_rate": 0.4, "slip_max": 3, "distractor_rate": 0.0, "distractor_use_rate": 0.0,
             "shortcut_rate": 0.4},
}
#: Closer than this on every option to its base's shipped values, a draw is that regime again.
TOO_CLOSE = 0.05
METHODS = ("ground_truth", "majority_vote", "co_rewarding_i", "co_rewarding_ii")
#: The measured outcome each expected outcome names.
MEASURED_AS = {HELPS: "helps", SHARPENS: "no real gain", NO_SIGNAL: "no real gain", COLLAPSES: "collapses"}


def draw_regimes(seed: int, count: int) -> list[dict]:
    """``count`` regimes ``{"name", "base", "options"}`` drawn from :data:`RANGES` with ``seed``."""
    rng = random.Random(seed)
    regimes = []
    while len(regimes) < count:
        base = rng.choice(BASES)
        options = {
            name: rng.randint(*span) if name == "slip_max" else round(rng.uniform(*span), 3)
            for name, span in RANGES.items()
        }
        if all(abs(options[k] - v) < TOO_CLOSE for k, v in SHIPPED[base].items()):
            continue
        regimes.append({"name": f"fresh-{seed}-{len(regimes)}", "base": base, "options": options})
    return regimes


def run(command: list[str], log: Path) -> None:
    """Run a corewarding command, its output in ``log``; stop the validation when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "corewarding", *command], stdout=out, stderr=out)
    if done.returncode:
        raise SystemExit(f"error: {' '.join(command)} failed (exit {done.returncode}); see {log}")


def pretrain(regime: dict, folder: Path) -> Path:
    model = folder / "model"
    if not (model / "pretrain.json").exists():
        options = [f"--{name.replace('_', '-')}={value}" for name, value in regime["options"].items()]
        run(["pretrain", "--regime", regime["base"], "--seed", "0", *options, "-o", str(model),
             "--threads", "1"], folder / "pretrain.log")
    return model


def diagnosis(model: Path, folder: Path) -> dict:
    path = folder / "diagnosis.json"
    if not path.exists():
        run(["diagnose", str(model), "synthetic", "--threads", "1", "--json", str(path)],
            folder / "diagnose.log")
    return json.loads(path.read_text())


def train_command(model: Path, method: str, seed: int, output: Path) -> list[str]:
    return ["train", "--config", f"tiny/{method}", "--model_name_or_path", str(model), "--seed", str(seed),
            "--max_steps", "100", "--output_dir", str(output), "--threads", "1"]


def run_outcome(output: Path) -> dict:
    """A finished run's held-out sampled accuracy at its first and last evaluation, and its collapse flag."""
    records = read_metrics(output / "metrics.jsonl")
    key = metric_names.HELDOUT_SAMPLED
    sampled = [r[key] for r in records if r.get(key) is not None]
    return {"start": sampled[0], "final": sampled[-1], "collapsed": detect_collapse(records).collapsed}


def measured_outcomes(runs: dict[tuple[str, int], dict], seeds: list[int]) -> dict[str, dict]:
    """Per method: ``{"outcome", "gain"}`` (mean gain over seeds, points) — the protocol's scoring."""
    def gain(method: str) -> float:
        return 100 * fmean(runs[(method, s)]["final"] - runs[(method, s)]["start"] for s in seeds)

    truth = gain("ground_truth")
    outcomes = {}
    for method in METHODS[1:]:
        flagged = sum(runs[(method, s)]["collapsed"] for s in seeds)
        if 2 * flagged >= len(seeds):
            outcome = "collapses"
        elif gain(method) >= 0.5 * truth:
            outcome = "helps"
        else:
            outcome = "no real gain"
        outcomes[method] = {"outcome": outcome, "gain": gain(method), "flagged": flagged}
    outcomes["ground_truth"] = {"outcome": "-", "gain": truth, "flagged": 0}
    return outcomes


def regime_rows(regime: dict, record: dict, outcomes: dict[str, dict]) -> list[str]:
    """The table rows of one regime: a recommendation row per basis, then one per method."""
    measurements = record["measurements"]
    verdicts = {"answers": judge(measurements), "label-free": judge({**measurements, "labelled": None})}
    helped = {m for m, o in outcomes.items() if o["outcome"] == "helps"}
    options = ", ".join(f"{k} {v}" for k, v in regime["options"].items())
    rows = []
    for basis, verdict in verdicts.items():
        recommended = set(verdict.recommended) & set(METHODS)
        right = "right" if recommended == helped else "wrong"
        rows.append(f"| {regime['name']} ({regime['base']}: {options}) | {basis} | recommended: "
                    f"{', '.join(sorted(recommended)) or 'none'} | helped: "
                    f"{', '.join(sorted(helped)) or 'none'} | **{right}** |")
    for method in METHODS[1:]:
        expected = {b: v.methods[method].expected for b, v in verdicts.items()}
        measured = outcomes[method]
        matches = " / ".join(
            "yes" if MEASURED_AS.get(e) == measured["outcome"] else "no" for e in expected.values()
        )
        rows.append(f"| | {method} | expected {expected['answers']} / {expected['label-free']} | "
                    f"measured {measured['outcome']} ({measured['gain']:+.1f} points, flagged in "
                    f"{measured['flagged']}; ground truth {outcomes['ground_truth']['gain']:+.1f}) | "
                    f"{matches} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draw-seed", type=int, default=20261206)
    parser.add_argument("--regimes", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parallel", type=int, default=2, help="training runs at a time")
    parser.add_argument("--dir", type=Path, default=Path("runs/fresh"))
    parser.add_argument("--output", type=Path, help="markdown file for the table")
    parser.add_argument("--draw-only", action="store_true")
    args = parser.parse_args()
    regimes = draw_regimes(args.draw_seed, args.regimes)
    if args.draw_only:
        print(json.dumps(regimes, indent=2))
        return
    lines = ["| regime | basis / method | verdict | measured | right? (answers / label-free) |",
             "|---|---|---|---|---|"]
    for regime in regimes:
        folder = args.dir / regime["name"]
        model = pretrain(regime, folder)
        record = diagnosis(model, folder)
        jobs = {(m, s): folder / f"seed-{s}" / m for m in METHODS for s in args.seeds}
        pending = [(key, out) for key, out in jobs.items() if not (out / "metrics.jsonl").exists()]
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda job: run(train_command(model, job[0][0], job[0][1], job[1]),
                                          job[1].with_suffix(".log")), pending))
        outcomes = measured_outcomes({key: run_outcome(out) for key, out in jobs.items()}, args.seeds)
        lines += regime_rows(regime, record, outcomes)
        print("\n".join(lines), flush=True)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
