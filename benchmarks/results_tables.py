"""The tables of docs/results.md, from the stored per-run reports under docs/results/ (one script for
every table; tests/test_results_figures.py checks that docs/results.md holds exactly what this prints).

Each stored ``report.md`` has one row per run (written by ``corewarding report``): held-out sampled
accuracy (avg@4 at T = 0.8) at the first and last evaluation, greedy accuracy at the first, best and
last, label accuracy and reward as the mean of the last 5 logged steps, and the collapse monitor's
first flag. A table here gives, per method, the mean ± sample SD (n − 1) over the seeds, n beside it,
and gains and differences *paired by seed* (the same seed's start, data and held-out problems).

    PYTHONPATH=. python benchmarks/results_tables.py            # every table
    PYTHONPATH=. python benchmarks/results_tables.py hard       # one of them
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from statistics import fmean, stdev

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
NAMES = {
    "ground_truth": "ground truth",
    "majority_vote": "majority vote",
    "self_certainty": "self-certainty",
    "entropy": "entropy minimisation",
    "co_rewarding_i": "**Co-rewarding-I**",
    "co_rewarding_ii": "Co-rewarding-II",
    "majority_vote_rephrased": "ablation: majority vote on the rephrased view only",
    "co_rewarding_ii_frozen_teacher": "ablation: Co-rewarding-II, teacher never updated",
}
ORDER = list(NAMES)
COLUMNS = {  # report.md header → key
    "sampled start %": "sampled_start", "sampled final %": "sampled_final", "greedy start %": "greedy_start",
    "greedy best %": "greedy_best", "greedy final %": "greedy_final", "label acc. %": "label",
}


def read_report(path: Path, seed_from_folder: bool = False) -> dict[str, dict[int, dict]]:
    """variant → seed → that run's figures (floats in %, None for '–', and ``collapse``: its first flagged
    step or None), from the per-run rows of a stored report.md. A run is named ``seed-S/variant``,
    ``seed-S`` (a report of one variant: the folder names it) or ``variant`` (a report of one seed: the
    folder is ``seed-S``)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    runs: dict[str, dict[int, dict]] = {}
    for line in lines[1:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
        name = cells["run"]
        if name.startswith("**"):
            continue  # a mean row: recomputed here
        match = re.fullmatch(r"(?:seed-(\d+)/?)?(.*)", name)
        if seed_from_folder:
            seed, variant = int(path.parent.name.split("-")[1]), name
        elif match.group(2):
            seed, variant = int(match.group(1)), match.group(2)
        else:
            seed, variant = int(match.group(1)), path.parent.name
        figures = {key: None if cells[h] == "–" else float(cells[h]) for h, key in COLUMNS.items()}
        flagged = re.match(r"step (\d+)", cells["collapse"])
        figures["collapse"] = int(flagged.group(1)) if flagged else None
        runs.setdefault(variant, {})[seed] = figures
    return runs


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{fmean(values):.1f} ± {stdev(values):.1f}"


def _minus(value: float) -> str:
    return f"{value:.1f}".replace("-", "−")


def paired(a: dict[int, dict], b: dict[int, dict], key_a: str, key_b: str) -> str:
    """mean ± SD of a's ``key_a`` minus b's ``key_b``, seed by seed, with the per-seed differences."""
    seeds = sorted(set(a) & set(b))
    differences = [a[s][key_a] - b[s][key_b] for s in seeds]
    per_seed = ", ".join(_minus(d) for d in differences)
    return f"{mean_sd(differences).replace('-', '−')} ({per_seed}; n = {len(seeds)})"


def collapse_cell(runs: dict[int, dict]) -> str:
    steps = [runs[s]["collapse"] for s in sorted(runs) if runs[s]["collapse"] is not None]
    flagged = f"{len(steps)} of {len(runs)}"
    return f"{flagged} (steps {', '.join(map(str, steps))})" if steps else flagged


def study_table(regime: str) -> str:
    """Per method: seeds, sampled start → final, the gain paired by seed, greedy start → final, label
    accuracy, collapse flags."""
    runs = read_report(RESULTS / regime / "report.md")
    lines = [
        "| method | seeds | sampled avg@4 %, start → final | gain, points (paired by seed) "
        "| greedy %, start → final | label accuracy %, last 5 steps | collapse flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in [v for v in ORDER if v in runs]:
        by_seed = runs[variant]
        column = lambda key: [by_seed[s][key] for s in sorted(by_seed)]  # noqa: E731
        labels = [v for v in column("label") if v is not None]
        gain = mean_sd([f - s for f, s in zip(column("sampled_final"), column("sampled_start"))])
        sampled = f"{mean_sd(column('sampled_start'))} → {mean_sd(column('sampled_final'))}"
        greedy = f"{mean_sd(column('greedy_start'))} → {mean_sd(column('greedy_final'))}"
        label = mean_sd(labels) if labels else "–"
        lines.append(
            f"| {NAMES[variant]} | {len(by_seed)} | {sampled} | {gain.replace('-', '−')} | {greedy} "
            f"| {label} | {collapse_cell(by_seed)} |"
        )
    return "\n".join(lines)


def headline_table() -> str:
    """The comparisons the text leads with, as differences of final sampled accuracy paired by seed; the
    distractor headline's from its 5-seed rerun (``benchmarks/headline_seeds.py``), the rest from the
    3-seed studies."""
    d, h = read_report(RESULTS / "distractor" / "report.md"), read_report(RESULTS / "hard" / "report.md")
    five = read_report(RESULTS / "distractor_headline" / "report.md")
    rows = [
        ("distractor", "Co-rewarding-I − ground truth", five["co_rewarding_i"], five["ground_truth"]),
        ("distractor", "Co-rewarding-I − majority vote", five["co_rewarding_i"], five["majority_vote"]),
        ("distractor", "Co-rewarding-II − majority vote", d["co_rewarding_ii"], d["majority_vote"]),
        ("hard", "Co-rewarding-II − majority vote", h["co_rewarding_ii"], h["majority_vote"]),
        ("hard", "Co-rewarding-II − its frozen-teacher ablation", h["co_rewarding_ii"],
         h["co_rewarding_ii_frozen_teacher"]),
    ]
    lines = [
        "| regime | difference of final sampled avg@4 | points: mean ± SD (per seed; n) |",
        "|---|---|---|",
    ]
    for regime, name, a, b in rows:
        lines.append(f"| {regime} | {name} | {paired(a, b, 'sampled_final', 'sampled_final')} |")
    return "\n".join(lines)


def co_rewarding_i_variants_table() -> str:
    """Co-rewarding-I with a few labels and Co-rewarding-III, against Co-rewarding-I on the same seeds."""
    base = read_report(RESULTS / "distractor" / "report.md")["co_rewarding_i"]
    variants = [("Co-rewarding-I (the study's runs)", base)]
    for fraction in ("0.1", "0.25"):
        runs = read_report(RESULTS / "co_rewarding_i_semi_supervised" / f"labelled-{fraction}" / "report.md")
        variants.append((f"Co-rewarding-I + {float(fraction):.0%} labelled", runs[f"labelled-{fraction}"]))
    iii: dict[int, dict] = {}
    for folder in sorted((RESULTS / "co_rewarding_iii").glob("seed-*")):
        iii.update(read_report(folder / "report.md", seed_from_folder=True)["co_rewarding_iii"])
    variants.append(("**Co-rewarding-III as the authors wrote it**", iii))
    lines = [
        "| method | seeds | sampled avg@4 %, start → final | final − Co-rewarding-I's, paired by seed "
        "| greedy % final | label accuracy %, last 5 steps | collapse flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in variants:
        column = lambda key: [runs[s][key] for s in sorted(runs)]  # noqa: E731
        difference = "–" if runs is base else paired(runs, base, "sampled_final", "sampled_final")
        sampled = f"{mean_sd(column('sampled_start'))} → {mean_sd(column('sampled_final'))}"
        lines.append(
            f"| {name} | {len(runs)} | {sampled} | {difference} | {mean_sd(column('greedy_final'))} "
            f"| {mean_sd(column('label'))} | {collapse_cell(runs)} |"
        )
    return "\n".join(lines)


TABLES = {
    "distractor": lambda: study_table("distractor"),
    "distractor_headline": lambda: study_table("distractor_headline"),
    "shortcut": lambda: study_table("shortcut"),
    "hard": lambda: study_table("hard"),
    "headline": headline_table,
    "co_rewarding_i_variants": co_rewarding_i_variants_table,
}


def main(names: list[str]) -> None:
    for name in names or TABLES:
        marker = f"<!-- generated: python benchmarks/results_tables.py {name} -->"
        print(f"{marker}\n{TABLES[name]()}\n<!-- end -->\n")


if __name__ == "__main__":
    main(sys.argv[1:])
