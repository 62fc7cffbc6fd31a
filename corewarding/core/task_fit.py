"""Can the model do this task at all? The warning its first measurements give.

Every label-free reward of the project labels a model's rollouts with its own (or its teacher's) answers,
so it can only sharpen what the model can already do: a model that solves none of the questions, or
gives no extractable answer, has nothing to be rewarded for — yet the reward of an unlabelled run can
still climb (the tiny model on plain-English arithmetic: 0% held-out from step 0, reward 0.45 → 0.86),
which looks like progress. :func:`task_fit_warning` reads one log record and returns the line that says
so, at the first measurements of a run:

* the held-out evaluation at step 0 (with references): greedy and sampled accuracy both 0, or at least
  :data:`NO_ANSWER_LIMIT` of the samples without an answer;
* the first training step (with or without references): at most :data:`EXTRACTABLE_LIMIT` of the
  rollouts with an extractable answer (``rewards/format/mean``, the format reward).
"""

from __future__ import annotations

from collections.abc import Mapping

from corewarding.core import metric_names

__all__ = ["EXTRACTABLE_LIMIT", "FORMAT_REWARD", "NO_ANSWER_LIMIT", "task_fit_warning"]

#: The format reward's logged mean: the share of rollouts with an extractable answer.
FORMAT_REWARD = "rewards/format/mean"
#: At or below this share of rollouts with an answer, the rewards have (nearly) nothing to compare.
EXTRACTABLE_LIMIT = 0.05
#: At or above this share of held-out samples without an answer, held-out accuracy means nothing.
NO_ANSWER_LIMIT = 0.95

_WHAT_TO_DO = (
    "label-free rewards only sharpen what a model can already do: train a bigger model "
    "(--model_name_or_path), check its prompt and answer format, or measure first with `corewarding "
    "diagnose`; the tiny model knows only its synthetic task (--dataset synthetic)"
)


def task_fit_warning(logs: Mapping[str, float], step: int, first_training_log: bool) -> str | None:
    """The warning line of a log record at ``step``, or None: the held-out evaluation at step 0, or the
    first training record of the run (``first_training_log``), showing the model cannot do the task."""
    if step == 0 and metric_names.HELDOUT_GREEDY in logs:
        shown = (metric_names.HELDOUT_GREEDY, metric_names.HELDOUT_SAMPLED)
        accuracies = [logs[name] for name in shown if name in logs]
        no_answer = logs.get(metric_names.HELDOUT_NO_ANSWER, 0.0)
        if no_answer >= NO_ANSWER_LIMIT:
            return (
                f"warning: at step 0, {no_answer:.0%} of the model's held-out samples give no answer that "
                f"can be read: {_WHAT_TO_DO}"
            )
        if max(accuracies) == 0:
            return f"warning: at step 0 the model solves none of the held-out questions (0%): {_WHAT_TO_DO}"
    if first_training_log and FORMAT_REWARD in logs and logs[FORMAT_REWARD] <= EXTRACTABLE_LIMIT:
        return (
            f"warning: in the first step only {logs[FORMAT_REWARD]:.0%} of the rollouts give an answer that "
            f"can be read, so the rewards have almost nothing to compare: {_WHAT_TO_DO}"
        )
    return None
