"""Tables and a figure for a set of training runs: which methods improve, which collapse, and when.

A run is an output folder of ``corewarding train`` (or of the demo): its ``metrics.jsonl`` and its
``config.yaml``. :func:`write_report` writes ``report.md`` (a table per method: held-out sampled
accuracy — the paper's pass@1, avg@k at the held-out temperature — at the start and the end, greedy
accuracy at the start, best and end, final label accuracy and training reward, the collapse step and
its signals) and ``curves.png`` (both held-out accuracies, training reward, label accuracy, rollout
accuracy and mean completion length against step — the small analogue of the paper's Figures 3, 4
and 6). Runs of the same method (several seeds) are drawn as their mean with a band from the lowest to
the highest run, and the table adds a ``mean ± SD, n = …`` row (the sample standard deviation,
n − 1 in the denominator); runs of different lengths are said to be so
in that row.

Label-free runs (no references: no label or rollout accuracy) show, in their place, the signals a run
without labels has (:data:`LABEL_FREE`): the majority ratio, the no-answer rate and, for Co-rewarding-II,
the teacher–policy agreement. A panel or column without data in any run is left out (a run without
held-out evaluations has no held-out accuracy), and the y-axis of a share has tick labels with the
decimals its range needs (0.2%, 0.4%; 56.7%, 56.8%; 20%, 40%). The report goes beside the runs unless
told otherwise (:func:`default_output`).

    corewarding report runs/demo                   # every run folder inside runs/demo; report there
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev

import yaml

from corewarding.core import metric_names
from corewarding.core.collapse import CollapseReport, detect_collapse, read_metrics
from corewarding.core.errors import UserError

__all__ = [
    "RunSummary",
    "columns_for",
    "default_output",
    "draw_curves",
    "load_run",
    "load_runs",
    "markdown_table",
    "panels_for",
    "plot_curves",
    "rich_table",
    "run_folders",
    "summarize",
    "table_rows",
    "write_report",
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
#: The panels that need references, and the label-free signals drawn in their place when no run has them.
LABELLED = (metric_names.LABEL_ACCURACY, metric_names.ROLLOUT_ACCURACY)
LABEL_FREE = (
    (metric_names.MAJORITY_RATIO, "majority ratio (rollouts in the label's answer)", "majority ratio (%)",
     True),
    (metric_names.NO_ANSWER_RATE, "rollouts without an answer", "no-answer rate (%)", True),
    (metric_names.TEACHER_AGREEMENT, "policy majority = teacher's label", "teacher agreement (%)", True),
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
    majority_ratio: float | None = None
    no_answer_rate: float | None = None
    teacher_agreement: float | None = None


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
        majority_ratio=final(metric_names.MAJORITY_RATIO),
        no_answer_rate=final(metric_names.NO_ANSWER_RATE),
        teacher_agreement=final(metric_names.TEACHER_AGREEMENT),
    )


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _mean_std(values: Sequence[float | None], scale: float = 100.0, digits: int = 1) -> str:
    """mean ± sample SD (n − 1: the runs are a sample of seeds, not the population); one value alone."""
    known = [v * scale for v in values if v is not None]
    if not known:
        return "–"
    if len(known) == 1:
        return f"{known[0]:.{digits}f}"
    return f"{fmean(known):.{digits}f} ± {stdev(known):.{digits}f}"


@dataclass(frozen=True)
class Column:
    """A column of numbers: its header in ``report.md`` and in the terminal, and its value in a summary
    (a share, shown in %, or a reward, shown with 3 decimals)."""

    header: str
    short: str
    value: Callable[[RunSummary], float | None]
    share: bool = True

    def cell(self, summary: RunSummary) -> str:
        value = self.value(summary)
        if not self.share:
            return "–" if value is None else f"{value:.3f}"
        return _percent(value)

    def mean_cell(self, summaries: Sequence[RunSummary]) -> str:
        values = [self.value(s) for s in summaries]
        return _mean_std(values) if self.share else _mean_std(values, scale=1.0, digits=3)


#: Every column of numbers, in order; :func:`columns_for` picks those a set of runs has data for.
VALUE_COLUMNS = (
    Column("sampled start %", "sampled", lambda s: s.sampled_start),
    Column("sampled final %", "→", lambda s: s.sampled_final),
    Column("greedy start %", "greedy", lambda s: s.heldout_start),
    Column("greedy best %", "best", lambda s: s.heldout_best),
    Column("greedy final %", "→", lambda s: s.heldout_final),
    Column("label acc. %", "label", lambda s: s.label_accuracy),
    Column("majority ratio %", "maj. ratio", lambda s: s.majority_ratio),
    Column("no answer %", "no answer", lambda s: s.no_answer_rate),
    Column("teacher agreement %", "teacher", lambda s: s.teacher_agreement),
    Column("reward", "reward", lambda s: s.reward, share=False),
)
_LABEL_FREE_HEADERS = ("majority ratio %", "no answer %", "teacher agreement %")


def without_references(summaries: Sequence[RunSummary]) -> list[RunSummary]:
    """The runs trained on questions without references: they vote (a majority ratio is logged) but have
    no label accuracy. Runs of a method without a vote (self-certainty, entropy) are never among them."""
    return [s for s in summaries if s.label_accuracy is None and s.majority_ratio is not None]


def columns_for(summaries: Sequence[RunSummary]) -> list[Column]:
    """The columns of :data:`VALUE_COLUMNS` with a value in some run; the label-free signals only when
    some run has no references (:func:`without_references`): runs that all have references keep the table
    they always had."""
    signals = bool(without_references(summaries))
    return [
        c for c in VALUE_COLUMNS
        if any(c.value(s) is not None for s in summaries)
        and (signals or c.header not in _LABEL_FREE_HEADERS)
    ]


def table_rows(summaries: Sequence[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """The headers (run, method, steps, :func:`columns_for`, collapse) and the cells: one row per run,
    plus a ``mean ± SD, n = …`` row per method with several runs."""
    columns = columns_for(summaries)
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
            rows.append([s.name, method, str(s.steps), *(c.cell(s) for c in columns), collapse])
        if len(runs) > 1:
            collapsed = sum(s.collapse.collapsed for s in runs)
            lengths = sorted({s.steps for s in runs})
            steps = str(lengths[0]) if len(lengths) == 1 else f"{lengths[0]}–{lengths[-1]} (unequal!)"
            name = f"**{variant}** (mean ± SD, n = {len(runs)})"
            cells = [c.mean_cell(runs) for c in columns]
            rows.append([name, method, steps, *cells, f"{collapsed} of {len(runs)} runs"])
    return ["run", "method", "steps", *(c.header for c in columns), "collapse"], rows


def markdown_table(summaries: Sequence[RunSummary]) -> str:
    """:func:`table_rows` as a Markdown table."""
    headers, rows = table_rows(summaries)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


#: What the short headers of the terminal's label-free table mean.
_SIGNAL_MEANINGS = {
    "majority ratio %": "maj. ratio: rollouts in the label's answer %",
    "no answer %": "no answer: rollouts without one %",
    "teacher agreement %": "teacher: policy majority = teacher's label %",
}


def _caption(columns: Sequence[Column]) -> str:
    """What the terminal table's short headers mean, for the columns shown."""
    shown = {c.header for c in columns}
    if shown and shown <= set(_LABEL_FREE_HEADERS):
        return "; ".join([*(m for h, m in _SIGNAL_MEANINGS.items() if h in shown), "mean of the last steps"])
    parts = []
    if shown & {"sampled start %", "greedy start %"}:
        parts.append("held-out accuracy %: sampled (avg@k, the paper's pass@1) at the start → end; "
                     "greedy at the start, best, → end")
    if "label acc. %" in shown:
        parts.append("label: label accuracy %; label and reward: mean of the last steps")
    else:
        parts.append("reward: mean of the last steps")
    return "; ".join(parts)


def rich_table(summaries: Sequence[RunSummary], title: str | None = None):
    """:func:`table_rows` for the terminal: short headers, the run's name standing for its method, and
    the collapse cell cut to its step (``report.md`` has the signals). Label-free signals go in a second
    table below the first, so that each fits in 80 columns; a rich renderable."""
    from rich.console import Group
    from rich.table import Table

    columns = columns_for(summaries)
    headers, rows = table_rows(summaries)
    names = [re.sub(r" \(mean ± SD, n = \d+\)", " (mean)", row[0].replace("**", "")) for row in rows]
    cells = [dict(zip(headers[3:-1], row[3:-1])) for row in rows]

    def table(part: list[Column], caption_title: str | None, collapse: bool) -> Table:
        shown = Table(title=caption_title, caption=_caption(part))
        for header in ("run", *(c.short for c in part), *(["collapse"] if collapse else [])):
            shown.add_column(
                header, justify="left" if header in ("run", "collapse") else "right", no_wrap=header == "run"
            )
        for name, row, cell in zip(names, rows, cells):
            collapsed = [row[-1].split(":")[0]] if collapse else []
            shown.add_row(name, *(cell[c.header] for c in part), *collapsed)
        return shown

    signals = [c for c in columns if c.header in _LABEL_FREE_HEADERS]
    main = table([c for c in columns if c not in signals], title, collapse=True)
    return Group(main, table(signals, "label-free signals", collapse=False)) if signals else main


def _trailing_mean(values: list[float], window: int) -> list[float]:
    return [fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def panels_for(runs: Sequence[Run]) -> list[tuple[str, str, str, bool]]:
    """The panels of :data:`PANELS` with data in some run; when some run has no references (it votes but
    has no label accuracy), the label-free signals of :data:`LABEL_FREE` with data come before the label
    accuracy panel (in its place when no run has one)."""
    def has_data(key: str, among: Sequence[Run] = runs) -> bool:
        return any(run.series(key)[0] for run in among)

    unreferenced = any(
        has_data(metric_names.MAJORITY_RATIO, [r]) and not has_data(metric_names.LABEL_ACCURACY, [r])
        for r in runs
    )
    panels = []
    for panel in PANELS:
        if panel[0] == LABELLED[0] and unreferenced:
            panels += LABEL_FREE
        panels.append(panel)
    return [panel for panel in panels if has_data(panel[0])]


def _percent_ticks():
    """A tick formatter for shares drawn in %: the decimals the ticks' spacing needs, so that no two
    ticks read alike (0.2%, 0.4%; 56.7%, 56.8%; 20%, 40%)."""
    from matplotlib.ticker import ScalarFormatter

    class PercentTicks(ScalarFormatter):
        def __call__(self, x, pos=None):
            return super().__call__(x, pos) + "%"

    formatter = PercentTicks(useOffset=False)
    formatter.set_scientific(False)
    return formatter


def draw_curves(runs: Sequence[Run]):
    """The figure of :func:`panels_for` against step (three panels a row), one colour per method, a band
    across its runs; a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_method: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_method[run.variant].append(run)
    panels = panels_for(runs)
    rows = max(1, math.ceil(len(panels) / 3))
    fig, axes = plt.subplots(rows, 3, figsize=(16, 4.25 * rows), constrained_layout=True, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.remove()
    colours = plt.get_cmap("tab10")
    for (key, title, ylabel, share), ax in zip(panels, axes.flat):
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
            # A share lies in [0, 100] %; a span of at least 1 point keeps a flat 0% line from ticks
            # of 0.01%.
            low_y, high_y = max(low_y, 0.0), min(high_y, 100.0)
            ax.set_ylim(low_y, max(high_y, low_y + 1.0))
            ax.yaxis.set_major_formatter(_percent_ticks())
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    # The legend goes on the first panel that drew something.
    drawn = next((ax for ax in fig.axes if ax.get_legend_handles_labels()[0]), None)
    if drawn is not None:
        drawn.legend(fontsize=8)
    fig.suptitle("Label-free RL on the same model and data (dotted lines: detected collapse)")
    return fig


def plot_curves(runs: Sequence[Run], path: str | Path) -> Path:
    """:func:`draw_curves` saved as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = draw_curves(runs)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_caption(summaries: Sequence[RunSummary]) -> str:
    """What ``report.md``'s table shows, for the columns it has: held-out accuracy only when a run was
    evaluated, label accuracy only when a run has it, and the label-free signals when some run has no
    references (naming those runs when only some lack them)."""
    shown = {c.header for c in columns_for(summaries)}
    parts = []
    if shown & {"sampled start %", "greedy start %"}:
        parts.append(
            "Held-out accuracy on held-out problems: sampled, avg@k at the held-out temperature (the paper's "
            "pass@1), at the first and last evaluation; greedy pass@1 at the first, best and last evaluation."
        )
    else:
        parts.append("No run was evaluated on held-out problems (a run without references has none).")
    averaged = [name for header, name in (("label acc. %", "Label accuracy"), ("reward", "reward"))
                if header in shown]
    if averaged:
        parts.append(f"{' and '.join(averaged).capitalize()}: mean of the last {FINAL_WINDOW} logged steps.")
    parts.append(
        "Collapse: the first step a signal of `corewarding.core.collapse` fired. Mean rows: mean ± sample "
        "standard deviation (n − 1) over the n runs."
    )
    text = " ".join(parts)
    unreferenced = without_references(summaries)
    if unreferenced:
        which = (
            "The runs have no references: in place of label accuracy"
            if len(unreferenced) == len([s for s in summaries if s.majority_ratio is not None])
            else f"{', '.join(s.name for s in unreferenced)} had no references: for them, in place of label "
            "accuracy"
        )
        text += (
            f"\n\n{which}, the label-free signals, each the mean of the last {FINAL_WINDOW} logged steps: "
            "majority ratio (the share of a group's rollouts in the answer its label came from; near 100% on "
            "every question is the collapse of majority voting), no-answer rate (rollouts without an "
            "extractable answer) and teacher agreement (Co-rewarding-II: the share of questions whose policy "
            "majority is the teacher's label)."
        )
    return text


def default_output(folders: Sequence[str | Path]) -> Path:
    """Where the report of ``folders`` goes unless told: beside the runs, in the one run's folder, or in
    the deepest folder that holds all the runs (``report runs/a runs/b`` → ``runs``)."""
    runs = [Path(f).resolve() for f in run_folders(folders)]
    if not runs:
        raise UserError("no run folders given")
    return runs[0] if len(runs) == 1 else Path(os.path.commonpath(runs))


def write_report(
    folders: Sequence[str | Path], out_dir: str | Path | None = None, title: str = "Training runs"
) -> tuple[Path, Path]:
    """``report.md`` and ``curves.png`` for the runs in ``folders``, written to ``out_dir`` (default:
    :func:`default_output`)."""
    runs = load_runs(folders)
    if not runs:
        raise UserError("no run folders given")
    out_dir = Path(out_dir) if out_dir is not None else default_output(folders)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = plot_curves(runs, out_dir / "curves.png")
    summaries = [summarize(r) for r in runs]
    caption = report_caption(summaries)
    text = f"# {title}\n\n{markdown_table(summaries)}\n\n{caption}\n\n![curves]({figure.name})\n"
    report = out_dir / "report.md"
    report.write_text(text)
    return report, figure
