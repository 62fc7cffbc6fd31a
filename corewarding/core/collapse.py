"""Collapse detection from logged metrics only: the failure signatures of self-rewarding RL.

The paper describes how label-free training fails: the training reward keeps rising (or saturates)
while the answers get worse — majority voting agrees on wrong answers, confidence rewards make the
model certain and repetitive. :class:`CollapseMonitor` watches the metrics a run logs every step
(the names :mod:`corewarding.training.trainer` and TRL log) and flags these signatures:

===================================  ==========================================================
signal                               fires when (means over the last ``window`` logged steps)
===================================  ==========================================================
``reward_up_label_accuracy_down``    reward ≥ its early mean while ``label_accuracy`` has fallen
                                     below ``drop`` × its early mean (pseudo-labels turning wrong)
``heldout_accuracy_down``            the latest held-out greedy accuracy is below ``drop`` × the
                                     best so far (a run that has been right stops being right)
``entropy_collapse``                 token entropy below ``entropy_floor`` × its early mean, unless
                                     held-out accuracy is above its start (certain and right)
``length_to_cap``                    a share ≥ ``clipped_share`` of completions hit the length cap
``length_shrink``                    mean completion length below ``shrink`` × its early mean
``dominant_answer``                  one answer makes up ≥ ``dominant_share`` of all rollouts
                                     across different questions, and ≥ 3x its early share
``answer_from_question``             a share ≥ ``copied_share`` of rollouts answer with a number
                                     written in their own question, and ≥ 2x its early share
                                     (answering by echoing the question)
``reward_up_rollout_accuracy_down``  reward-model methods (records with ``rm/rule_agreement``):
                                     ``rollout_accuracy`` below ``rollout_drop`` × its best window
                                     mean so far, while the reward is at least that window's (the
                                     reward model pays for answers that are no longer right)
``rm_false_positives_up``            reward-model methods: ``rm/false_positive_rate`` (the share of
                                     the rollouts the verifier rejects that the reward model
                                     accepts) ≥ ``false_positive_rate`` and ≥ its early mean +
                                     ``false_positive_rise`` (the policy found a blind spot)
===================================  ==========================================================

The two reward-model signals are reward hacking seen from the logs: the verifier (the reference
answers a reward model reads anyway) shows what the learned reward misses. Rollout accuracy is compared
with its best window, not its early one: a hacked run first improves, often well above its start, and
then loses the gain while its reward holds.

"Early mean" is the mean of the first ``window`` logged steps. Nothing fires before ``window``
steps have been logged, and a training signal counts only after it has held for ``patience``
consecutive steps: with the few questions of a small batch (8 per step in the demo), label accuracy
over one window is noisy enough that a single low window flagged stable runs (2 of 4 Co-rewarding
runs of the study with window 5 and no patience). The first step at which any signal counts is the
collapse step.

Worked example (a reward that keeps climbing while the labels turn wrong)::

    >>> history = [{"step": s, "reward": 0.5 + 0.02 * s, "label_accuracy": max(0.0, 0.6 - 0.05 * s)}
    ...            for s in range(1, 20)]
    >>> report = detect_collapse(history)
    >>> report.step, report.reasons
    (18, ['reward_up_label_accuracy_down'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from corewarding.core.jsonl import read_jsonl
from corewarding.core.metric_names import ANSWER_IN_QUESTION

__all__ = ["CollapseThresholds", "CollapseReport", "CollapseMonitor", "detect_collapse", "read_metrics"]

HELDOUT_METRIC = "eval_greedy_accuracy"
LENGTH_METRIC = "completions/mean_length"
CLIPPED_METRIC = "completions/clipped_ratio"
ROLLOUT_METRIC = "rollout_accuracy"
#: Logged by the reward-model methods only (cooper, cooper_static): marks their records.
REWARD_MODEL_METRIC = "rm/rule_agreement"
FALSE_POSITIVE_METRIC = "rm/false_positive_rate"


@dataclass(frozen=True)
class CollapseThresholds:
    """The thresholds of the signals (see the module docstring); every default documented here.

    Attributes:
        window: logged steps averaged, and steps that make the early baseline (default 10).
        drop: a label or held-out accuracy below this fraction of its reference has collapsed (0.5).
        entropy_floor: token entropy below this fraction of its early mean has collapsed (0.25).
        clipped_share: this share of completions at the length cap means runaway length (0.5).
        shrink: mean length below this fraction of its early mean means shrinking answers (0.5).
        dominant_share: one answer this share of all rollouts means one answer for all (0.5).
        copied_share: answers copied from their question in this share of all rollouts, at least twice
            the early share, mean an echo (0.5). Twice, not the 3x of ``dominant_share``: a model that
            writes ``the sum of 50 and 34`` ends on an operand a quarter of the time before training.
        min_heldout: held-out accuracy below this is too small to judge a drop (0.05).
        patience: a training signal counts only once it has held on this many consecutive logged
            steps (default 5): with a few questions per step, one bad window is noise, not a collapse.
        rollout_drop: reward-model methods: rollout accuracy below this fraction of its best window
            mean, with the reward at least that window's, means a hacked reward model (0.8).
        false_positive_rate: reward-model methods: accepting this share of the wrong rollouts (0.5) …
        false_positive_rise: … and this much more of them than in the early window (0.25) means the
            policy has found the reward model's blind spot.
    """

    window: int = 10
    drop: float = 0.5
    entropy_floor: float = 0.25
    clipped_share: float = 0.5
    shrink: float = 0.5
    dominant_share: float = 0.5
    copied_share: float = 0.5
    min_heldout: float = 0.05
    patience: int = 5
    rollout_drop: float = 0.8
    false_positive_rate: float = 0.5
    false_positive_rise: float = 0.25


@dataclass
class CollapseReport:
    """Whether and when a run collapsed, and which signals fired then."""

    collapsed: bool = False
    step: int | None = None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"collapsed": self.collapsed, "step": self.step, "reasons": self.reasons}


class CollapseMonitor:
    """Feed it each log record (a dict with ``step``); it remembers the first collapse it sees."""

    def __init__(self, thresholds: CollapseThresholds = CollapseThresholds()):
        self.thresholds = thresholds
        self.train: list[Mapping] = []
        self.best_heldout: float | None = None
        self.first_heldout: float | None = None
        self.latest_heldout: float | None = None
        # The window with the best rollout accuracy so far: (its rollout accuracy, its reward).
        self.best_rollouts: tuple[float, float] | None = None
        self.streaks: dict[str, int] = {}
        self.report = CollapseReport()

    def update(self, record: Mapping) -> list[str]:
        """The signals firing after this record (empty when none); the first firing sets the report."""
        if HELDOUT_METRIC in record:
            signals = self._heldout_signals(record[HELDOUT_METRIC])
        elif "reward" in record:
            self.train.append(record)
            holding = self._train_signals()
            self.streaks = {signal: self.streaks.get(signal, 0) + 1 for signal in holding}
            signals = [signal for signal in holding if self.streaks[signal] >= self.thresholds.patience]
        else:
            return []
        if signals and not self.report.collapsed:
            self.report = CollapseReport(True, record.get("step"), signals)
        return signals

    def _heldout_signals(self, accuracy: float) -> list[str]:
        self.first_heldout = accuracy if self.first_heldout is None else self.first_heldout
        self.latest_heldout = accuracy
        best = self.best_heldout
        self.best_heldout = accuracy if best is None else max(best, accuracy)
        t = self.thresholds
        if best is not None and best >= t.min_heldout and accuracy < t.drop * best:
            return ["heldout_accuracy_down"]
        return []

    def _train_signals(self) -> list[str]:
        t = self.thresholds
        if len(self.train) < t.window:
            return []
        early, recent = self.train[: t.window], self.train[-t.window :]

        def mean(records, key):
            values = [r[key] for r in records if r.get(key) is not None]
            return fmean(values) if values else None

        def pair(key):
            return mean(early, key), mean(recent, key)

        signals = []
        reward, label = pair("reward"), pair("label_accuracy")
        if (
            None not in reward + label
            and reward[1] >= reward[0]
            and label[0] > 0
            and label[1] < t.drop * label[0]
        ):
            signals.append("reward_up_label_accuracy_down")
        entropy = pair("entropy")
        improved = self.first_heldout is not None and self.latest_heldout > self.first_heldout
        if (
            None not in entropy and entropy[0] > 0 and entropy[1] < t.entropy_floor * entropy[0]
            and not improved  # a run that has learnt to be right is certain too: that is no collapse
        ):
            signals.append("entropy_collapse")
        clipped = mean(recent, CLIPPED_METRIC)
        if clipped is not None and clipped >= t.clipped_share:
            signals.append("length_to_cap")
        length = pair(LENGTH_METRIC)
        if None not in length and length[1] < t.shrink * length[0]:
            signals.append("length_shrink")
        dominant = pair("dominant_answer_share")
        if None not in dominant and dominant[1] >= t.dominant_share and dominant[1] >= 3 * dominant[0]:
            signals.append("dominant_answer")
        copied = pair(ANSWER_IN_QUESTION)
        if None not in copied and copied[1] >= t.copied_share and copied[1] >= 2 * copied[0]:
            signals.append("answer_from_question")
        if mean(recent, REWARD_MODEL_METRIC) is not None:
            signals += self._reward_model_signals(mean(recent, ROLLOUT_METRIC), reward[1], pair)
        return signals

    def _reward_model_signals(self, rollouts: float | None, reward: float | None, pair) -> list[str]:
        """``reward_up_rollout_accuracy_down`` and ``rm_false_positives_up`` (module docstring), from the
        recent window's rollout accuracy and reward and ``pair(key)``: a metric's early and recent means."""
        t, signals = self.thresholds, []
        if rollouts is not None and reward is not None:
            best = self.best_rollouts
            if best is not None and rollouts < t.rollout_drop * best[0] and reward >= best[1]:
                signals.append("reward_up_rollout_accuracy_down")
            if best is None or rollouts > best[0]:
                self.best_rollouts = (rollouts, reward)
        false_positives = pair(FALSE_POSITIVE_METRIC)
        if (
            None not in false_positives
            and false_positives[1] >= t.false_positive_rate
            and false_positives[1] >= false_positives[0] + t.false_positive_rise
        ):
            signals.append("rm_false_positives_up")
        return signals


def detect_collapse(
    records: Iterable[Mapping], thresholds: CollapseThresholds = CollapseThresholds()
) -> CollapseReport:
    """The collapse report of a whole metric history (the records of a ``metrics.jsonl``)."""
    monitor = CollapseMonitor(thresholds)
    for record in records:
        monitor.update(record)
    return monitor.report


def read_metrics(path: str | Path, up_to_step: int | None = None) -> list[dict]:
    """The step records of a ``metrics.jsonl`` (one JSON object per line), up to a step: not the
    end-of-training summary, and not a line a crash cut off (:func:`~corewarding.core.jsonl.read_jsonl`)."""
    records, _ = read_jsonl(path)
    return [
        r for r in records
        if isinstance(r, dict)
        and "train_runtime" not in r
        and (up_to_step is None or r.get("step", 0) <= up_to_step)
    ]
