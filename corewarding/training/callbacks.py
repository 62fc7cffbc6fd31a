"""The trainer's callbacks: the metrics file, the collapse monitor, a checkpoint at the last step, and a
stop at a step's end on a signal."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback
from transformers.utils import logging

from corewarding.cooper.plugin import SAMPLES_FILE
from corewarding.core.atomic_files import write_atomically
from corewarding.core.collapse import CollapseMonitor, read_metrics
from corewarding.core.jsonl import read_jsonl
from corewarding.core.stop_signals import requested
from corewarding.core.task_fit import FORMAT_REWARD, task_fit_warning

__all__ = [
    "MetricsFileCallback", "CollapseCallback", "FinalCheckpointCallback", "TaskFitCallback",
    "StopOnSignalCallback", "METRICS_FILE", "COLLAPSE_FILE",
]

logger = logging.get_logger(__name__)

METRICS_FILE = "metrics.jsonl"
COLLAPSE_FILE = "collapse.json"


class MetricsFileCallback(TrainerCallback):
    """Appends every log record, with its step, as one JSON line to ``<output_dir>/metrics.jsonl``.

    A resumed run first cuts that file and ``samples.jsonl`` back to the checkpoint's step (each replaced
    atomically), so every step is there once; a record it logs again at that step (the held-out
    evaluation of ``eval_on_start``: the same metrics of the same weights) is not written twice.
    """

    def __init__(self):
        self._logged_at_resume: set[tuple[int, tuple[str, ...]]] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        self._logged_at_resume = set()
        if not (state.is_world_process_zero and state.global_step > 0):
            return
        metrics, samples = Path(args.output_dir) / METRICS_FILE, Path(args.output_dir) / SAMPLES_FILE
        if metrics.is_file():
            kept = read_metrics(metrics, up_to_step=state.global_step)
            write_atomically(metrics, "".join(json.dumps(record) + "\n" for record in kept))
            self._logged_at_resume = {
                _record_key(record) for record in kept if record.get("step") == state.global_step
            }
        if samples.is_file():
            rows = [r for r in read_jsonl(samples)[0] if r.get("step", 0) <= state.global_step]
            write_atomically(samples, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (state.is_world_process_zero and logs):
            return
        record = {"step": state.global_step, **logs}
        if _record_key(record) in self._logged_at_resume:
            return
        path = Path(args.output_dir) / METRICS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _record_key(record: dict) -> tuple[int, tuple[str, ...]]:
    """A log record's step and metric names: the same at the same step is the same record."""
    return record.get("step", 0), tuple(sorted(k for k in record if k != "step"))


class CollapseCallback(TrainerCallback):
    """Watches every log record with :class:`~corewarding.core.collapse.CollapseMonitor`.

    At the first collapse it warns, writes ``<output_dir>/collapse.json`` (step and signals) and,
    with ``stop_on_collapse``, stops training (the best checkpoint by held-out accuracy is kept by
    ``save_strategy: best``, which ``stop_on_collapse`` turns on). A resumed run replays the records
    up to its checkpoint, so the monitor's history is the run's, not just this session's.
    """

    def __init__(self, method: str, stop_on_collapse: bool = False):
        self.method = method
        self.monitor = CollapseMonitor()
        self.stop_on_collapse = stop_on_collapse

    def on_train_begin(self, args, state, control, **kwargs):
        self.monitor = CollapseMonitor()
        path = Path(args.output_dir) / METRICS_FILE
        if state.global_step > 0 and path.is_file():  # resumed into another folder: no history there
            for record in read_metrics(path, up_to_step=state.global_step):
                self.monitor.update(record)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or self.monitor.report.collapsed:
            return
        signals = self.monitor.update({"step": state.global_step, **logs})
        if not signals:
            return
        logger.warning("%s: collapse at step %d: %s", self.method, state.global_step, ", ".join(signals))
        if state.is_world_process_zero:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            write_atomically(Path(args.output_dir) / COLLAPSE_FILE, json.dumps(self.monitor.report.to_dict()))
        if self.stop_on_collapse:
            control.should_training_stop = True


class TaskFitCallback(TrainerCallback):
    """Warns once, in one line, when a run's first measurements show the model cannot do the task
    (:func:`~corewarding.core.task_fit.task_fit_warning`: the held-out evaluation at step 0, the first
    training step). A resumed run is past them and is not checked again."""

    def __init__(self):
        self.first_training_log, self.warned = True, False

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_training_log, self.warned = state.global_step == 0, False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or self.warned:
            return
        warning = task_fit_warning(logs, state.global_step, self.first_training_log)
        if FORMAT_REWARD in logs:
            self.first_training_log = False
        if warning:
            self.warned = True
            if state.is_world_process_zero:
                logger.warning(warning)


class FinalCheckpointCallback(TrainerCallback):
    """With ``save_strategy: steps``, also saves at the last step, so every finished run can be resumed
    (``--resume last`` with a larger ``max_steps`` extends it)."""

    def on_step_end(self, args, state, control, **kwargs):
        if args.save_strategy == "steps" and state.global_step >= state.max_steps:
            control.should_save = True


class StopOnSignalCallback(TrainerCallback):
    """At each step's end, stops the run when a process was asked to by a signal
    (:mod:`corewarding.core.stop_signals`), saving a checkpoint first (unless ``save_strategy`` is
    ``no``). ``agree`` turns this process's signal number (0: none) into the largest over all processes
    (an all-reduce), so a signal that reached one process stops every process at the same step.
    ``stopped_by`` then names the signal. A signal at the last step changes nothing: the run is complete.
    """

    def __init__(self, agree: Callable[[int], int]):
        self.agree = agree
        self.stopped_by: str | None = None

    def on_step_end(self, args, state, control, **kwargs):
        name = requested()
        number = self.agree(signal.Signals[name].value if name else 0)
        if number and state.global_step < state.max_steps:
            self.stopped_by = signal.Signals(number).name
            control.should_save = args.save_strategy != "no"
            control.should_training_stop = True
