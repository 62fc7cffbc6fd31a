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

The jobs run as soon as what they need exists (a regime's runs start while its diagnosis runs on the
other core). Each finished job stores its small outputs at once in ``docs/results/diagnose_fresh/<regime>``
(``regime.json``, ``diagnosis.json``, every run's ``metrics.jsonl.gz``), and a job whose output is stored is
skipped, so an interrupted validation goes on where it stopped; ``table`` rebuilds the table from the
stored files alone (docs/diagnose.md quotes it, and a test checks the two agree)::

    PYTHONPATH=. nohup nice -n 10 python benchmarks/validate_diagnose_fresh.py run --draw-seed 20261206 \\
        --regimes 4 --dir runs/fresh > fresh.log &
    PYTHONPATH=. python benchmarks/validate_diagnose_fresh.py table

``--draw-only`` prints the drawn regimes and exits (seconds).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from statistics import fmean

from stored_runs import Jobs, run_corewarding, run_jobs, store_file, train_job

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
STORED = Path(__file__).resolve().parent.parent / "docs" / "results" / "diagnose_fresh"
#: The protocol's seeds: a regime is scored once every method has run with each.
SEEDS = (0, 1)
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


def pretrain_command(regime: dict, model: Path) -> list[str]:
    options = [f"--{name.replace('_', '-')}={value}" for name, value in regime["options"].items()]
    return ["pretrain", "--regime", regime["base"], "--seed", "0", *options, "-o", str(model),
            "--threads", "1"]


def diagnose_command(model: Path, path: Path) -> list[str]:
    return ["diagnose", str(model), "synthetic", "--threads", "1", "--json", str(path)]


def train_settings(model: Path, method: str, seed: int) -> list[str]:
    return ["--config", f"tiny/{method}", "--model_name_or_path", str(model), "--seed", str(seed),
            "--max_steps", "100", "--threads", "1"]


def regime_jobs(regime: dict, folder: Path, stored: Path, seeds: list[int]) -> Jobs:
    """The jobs of one regime, ``name → (the jobs it waits for, what it does)``; a finished one is left out.

    Training needs the pretrained model only, so a regime's runs start while its diagnosis is still
    running on the other core. Each finished job stores its small outputs in ``stored`` at once."""
    name = regime["name"]
    model = Path(f"tiny-{name}") if regime.get("shipped") else folder / "model"
    target = stored / name
    jobs: Jobs = {}
    if not regime.get("shipped") and not (model / "pretrain.json").exists():
        jobs[f"{name}/pretrain"] = (
            [], lambda: run_corewarding(pretrain_command(regime, model), folder / "pretrain.log"))

    def diagnose() -> None:
        run_corewarding(diagnose_command(model, folder / "diagnosis.json"), folder / "diagnose.log")
        store_file(folder / "diagnosis.json", target / "diagnosis.json")

    if not (target / "diagnosis.json").exists():
        jobs[f"{name}/diagnose"] = ([f"{name}/pretrain"], diagnose)
    for seed in seeds:
        for method in METHODS:
            if not (target / f"seed-{seed}" / method / "metrics.jsonl.gz").exists():
                jobs[f"{name}/{seed}/{method}"] = ([f"{name}/pretrain"], train_job(
                    train_settings(model, method, seed), folder / f"seed-{seed}" / method,
                    target / f"seed-{seed}" / method))
    target.mkdir(parents=True, exist_ok=True)
    (target / "regime.json").write_text(json.dumps(regime, indent=2) + "\n")
    return jobs


def run_outcome(metrics: Path) -> dict:
    """A finished run's held-out sampled accuracy at its first and last evaluation, and its collapse flag."""
    records = read_metrics(metrics)
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
        outcomes[method] = {"outcome": outcome, "gain": gain(method), "flagged": flagged, "seeds": len(seeds)}
    outcomes["ground_truth"] = {"outcome": "-", "gain": truth, "flagged": 0, "seeds": len(seeds)}
    return outcomes


def regime_rows(regime: dict, record: dict, outcomes: dict[str, dict]) -> list[str]:
    """The table rows of one regime: its recommendation with and without answers against the methods that
    helped, then per method the expected outcome (with / without answers) against the measured one."""
    measurements = record["measurements"]
    verdicts = [judge(measurements), judge({**measurements, "labelled": None})]
    helped = {m for m, o in outcomes.items() if o["outcome"] == "helps"}
    options = regime["options"]
    where = "shipped; in-sample" if regime.get("shipped") else f"drawn on {regime['base']}"
    described = (f"**{regime['name']}** ({where}: slips {options['slip_rate']:.0%} up to "
                 f"{options['slip_max']}, distractors {options['distractor_rate']:.0%} used "
                 f"{options['distractor_use_rate']:.0%}, "
                 f"shortcuts {options['shortcut_rate']:.0%}; ground truth "
                 f"{outcomes['ground_truth']['gain']:+.1f} points)")
    recommended = [sorted(set(v.recommended) & set(METHODS)) for v in verdicts]
    rows = [
        f"| {described} | recommended | {' | '.join(', '.join(r) or 'none' for r in recommended)} | "
        f"helped: {', '.join(sorted(helped)) or 'none'} | "
        f"{' / '.join('**right**' if set(r) == helped else '**wrong**' for r in recommended)} |"
    ]
    for method in METHODS[1:]:
        expected = [v.methods[method].expected for v in verdicts]
        measured = outcomes[method]
        matches = " / ".join("yes" if MEASURED_AS.get(e) == measured["outcome"] else "no" for e in expected)
        rows.append(
            f"| | {method} | {' | '.join(expected)} | {measured['outcome']} ({measured['gain']:+.1f} points; "
            f"flagged in {measured['flagged']} of {measured['seeds']}) | {matches} |"
        )
    return rows


HEADER = ["| regime | method | with answers | without answers | measured (mean gain in held-out avg@4) "
          "| right? (with / without) |", "|---|---|---|---|---|---|"]


def table(stored: Path = STORED) -> str:
    """The per-regime validation table from the stored files: every regime whose diagnosis and runs
    are all stored, in the order drawn; a regime still running is one row saying so."""
    lines = list(HEADER)
    def drawn_order(path: Path) -> tuple[int, int]:  # the drawn regimes in order, a shipped one last
        number = path.parent.name.rsplit("-", 1)[-1]
        return (0, int(number)) if number.isdigit() else (1, 0)

    for folder in sorted(stored.glob("*/regime.json"), key=drawn_order):
        regime, folder = json.loads(folder.read_text()), folder.parent
        metrics = {(m, int(p.parent.parent.name.split("-")[1])): p
                   for m in METHODS for p in folder.glob(f"seed-*/{m}/metrics.jsonl.gz")}
        seeds = sorted({s for _, s in metrics} | set(SEEDS))
        complete = all((m, s) in metrics for m in METHODS for s in seeds)
        if not (folder / "diagnosis.json").exists() or not complete:
            lines.append(f"| **{regime['name']}** | | not finished: {len(metrics)} runs stored | | | |")
            continue
        record = json.loads((folder / "diagnosis.json").read_text())
        outcomes = measured_outcomes({key: run_outcome(path) for key, path in metrics.items()}, seeds)
        lines += regime_rows(regime, record, outcomes)
    return "\n".join(lines)


TABLES = {"fresh": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("run", "table"), default="run",
                        help="run: draw, pretrain, diagnose, train and store (default); table: print the "
                             "table from the stored files")
    parser.add_argument("--draw-seed", type=int, default=20261206)
    parser.add_argument("--regimes", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--parallel", type=int, default=2, help="jobs at a time (one thread each)")
    parser.add_argument("--dir", type=Path, default=Path("runs/fresh"), help="the runs (models included)")
    parser.add_argument("--shipped", nargs="*", default=[], choices=sorted(SHIPPED),
                        help="shipped regimes to validate beside the drawn ones (in-sample: their "
                        "figures set the thresholds)")
    parser.add_argument("--draw-only", action="store_true")
    args = parser.parse_args()
    if args.command == "table":
        print(table())
        return
    regimes = draw_regimes(args.draw_seed, args.regimes) + [
        {"name": name, "base": name, "options": SHIPPED[name], "shipped": True} for name in args.shipped
    ]
    if args.draw_only:
        print(json.dumps(regimes, indent=2))
        return
    jobs = {}
    for regime in regimes:
        jobs.update(regime_jobs(regime, args.dir / regime["name"], STORED, args.seeds))
    run_jobs(jobs, args.parallel, after=lambda: (STORED / "table.md").write_text(table() + "\n"))
    print(table())


if __name__ == "__main__":
    main()
