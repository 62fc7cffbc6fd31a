"""Tables and a figure for a set of training runs: which methods improve, which collapse, and when.

A run is an output folder of ``corewarding train`` (or of the demo): its ``metrics.jsonl`` and its
``config.yaml``. :func:`write_report` writes ``report.md`` (a table per method: held-out sampled
accuracy — the paper's pass@1, avg@k at the held-out temperature — at the start and the end, greedy
accuracy at the start, best and end, final label accuracy and training reward, the collapse step and
its signals) and ``curves.png`` (both held-out accuracies, training reward, label accuracy, rollout
accuracy and mean completion length against step — the small analogue of the paper's Figures 3, 4
and 6). Runs of the same method (several seeds) are drawn as their mean with a band from the lowest to
the highest run, and the table adds a ``mean ± std`` row; runs of different lengths are said to be so
in that row.

    corewarding report runs/demo -o runs/demo      # every run folder inside runs/demo
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, pstdev

import yaml

from corewarding.core import metric_names
from corewarding.core.collapse import CollapseReport, detect_collapse, read_metrics
from corewarding.core.errors import UserError

__all__ = [
    "RunSummary", "run_folders", "load_run", "load_runs", "summarize", "table_rows", "markdown_table",
    "rich_table", "plot_curves", "write_report",
]

HELDOUT = metric_names.HELDOUT_GREEDY
SAMPLED = metric_names.HELDOUT_SAMPLED
#: Training metrics averaged over the last logged steps for the "final" columns.
FINAL_WINDOW = 5
#: Steps of the trailing mean that smooths the training curves of the figure.
SMOOTHING = 5
#: The figure's panels: metric, title, y-axis label, whether it is a share (drawn in %).
PANELS = (
    (SAMPLED, "held-out accuracy, sampled (the paper's pass@1)", "avg@k (%)", True),
    (HELDOUT, "held-out accuracy, greedy", "greedy pass@1 (%)", True),
    (metric_names.REWARD, "training reward", "reward", False),
    (metric_names.LABEL_ACCURACY, "label accuracy (pseudo-label = reference)", "label accuracy (%)", True),
    (metric_names.ROLLOUT_ACCURACY, "training rollouts that are right", "rollout accuracy (%)", True),
    (metric_names.MEAN_LENGTH, "completion length", "mean tokens", False),
)
#: Metrics logged at evaluations only (drawn as points, not smoothed).
_EVALUATED = (SAMPLED, HELDOUT)


@dataclass
class Run:
    """A run folder's name, method and logged records. ``variant`` groups runs: the folder's name without
    a trailing seed (``cr2-seed0`` and ``cr2-seed1`` are ``cr2``), so the same recipe over several seeds
    (``seed-0/majority_vote``, ``seed-1/majority_vote``) is one group, and two recipes of one method
    (``majority_vote``, ``majority_vote_rephrased``) are two."""

    name: str
    method: str
    records: list[dict]
    variant: str = ""

    def __post_init__(self):
        self.variant = self.variant or re.sub(r"[-_.]?seed[-_]?\d+$", "", self.name) or self.name

    def series(self, key: str) -> tuple[list[int], list[float]]:
        points = [(r["step"], r[key]) for r in self.records if r.get(key) is not None]
        return [s for s, _ in points], [v for _, v in points]


@dataclass
class RunSummary:
    """The numbers of one run that the report tabulates (None where the run did not log them)."""

    name: str
    method: str
    variant: str
    steps: int
    heldout_start: float | None
    heldout_best: float | None
    heldout_final: float | None
    sampled_start: float | None
    sampled_final: float | None
    label_accuracy: float | None
    reward: float | None
    collapse: CollapseReport


def run_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders among ``paths``: a run folder itself, or every run folder directly inside a folder."""
    folders = []
    for path in map(Path, paths):
        inside = sorted(p.parent for p in path.glob("*/metrics.jsonl")) if path.is_dir() else []
        folders += inside if inside and not (path / "metrics.jsonl").exists() else [path]
    return folders


def load_run(folder: str | Path) -> Run:
    """A run from its folder; the method comes from ``config.yaml`` (else the folder's name)."""
    folder = Path(folder)
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{folder} is not a run folder: it has no metrics.jsonl")
    config = folder / "config.yaml"
    method = folder.name
    if config.is_file():
        method = (yaml.safe_load(config.read_text()) or {}).get("method", method)
    return Run(folder.name, method, read_metrics(metrics))


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """The runs of :func:`run_folders` ``(paths)``; runs whose folders share a name (the same method in
    several seed folders) are named ``<parent>/<folder>`` so the table tells them apart."""
    folders = run_folders(paths)
    runs = [load_run(f) for f in folders]
    names = [r.name for r in runs]
    for run, folder in zip(runs, folders):
        if names.count(run.name) > 1:
            run.name = f"{folder.resolve().parent.name}/{folder.name}"
    return runs


def summarize(run: Run) -> RunSummary:
    _, heldout = run.series(HELDOUT)
    _, sampled = run.series(SAMPLED)
    steps = max((r["step"] for r in run.records), default=0)

    def final(key: str) -> float | None:
        values = run.series(key)[1][-FINAL_WINDOW:]
        return fmean(values) if values else None

    return RunSummary(
        name=run.name,
        method=run.method,
        variant=run.variant,
        steps=steps,
        heldout_start=heldout[0] if heldout else None,
        heldout_best=max(heldout) if heldout else None,
        heldout_final=heldout[-1] if heldout else None,
        sampled_start=sampled[0] if sampled else None,
        sampled_final=sampled[-1] if sampled else None,
        label_accuracy=final(metric_names.LABEL_ACCURACY),
        reward=final(metric_names.REWARD),
        collapse=detect_collapse(run.records),
    )


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _mean_std(values: Sequence[float | None], scale: float = 100.0, digits: int = 1) -> str:
    known = [v * scale for v in values if v is not None]
    if not known:
        return "–"
    return f"{fmean(known):.{digits}f} ± {pstdev(known):.{digits}f}"


COLUMNS = (
    "run", "method", "steps", "sampled start %", "sampled final %", "greedy start %", "greedy best %",
    "greedy final %", "label acc. %", "reward", "collapse",
)


def table_rows(summaries: Sequence[RunSummary]) -> list[list[str]]:
    """The cells of :data:`COLUMNS`: one row per run, plus a ``mean ± std`` row per method with several
    runs."""
    rows = []
    by_method: dict[str, list[RunSummary]] = defaultdict(list)
    for s in summaries:
        by_method[s.variant].append(s)
    for variant, runs in by_method.items():
        method = runs[0].method
        for s in runs:
            collapse = (
                f"step {s.collapse.step}: {', '.join(s.collapse.reasons)}" if s.collapse.collapsed else "no"
            )
            reward = "–" if s.reward is None else f"{s.reward:.3f}"
            rows.append([s.name, method, str(s.steps), _percent(s.sampled_start), _percent(s.sampled_final),
                         _percent(s.heldout_start), _percent(s.heldout_best), _percent(s.heldout_final),
                         _percent(s.label_accuracy), reward, collapse])
        if len(runs) > 1:
            collapsed = sum(s.collapse.collapsed for s in runs)
            lengths = sorted({s.steps for s in runs})
            steps = str(lengths[0]) if len(lengths) == 1 else f"{lengths[0]}–{lengths[-1]} (unequal!)"
            rows.append([f"**{variant}** (mean ± std)", method, steps,
                         _mean_std([s.sampled_start for s in runs]),
                         _mean_std([s.sampled_final for s in runs]),
                         _mean_std([s.heldout_start for s in runs]),
                         _mean_std([s.heldout_best for s in runs]),
                         _mean_std([s.heldout_final for s in runs]),
                         _mean_std([s.label_accuracy for s in runs]),
                         _mean_std([s.reward for s in runs], scale=1.0, digits=3),
                         f"{collapsed} of {len(runs)} runs"])
    return rows


def markdown_table(summaries: Sequence[RunSummary]) -> str:
    """:func:`table_rows` as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table_rows(summaries)])


#: The terminal table's headers for :data:`COLUMNS` without method and steps, short enough for 80 columns.
SHORT_COLUMNS = ("run", "sampled", "→", "greedy", "best", "→", "label", "reward", "collapse")


def rich_table(summaries: Sequence[RunSummary], title: str | None = None):
    """:func:`table_rows` as a rich table for the terminal: short headers, the run's name standing for
    its method, and the collapse cell cut to its step (``report.md`` has the signals)."""
    from rich.table import Table

    table = Table(
        title=title,
        caption="held-out accuracy %: sampled (avg@k, the paper's pass@1) at the start → end; greedy at the "
        "start, best, → end; label: label accuracy %; label and reward: mean of the last steps",
    )
    for column in SHORT_COLUMNS:
        table.add_column(
            column, justify="left" if column in ("run", "collapse") else "right", no_wrap=column == "run"
        )
    for row in table_rows(summaries):
        name = row[0].replace("**", "").replace(" (mean ± std)", " (mean)")
        table.add_row(name, *row[3:-1], row[-1].split(":")[0])
    return table


def _trailing_mean(values: list[float], window: int) -> list[float]:
    return [fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def plot_curves(runs: Sequence[Run], path: str | Path) -> Path:
    """Six panels (see :data:`PANELS`) against step, one colour per method, a band across its runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    by_method: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_method[run.variant].append(run)
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5), constrained_layout=True)
    colours = plt.get_cmap("tab10")
    for (key, title, ylabel, share), ax in zip(PANELS, axes.flat):
        for index, (method, group) in enumerate(by_method.items()):
            curves = [dict(zip(*run.series(key))) for run in group]
            steps = sorted(set().union(*curves))
            if not steps:
                continue
            values = [[c[s] for c in curves if s in c] for s in steps]
            mean, low, high = ([f(v) for v in values] for f in (fmean, min, max))
            if key not in _EVALUATED:  # per-step training metrics are noisy: a trailing mean shows the trend
                mean, low, high = (_trailing_mean(series, SMOOTHING) for series in (mean, low, high))
            if share:
                mean, low, high = ([100 * v for v in series] for series in (mean, low, high))
            colour = colours(index % 10)
            ax.plot(steps, mean, label=method, color=colour, marker="o" if key in _EVALUATED else None,
                    markersize=3)
            if len(group) > 1:
                ax.fill_between(steps, low, high, color=colour, alpha=0.15)
            for run in group:
                report = detect_collapse(run.records)
                if report.collapsed:
                    ax.axvline(report.step, color=colour, linestyle=":", linewidth=1)
        ax.set_title(title if key in _EVALUATED else f"{title}, mean of {SMOOTHING} steps")
        low_y, high_y = ax.get_ylim()
        if key == "reward" and max(abs(low_y), abs(high_y)) > 4:
            # Confidence rewards (self-certainty ~ 13) would flatten the 0/1 rewards to a line: keep
            # [-1, 1] linear and compress what lies beyond it.
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_title(f"{title}, mean of {SMOOTHING} steps\n(linear in [-1, 1], log beyond)")
        if share:
            ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    # The legend goes on the first panel that drew something (a run without held-out evaluations draws
    # nothing on the accuracy panels).
    drawn = next((ax for ax in axes.flat if ax.get_legend_handles_labels()[0]), None)
    if drawn is not None:
        drawn.legend(fontsize=8)
    fig.suptitle("Label-free RL on the same model and data (dotted lines: detected collapse)")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    folders: Sequence[str | Path], out_dir: str | Path, title: str = "Training runs"
) -> tuple[Path, Path]:
    """``report.md`` and ``curves.png`` for the runs in ``folders``, written to ``out_dir``."""
    runs = load_runs(folders)
    if not runs:
        raise UserError("no run folders given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = plot_curves(runs, out_dir / "curves.png")
    table = markdown_table([summarize(r) for r in runs])
    text = (
        f"# {title}\n\n{table}\n\n"
        "Held-out accuracy on held-out problems: sampled, avg@k at the held-out temperature (the paper's "
        "pass@1), at the first and last evaluation; greedy pass@1 at the first, best and last evaluation. "
        "Label accuracy and reward: mean of the last "
        f"{FINAL_WINDOW} logged steps. "
        "Collapse: the first step a signal of `corewarding.core.collapse` fired.\n\n"
        f"![curves]({figure.name})\n"
    )
    report = out_dir / "report.md"
    report.write_text(text)
    return report, figure
