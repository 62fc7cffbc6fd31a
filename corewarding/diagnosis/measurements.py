r"""What can be measured of a model on a set of questions before any RL, with and without their answers.

:func:`sample_views` draws, for each question, a greedy answer and ``2k`` samples of its wording (the
first ``k`` are the policy's rollouts; the other ``k`` are *fresh* samples, Co-rewarding-II's teacher at
step 0, when the teacher still equals the policy) and, where a rephrasing exists, a greedy answer and
``k`` samples of the rephrasing. Everything else is a pure function of those answers.

**Without answers** (:func:`label_free_measurements`), over the question view's ``k`` samples:

* *majority share* ``c/k`` of each question (``c``: the votes of its majority answer, no-answer samples
  counted in ``k``): its mean and its distribution over ``c = 0 … k``;
* *no-answer rate*: the share of samples without an extractable answer;
* *answer entropy*: ``H = −Σ_a p_a log2 p_a`` over the answer clusters of a question's answered
  samples (0 when all agree; 3 bits when 8 samples give 8 different answers), mean over questions;
* *teacher agreement*: the share of questions whose fresh samples' majority is the policy's;
* *cross-view agreement* (with rephrasings): the share of questions whose two views' majorities are
  the same answer — where they differ, Co-rewarding-I's label differs from self-voting's.

**With answers** (:func:`labelled_measurements`), per view: greedy pass@1, avg@k, maj@k, pass@k and the
*self-consistency headroom* maj@k − avg@k; the label accuracy each label-free reward has today (majority
vote: the question view's maj@k; Co-rewarding-I: the other view's majority, averaged over both views'
rollouts; Co-rewarding-II: the fresh samples' majority); and the cross-view label gain both ways — the
share of questions whose other view's majority is right while its own is wrong, for each view — with
the share where both views' majorities are wrong.

Worked example (one question, k = 4, exact matching)::

    >>> answers = SampledAnswers(
    ...     question=ViewAnswers(greedy=["5"], samples=[["5", "5", "4", None]]),
    ...     teacher=[["4", "4", "5", "4"]],
    ...     rephrasing=ViewAnswers(greedy=["4"], samples=[["4", "4", "4", "3"]]),
    ... )
    >>> free = label_free_measurements(answers, matching="exact")
    >>> free["majority_share"]["mean"], free["no_answer_rate"], free["cross_view_agreement"]
    (0.5, 0.25, 0.0)
    >>> round(free["answer_entropy_bits"], 3)   # answered samples 5, 5, 4: p = 2/3, 1/3
    0.918
    >>> labelled = labelled_measurements(answers, ["4"], matching="exact")
    >>> labelled["question"]["maj_at_k"], labelled["cross_view"]["other_right_own_wrong"]["question"]
    (0.0, 1.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from math import log2
from statistics import fmean

from corewarding.core.equivalence import answers_match, cluster_answer_groups
from corewarding.core.errors import UserError
from corewarding.core.voting import VotingConfig, majority_votes
from corewarding.data.records import Problem
from corewarding.inference.evaluate import evaluation_runs, outcome_scores, question_outcomes, sample_answers
from corewarding.inference.generation import GenerationBackend

__all__ = [
    "ViewAnswers", "SampledAnswers", "sample_views", "label_free_measurements", "labelled_measurements",
]


@dataclass(frozen=True)
class ViewAnswers:
    """The extracted answers (None: none) to one wording of each question: greedy, and k samples."""

    greedy: list[str | None]
    samples: list[list[str | None]]


@dataclass(frozen=True)
class SampledAnswers:
    """Answers to each question: its wording, k fresh samples of it (the teacher at step 0), and its
    rephrasing's (None when the questions have no rephrasing)."""

    question: ViewAnswers
    teacher: list[list[str | None]]
    rephrasing: ViewAnswers | None

    @property
    def k(self) -> int:
        return len(self.question.samples[0])

    @property
    def num_questions(self) -> int:
        return len(self.question.samples)


def sample_views(
    problems: Sequence[Problem],
    backend: GenerationBackend,
    *,
    k: int = 8,
    temperature: float = 1.0,
    max_new_tokens: int = 1024,
    system_prompt: str | None = None,
    answer_extraction: str = "boxed",
    progress: bool = False,
) -> tuple[SampledAnswers, int]:
    """The answers of :class:`SampledAnswers` to ``problems`` (rephrasings sampled when every problem has
    one), and how many completions failed (scored as no answer)."""
    if not problems:
        raise UserError("no questions to diagnose")
    if k < 2:
        raise UserError(f"a majority needs several samples: -k must be at least 2, got {k}")
    options = {"system_prompt": system_prompt, "answer_extraction": answer_extraction,
               "progress": progress}
    runs = evaluation_runs(k=2 * k, temperature=temperature, top_p=1.0, greedy=True,
                           max_new_tokens=max_new_tokens)
    answers, failed = sample_answers([p.question for p in problems], backend, runs, **options)
    question = ViewAnswers([g[0] for g in answers["greedy"]], [s[:k] for s in answers["sampled"]])
    teacher = [s[k:] for s in answers["sampled"]]
    rephrasing = None
    if all(p.rephrasing for p in problems):
        runs = evaluation_runs(k=k, temperature=temperature, top_p=1.0, greedy=True,
                               max_new_tokens=max_new_tokens)
        other, more_failed = sample_answers([p.rephrasing for p in problems], backend, runs, **options)
        rephrasing = ViewAnswers([g[0] for g in other["greedy"]], other["sampled"])
        failed += more_failed
    return SampledAnswers(question, teacher, rephrasing), failed


def _entropy_bits(clusters: Sequence[int | None]) -> float | None:
    counts = Counter(c for c in clusters if c is not None)
    total = sum(counts.values())
    if not total:
        return None
    return max(0.0, -sum(n / total * log2(n / total) for n in counts.values()))


def _agreement(first, second, matching: str) -> float:
    """Share of questions whose two votes have the same label (a question without a label disagrees)."""
    return fmean(answers_match([(a.label, b.label) for a, b in zip(first, second)], mode=matching))


def label_free_measurements(answers: SampledAnswers, matching: str = "equivalence") -> dict:
    """The figures that need no reference answer (module docstring); JSON-ready, fractions in [0, 1]."""
    voting = VotingConfig(matching=matching)
    samples, k = answers.question.samples, answers.k
    votes = majority_votes(samples, voting)
    counts = Counter(v.count for v in votes)
    entropies = [
        e for e in (_entropy_bits(c) for c in cluster_answer_groups(samples, mode=matching)) if e is not None
    ]
    figures = {
        "num_questions": answers.num_questions,
        "k": k,
        "majority_share": {
            "mean": fmean(v.ratio for v in votes),
            "distribution": {f"{c}/{k}": counts[c] / len(votes) for c in range(k + 1)},
        },
        "no_answer_rate": fmean(a is None for group in samples for a in group),
        "answer_entropy_bits": fmean(entropies) if entropies else None,
        "teacher_agreement": _agreement(votes, majority_votes(answers.teacher, voting), matching),
        "cross_view_agreement": None,
    }
    if answers.rephrasing is not None:
        figures["cross_view_agreement"] = _agreement(
            votes, majority_votes(answers.rephrasing.samples, voting), matching
        )
    return figures


def _view_scores(outcomes, k: int) -> dict:
    scores = asdict(outcome_scores(outcomes, k))
    scores["headroom"] = scores["maj_at_k"] - scores["avg_at_k"]
    return scores


def labelled_measurements(
    answers: SampledAnswers, references: Sequence[str], matching: str = "equivalence"
) -> dict:
    """The figures that need each question's reference answer (module docstring); JSON-ready."""
    if len(references) != answers.num_questions:
        raise ValueError(f"{len(references)} references for {answers.num_questions} questions")
    k = answers.k
    own = question_outcomes(references, answers.question.samples, answers.question.greedy, matching=matching)
    teacher = question_outcomes(references, answers.teacher, matching=matching)
    figures = {
        "question": _view_scores(own, k),
        "rephrasing": None,
        "label_accuracy": {
            "majority_vote": fmean(o.majority_correct for o in own),
            "co_rewarding_ii": fmean(o.majority_correct for o in teacher),
            "co_rewarding_i": None,
        },
        "cross_view": None,
    }
    if answers.rephrasing is not None:
        other = question_outcomes(
            references, answers.rephrasing.samples, answers.rephrasing.greedy, matching=matching
        )
        figures["rephrasing"] = _view_scores(other, k)
        q_right = [o.majority_correct for o in own]
        r_right = [o.majority_correct for o in other]
        # Each view's rollouts are rewarded against the other view's majority.
        figures["label_accuracy"]["co_rewarding_i"] = (fmean(q_right) + fmean(r_right)) / 2
        gain = {
            "question": fmean(r and not q for q, r in zip(q_right, r_right)),
            "rephrasing": fmean(q and not r for q, r in zip(q_right, r_right)),
        }
        figures["cross_view"] = {
            "other_right_own_wrong": gain,
            "gain": (gain["question"] + gain["rephrasing"]) / 2,
            "both_wrong": fmean(not q and not r for q, r in zip(q_right, r_right)),
        }
    return figures
