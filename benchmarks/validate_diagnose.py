"""Validate ``corewarding diagnose`` against the measured study: for every regime, method and seed, is the
diagnosis of the model before training what 180 steps of RL then did?

A regime is ``NAME=MODEL:REPORT`` — the tiny model's name and the ``report.md`` that ``corewarding
report`` wrote for the study's runs on it (one row per ``seed-N/method``). For each seed the model is
diagnosed on the synthetic test split with that seed (as ``corewarding diagnose MODEL synthetic --seed
N``); the verdict is judged twice from the same measurements, with the answers and without them
(label-free basis). A run's measured outcome is:

* **helps**: its held-out sampled-accuracy gain is at least half of ground truth's gain on the same
  regime and seed (the project's target, docs/results.md), and the collapse monitor did not flag it;
* **collapses**: the monitor flagged it;
* **no real gain** otherwise.

A diagnosis is right for a run when it recommends the method exactly when the run helped; its expected
outcome matches the run's when helps, sharpens only and collapses meet helps, no real gain and collapses
(unknown never matches). The ablations
are judged by their method's verdict (``majority_vote_rephrased`` by majority vote's,
``co_rewarding_ii_frozen_teacher`` by Co-rewarding-II's); ground truth sets the bar and is not judged.
Also checked per seed: that the ranking puts each pair of methods in the order of their measured final
accuracy, where they ended more than 5 points apart. Adding a regime is one more argument::

    python benchmarks/validate_diagnose.py \\
        distractor=tiny:docs/results/distractor/report.md \\
        shortcut=tiny-shortcut:docs/results/shortcut/report.md \\
        [hard=tiny-hard:docs/results/hard/report.md] [--seeds 0 1 2] [--cache runs/validate-diagnose]

``--cache`` keeps each diagnosis as JSON and reuses it (the rules can then be re-checked in seconds).
"""

from __future__ import annotations

import argparse
import json
import re
from itertools import combinations
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corewarding.cli.app import quiet_libraries
from corewarding.diagnosis.verdict import COLLAPSES, HELPS, NO_SIGNAL, SHARPENS, judge

#: Runs judged by another method's verdict: the study's ablations.
JUDGED_AS = {"majority_vote_rephrased": "majority_vote", "co_rewarding_ii_frozen_teacher": "co_rewarding_ii"}
#: The measured outcome each expected outcome names.
MEASURED_AS = {HELPS: "helps", SHARPENS: "no real gain", NO_SIGNAL: "no real gain", COLLAPSES: "collapses"}
#: Final accuracies closer than this (points) are not an order the ranking must get right.
RANKING_MARGIN = 5.0


def study_outcomes(report: Path) -> dict[tuple[str, int], dict]:
    """``(method, seed) → {"start", "final", "collapsed"}`` from the per-run rows of a ``report.md``."""
    lines = [line for line in report.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    column = {name: header.index(name) for name in ("run", "sampled start %", "sampled final %", "collapse")}
    outcomes = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        match = re.fullmatch(r"seed-(\d+)/(\w+)", cells[column["run"]])
        if match is None:
            continue
        outcomes[(match[2], int(match[1]))] = {
            "start": float(cells[column["sampled start %"]]),
            "final": float(cells[column["sampled final %"]]),
            "collapsed": cells[column["collapse"]] != "no",
        }
    if not outcomes:
        raise ValueError(f"{report}: no seed-N/method rows")
    return outcomes


def measured_outcome(outcomes: dict, method: str, seed: int) -> str:
    run, truth = outcomes[(method, seed)], outcomes[("ground_truth", seed)]
    if run["collapsed"]:
        return "collapses"
    helped = run["final"] - run["start"] >= 0.5 * (truth["final"] - truth["start"])
    return "helps" if helped else "no real gain"


def diagnosis(model: str, seed: int, args, cache: Path | None) -> dict:
    path = cache / f"{model}-seed{seed}.json" if cache else None
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    from corewarding.diagnosis.diagnose import diagnose
    from corewarding.inference.generation import TransformersBackend
    from corewarding.tiny.regimes import synthetic_problems

    problems = synthetic_problems(model, args.questions, "test", seed=seed)
    record = diagnose(
        model, "synthetic", problems, TransformersBackend.load(model, seed=seed), k=args.k,
        max_new_tokens=48, probe_steps=args.probe_steps, seed=seed, progress=True,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def ranking_errors(ranking: list[str], outcomes: dict, seed: int) -> list[str]:
    """Pairs of judged methods the ranking orders against their measured final accuracy."""
    judged = [m for m in ranking if (m, seed) in outcomes]
    errors = []
    for better, worse in combinations(judged, 2):  # ranking order: better first
        ahead = outcomes[(worse, seed)]["final"] - outcomes[(better, seed)]["final"]
        if ahead > RANKING_MARGIN:
            errors.append(f"{worse} ranked below {better} but ended {ahead:.1f} points above it")
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regimes", nargs="+", help="NAME=MODEL:REPORT, e.g. distractor=tiny:docs/results/"
                        "distractor/report.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--probe-steps", type=int, default=30)
    parser.add_argument("--cache", type=Path, default=None, help="Folder keeping each diagnosis (JSON).")
    args = parser.parse_args()
    quiet_libraries()

    table = Table(title="diagnose vs the study (per regime, seed and method)")
    for header in ("regime", "seed", "method", "verdict (answers)", "verdict (label-free)", "measured",
                   "gain / GT gain", "recommendation (answers / label-free)", "outcome"):
        table.add_column(header)
    right = {"answers": 0, "label-free": 0}
    outcome_right = {"answers": 0, "label-free": 0}
    wrong: list[str] = []
    judged = 0
    for spec in args.regimes:
        name, _, rest = spec.partition("=")
        model, _, report = rest.partition(":")
        if not (name and model and report):
            parser.error(f"regime {spec!r}: expected NAME=MODEL:REPORT")
        outcomes = study_outcomes(Path(report))
        for seed in args.seeds:
            record = diagnosis(model, seed, args, args.cache)
            measured = record["measurements"]
            verdicts = {
                "answers": judge(measured).methods,
                "label-free": judge({**measured, "labelled": None}).methods,
            }
            for method in sorted({m for m, s in outcomes if s == seed and m != "ground_truth"}):
                outcome = measured_outcome(outcomes, method, seed)
                run, truth = outcomes[(method, seed)], outcomes[("ground_truth", seed)]
                expected = {basis: v[JUDGED_AS.get(method, method)].expected for basis, v in verdicts.items()}
                marks, outcome_marks = {}, {}
                for basis, verdict in expected.items():
                    ok = (verdict == HELPS) == (outcome == "helps")
                    right[basis] += ok
                    marks[basis] = "right" if ok else "[red]WRONG[/red]"
                    if not ok:
                        wrong.append(f"{name} seed {seed} {method} ({basis}): recommended "
                                     f"{'' if verdict == HELPS else 'not '}but measured {outcome}")
                    matched = MEASURED_AS.get(verdict) == outcome
                    outcome_right[basis] += matched
                    if verdict in MEASURED_AS and not matched:
                        wrong.append(f"{name} seed {seed} {method} ({basis}): expected {verdict}, measured "
                                     f"{outcome}")
                    outcome_marks[basis] = "=" if matched else "≠"
                judged += 1
                table.add_row(
                    name, str(seed), method, expected["answers"], expected["label-free"], outcome,
                    f"{run['final'] - run['start']:+.1f} / {truth['final'] - truth['start']:+.1f}",
                    f"{marks['answers']} / {marks['label-free']}",
                    f"{outcome_marks['answers']} / {outcome_marks['label-free']}",
                )
            wrong += [f"{name} seed {seed}: {e}" for e in ranking_errors(record["ranking"], outcomes, seed)]
    console = Console()
    console.print(table)
    for basis, count in right.items():
        console.print(f"{basis} basis: recommendation right on {count} of {judged} runs, expected outcome "
                      f"= measured on {outcome_right[basis]}")
    console.print("where the diagnosis is wrong:" if wrong else "the diagnosis is right on every run")
    for line in wrong:
        console.print(f"  {line}")


if __name__ == "__main__":
    main()
