"""One progress display per training run: the step, and the figures that matter as they arrive.

Replaces TRL's raw metrics dict per step (the full record is in ``metrics.jsonl``): the run's name,
the reward, label accuracy where references are known, held-out accuracy (greedy / sampled), and the
collapse monitor's verdict.
"""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import TrainerCallback

from corewarding.core import metric_names
from corewarding.core.terminal import output_console

__all__ = ["LOG_LINES", "RunProgress", "progress_display", "show_progress"]

# The figures shown, in order: metric name → short label.
_SHOWN = {
    metric_names.REWARD: "reward",
    metric_names.LABEL_ACCURACY: "label acc",
    metric_names.HELDOUT_GREEDY: "held-out greedy",
    metric_names.HELDOUT_SAMPLED: "sampled",
}


#: About how many plain progress lines a run prints when its output is not a terminal.
LOG_LINES = 20


def progress_display(console=None) -> Progress:
    """The rich progress display the runs of one command share (on ``console``, by default
    :func:`~corewarding.core.terminal.output_console`: never cut when piped to a log)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console or output_console())


class RunProgress(TrainerCallback):
    """Advances a task of a :func:`progress_display` at every step and shows the latest figures.

    ``collapse`` is a :class:`~corewarding.training.callbacks.CollapseCallback` whose verdict is shown.
    When the output is not a terminal (a ``nohup`` or slurm log) a live display is drawn only once, at
    the end, so the figures are also printed as plain lines: at every held-out evaluation and about
    :data:`LOG_LINES` times over the run.
    """

    def __init__(self, progress: Progress, name: str, collapse=None):
        self.progress, self.name, self.collapse = progress, name, collapse
        self.task = progress.add_task(name, total=None)
        self.latest: dict[str, float] = {}
        self.last_line = ""

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress.update(self.task, total=state.max_steps, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in _SHOWN:
            if logs and key in logs:
                self.latest[key] = logs[key]
        shown = [f"{_SHOWN[k]} {v:.2f}" for k, v in self.latest.items()]
        report = self.collapse.monitor.report if self.collapse is not None else None
        if report is not None and report.collapsed:
            shown.append(f"[red]collapse at step {report.step}[/red]")
        self.progress.update(self.task, description=f"{self.name:<16} " + ", ".join(shown))
        if not self.progress.console.is_terminal and logs and self._log_line_due(state, logs):
            plain = ", ".join(shown).replace("[red]", "").replace("[/red]", "")
            line = f"{self.name} step {state.global_step}/{state.max_steps}: {plain}"
            if line != self.last_line:  # a step's training and evaluation logs may show the same figures
                self.progress.console.print(line, markup=False, highlight=False)
                self.last_line = line

    @staticmethod
    def _log_line_due(state, logs: dict) -> bool:
        every = max(1, state.max_steps // LOG_LINES)
        evaluated = metric_names.HELDOUT_GREEDY in logs or metric_names.HELDOUT_SAMPLED in logs
        return evaluated or state.global_step % every == 0 or state.global_step == state.max_steps

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.update(self.task, completed=state.global_step)


def show_progress(trainer, progress: Progress, name: str) -> RunProgress:
    """Replace TRL's per-step printing of ``trainer`` by a task of ``progress`` named ``name``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from corewarding.training.callbacks import CollapseCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    collapse = next(
        (cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CollapseCallback)), None
    )
    callback = RunProgress(progress, name, collapse)
    trainer.add_callback(callback)
    return callback
