r"""Evaluation: sample answers to questions, then score them against the reference answers.

Two steps, kept apart so either can be replaced:

1. **Generation** — any :class:`~corewarding.inference.generation.GenerationBackend` (a transformers model,
   vLLM, an OpenAI-compatible endpoint) gives greedy and ``k`` sampled completions per question; the
   answers are extracted from them (:func:`corewarding.core.answers.extract_answer`). A completion whose
   request failed (HTTP) counts as one without an answer, and the result says how many there were.
2. **Scoring** — :func:`score_answers` is a pure function of the extracted answers and the references:

   * greedy pass@1: share of questions whose greedy answer is correct;
   * avg@k: mean over questions of c/n, the share of a question's n sampled answers that are correct;
   * pass@k, for each k ≤ n, by the unbiased estimator of Chen et al. (2021), averaged over questions:
     pass@k = 1 − C(n − c, k) / C(n, k)  (the chance that k of the n samples, drawn without
     replacement, contain a correct one);
   * maj@k: share of questions whose majority answer over all n samples
     (:func:`corewarding.core.voting.majority_vote`) is correct.

   Correctness is :func:`corewarding.core.equivalence.answers_match` (math-verify equivalence by default).

Worked example: two questions with reference 4, n = 4 samples each::

    >>> scores = score_answers(["4", "4"], sampled=[["4", "5", "4", None], ["5", "5", "4", "6"]],
    ...                        greedy=["4", "5"], pass_ks=(1, 2))
    >>> scores.greedy_accuracy, scores.avg_at_k, scores.pass_at_k, scores.maj_at_k
    (0.5, 0.375, {1: 0.375, 2: 0.6666666666666667}, 0.5)

(pass@2 = mean of 1 − C(2,2)/C(4,2) = 5/6 and 1 − C(3,2)/C(4,2) = 1/2; the second question's
majority is 5, wrong.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from math import comb
from statistics import fmean

from rich import box
from rich.progress import Progress
from rich.table import Table

from corewarding.core.answers import extract_answer
from corewarding.core.equivalence import answers_match
from corewarding.core.errors import UserError
from corewarding.core.prompts import SYSTEM_PROMPT, chat_messages
from corewarding.core.terminal import output_console
from corewarding.core.voting import VotingConfig, majority_votes
from corewarding.data.loaders import MAX_QUESTION_CHARS
from corewarding.data.records import Problem
from corewarding.inference.generation import GenerationBackend, GenerationSettings, completion_texts

__all__ = [
    "pass_at_k",
    "reported_ks",
    "Scores",
    "QuestionOutcome",
    "question_outcomes",
    "outcome_scores",
    "score_answers",
    "sample_completions",
    "extracted_answers",
    "sample_answers",
    "EvaluationResult",
    "evaluation_runs",
    "evaluate",
    "results_table",
    "SAMPLING_TEMPERATURE",
]

#: The temperature of sampled evaluation (avg@k, pass@k, maj@k), the one default of ``corewarding eval``
#: and of training's held-out evaluation (``heldout_temperature``): the same checkpoint scores the same.
SAMPLING_TEMPERATURE = 0.8

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 − C(n − c, k) / C(n, k).

    >>> pass_at_k(4, 1, 2), pass_at_k(4, 0, 2), pass_at_k(4, 3, 2)
    (0.5, 0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


@dataclass(frozen=True)
class Scores:
    """Accuracy metrics of one evaluation (fractions in [0, 1]; None where not measured).

    Attributes:
        num_questions: questions scored.
        k: sampled answers per question (0 without sampling).
        greedy_accuracy: greedy pass@1.
        avg_at_k: mean accuracy of the k sampled answers.
        pass_at_k: unbiased pass@k, for each reported k.
        maj_at_k: accuracy of the majority answer of the k sampled answers.
        no_answer_rate: share of sampled completions without an extractable answer.
    """

    num_questions: int
    k: int = 0
    greedy_accuracy: float | None = None
    avg_at_k: float | None = None
    pass_at_k: dict[int, float] = field(default_factory=dict)
    maj_at_k: float | None = None
    no_answer_rate: float | None = None


@dataclass(frozen=True)
class QuestionOutcome:
    """How one question went: greedy answer right, how many of the n samples right, majority right
    (None where not measured)."""

    greedy_correct: bool | None = None
    sampled_correct: int | None = None
    majority_correct: bool | None = None


def question_outcomes(
    references: Sequence[str],
    sampled: Sequence[Sequence[str | None]] | None = None,
    greedy: Sequence[str | None] | None = None,
    *,
    matching: str = "equivalence",
) -> list[QuestionOutcome]:
    """Each question's :class:`QuestionOutcome` (arguments as in :func:`score_answers`).

    >>> question_outcomes(["4"], sampled=[["4", "5", "5"]], greedy=["4"])
    [QuestionOutcome(greedy_correct=True, sampled_correct=1, majority_correct=False)]
    """
    num = len(references)
    if any(r is None for r in references):
        raise ValueError("every question needs a reference answer to be scored")
    for name, answers in (("sampled", sampled), ("greedy", greedy)):
        if answers is not None and len(answers) != num:
            raise ValueError(f"{name} answers are given for {len(answers)} questions, references for {num}")
    greedy_correct = correct = majority_correct = [None] * num
    if greedy is not None:
        greedy_correct = answers_match(list(zip(references, greedy)), mode=matching)
    if sampled is not None and num:
        n = len(sampled[0])
        if n == 0 or any(len(s) != n for s in sampled):
            raise ValueError("every question needs the same, non-zero number of sampled answers")
        verdicts = answers_match(
            [(r, a) for r, group in zip(references, sampled) for a in group], mode=matching
        )
        correct = [sum(verdicts[i * n : (i + 1) * n]) for i in range(num)]
        labels = [vote.label for vote in majority_votes(sampled, VotingConfig(matching=matching))]
        majority_correct = answers_match(list(zip(references, labels)), mode=matching)
    return [QuestionOutcome(*fields) for fields in zip(greedy_correct, correct, majority_correct)]


def reported_ks(n: int, pass_ks: Sequence[int] | None = None) -> list[int]:
    """The k at which pass@k is reported from n samples: ``pass_ks``, or 1, 2, 4, … up to and including n.

    >>> reported_ks(6)
    [1, 2, 4, 6]
    """
    ks = sorted(set(pass_ks)) if pass_ks else sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})
    if ks[0] < 1 or ks[-1] > n:
        raise UserError(f"pass@k can be reported for 1 <= k <= {n} only, got {ks}")
    return ks


def outcome_scores(
    outcomes: Sequence[QuestionOutcome], k: int = 0, pass_ks: Sequence[int] | None = None
) -> Scores:
    """:class:`Scores` of a set of questions from their outcomes, ``k`` samples each (0: not sampled).
    ``no_answer_rate`` is left out: outcomes do not keep the answers."""
    num = len(outcomes)
    scores: dict = {"num_questions": num}
    if num and outcomes[0].greedy_correct is not None:
        scores["greedy_accuracy"] = fmean(o.greedy_correct for o in outcomes)
    if num and k:
        ks = reported_ks(k, pass_ks)
        scores.update(
            k=k,
            avg_at_k=fmean(o.sampled_correct / k for o in outcomes),
            pass_at_k={j: fmean(pass_at_k(k, o.sampled_correct, j) for o in outcomes) for j in ks},
            maj_at_k=fmean(o.majority_correct for o in outcomes),
        )
    return Scores(**scores)


def score_answers(
    references: Sequence[str],
    sampled: Sequence[Sequence[str | None]] | None = None,
    greedy: Sequence[str | None] | None = None,
    *,
    pass_ks: Sequence[int] | None = None,
    matching: str = "equivalence",
) -> Scores:
    """Scores of extracted answers against references (see the module docstring for the formulas).

    Args:
        references: the reference answer of each question.
        sampled: each question's sampled answers (None: no answer), the same number for every question.
        greedy: each question's greedy answer.
        pass_ks: the k at which to report pass@k (default: 1, 2, 4, … up to and including n).
        matching: ``"equivalence"`` (math-verify) or ``"exact"`` (canonical strings).
    """
    return _scores_and_outcomes(references, sampled, greedy, pass_ks=pass_ks, matching=matching)[0]


def _scores_and_outcomes(
    references, sampled, greedy, *, pass_ks, matching
) -> tuple[Scores, list[QuestionOutcome]]:
    outcomes = question_outcomes(references, sampled, greedy, matching=matching)
    k = len(sampled[0]) if sampled else 0
    scores = outcome_scores(outcomes, k, pass_ks)
    if k:
        scores = replace(scores, no_answer_rate=fmean(a is None for group in sampled for a in group))
    return scores, outcomes


@dataclass(frozen=True)
class EvaluationResult:
    """Scores with the settings that produced them; ``to_json`` / ``from_json`` round-trip it.

    Attributes:
        scores: the metrics.
        temperature, top_p: of the sampled answers (None without sampling).
        max_new_tokens: the completion length limit of every run.
        matching: how answers were compared (``"equivalence"`` or ``"exact"``).
        failed: completions that could not be generated (failed HTTP requests), scored as no answer.
        per_question: each question's score, by metric: ``greedy`` (1 or 0) and ``avg@k`` (c/k), in the
            problems' order (what a comparison with another model pairs).
        completions: when kept, each run's completions (``greedy``: one per question, ``sampled``: k), in
            the problems' order; empty otherwise.
    """

    scores: Scores
    temperature: float | None
    top_p: float | None
    max_new_tokens: int
    matching: str
    failed: int = 0
    per_question: dict[str, list[float]] = field(default_factory=dict)
    completions: dict[str, list[list[str]]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> EvaluationResult:
        data = json.loads(text)
        scores = data.pop("scores")
        scores["pass_at_k"] = {int(k): v for k, v in scores["pass_at_k"].items()}  # JSON keys are strings
        return cls(Scores(**scores), **data)


def evaluation_runs(
    *, k: int, temperature: float, top_p: float, greedy: bool, max_new_tokens: int
) -> dict[str, GenerationSettings]:
    """The generation settings of :func:`evaluate`'s runs, ``"greedy"`` and/or ``"sampled"`` (arguments
    as there); a combination that cannot be evaluated is a ValueError, raised before any model is loaded.

    >>> evaluation_runs(k=4, temperature=0.6, top_p=1.0, greedy=False, max_new_tokens=512)
    {'sampled': GenerationSettings(n=4, temperature=0.6, top_p=1.0, max_new_tokens=512)}
    """
    if k < 0:
        raise UserError(f"k must be non-negative, got {k}")
    if k == 0 and not greedy:
        raise UserError(
            "nothing to evaluate: ask for greedy decoding (greedy=True), sampling (k > 0), or both"
        )
    if k > 1 and temperature == 0:
        raise UserError(f"k={k} answers at temperature 0 are all alike: sample at a temperature above 0")
    runs = {}
    if greedy:
        runs["greedy"] = GenerationSettings(max_new_tokens=max_new_tokens)
    if k:
        runs["sampled"] = GenerationSettings(k, temperature, top_p, max_new_tokens)
    return runs


def sample_completions(
    questions: Sequence[str],
    backend: GenerationBackend,
    runs: Mapping[str, GenerationSettings],
    *,
    system_prompt: str | None = SYSTEM_PROMPT,
    progress: bool = False,
    max_question_chars: int | None = MAX_QUESTION_CHARS,
) -> tuple[dict[str, list[list[str]]], int]:
    """The completions of each run of :func:`evaluation_runs` to each question (``""`` for one that
    failed), and the number that failed; arguments as in :func:`evaluate`."""
    if max_question_chars is not None:
        too_long = [i for i, question in enumerate(questions) if len(question) > max_question_chars]
        if too_long:
            raise UserError(
                f"{len(too_long)} question(s) longer than {max_question_chars:,} characters (the first: "
                f"question {too_long[0]}, {len(questions[too_long[0]]):,}); shorten them or raise "
                "max_question_chars"
            )
    conversations = [chat_messages(question, system_prompt) for question in questions]
    texts, failed = {}, 0
    with Progress(disable=not progress, console=output_console()) as bar:
        for name, settings in runs.items():
            label = (
                "greedy decoding"
                if settings.greedy
                else f"sampling k={settings.n} at T={settings.temperature:g}"
            )
            task = bar.add_task(label, total=len(conversations))
            groups = backend.generate(conversations, settings, lambda i, completions: bar.advance(task))
            failed += sum(c.text is None for group in groups for c in group)
            texts[name] = completion_texts(groups)
    return texts, failed


def extracted_answers(
    completions: Mapping[str, list[list[str]]], answer_extraction: str = "boxed"
) -> dict[str, list[list[str | None]]]:
    """The answer of every completion of :func:`sample_completions` (None: no answer)."""
    return {
        name: [[extract_answer(text, answer_extraction) for text in group] for group in groups]
        for name, groups in completions.items()
    }


def sample_answers(
    questions: Sequence[str],
    backend: GenerationBackend,
    runs: Mapping[str, GenerationSettings],
    *,
    system_prompt: str | None = SYSTEM_PROMPT,
    answer_extraction: str = "boxed",
    progress: bool = False,
    max_question_chars: int | None = MAX_QUESTION_CHARS,
) -> tuple[dict[str, list[list[str | None]]], int]:
    """The extracted answers of each run of :func:`evaluation_runs` to each question, and the number
    of completions that failed (scored as no answer); arguments as in :func:`evaluate`."""
    texts, failed = sample_completions(
        questions, backend, runs, system_prompt=system_prompt, progress=progress,
        max_question_chars=max_question_chars,
    )
    return extracted_answers(texts, answer_extraction), failed


def evaluate(
    problems: Sequence[Problem],
    backend: GenerationBackend,
    *,
    k: int = 8,
    temperature: float = SAMPLING_TEMPERATURE,
    top_p: float = 1.0,
    greedy: bool = True,
    max_new_tokens: int = 1024,
    pass_ks: Sequence[int] | None = None,
    matching: str = "equivalence",
    system_prompt: str | None = SYSTEM_PROMPT,
    answer_extraction: str = "boxed",
    progress: bool = False,
    max_question_chars: int | None = MAX_QUESTION_CHARS,
    keep_completions: bool = False,
) -> EvaluationResult:
    """Greedy and/or ``k`` sampled answers to each problem's question, scored against ``problem.answer``.

    Args:
        problems: the questions; each needs a reference answer.
        backend: where the completions come from.
        k: sampled completions per question at ``temperature`` and ``top_p`` (0: no sampled run).
        greedy: also decode greedily (greedy pass@1).
        max_new_tokens: completion length limit of both runs.
        pass_ks, matching: see :func:`score_answers`.
        system_prompt: the system turn of every prompt (:func:`corewarding.core.prompts.chat_messages`).
        answer_extraction: where a completion's answer is, one of
            :data:`corewarding.core.answers.ANSWER_EXTRACTIONS`
            (:func:`~corewarding.core.answers.extract_answer`).
        progress: show a progress bar per run, advanced as the backend finishes questions.
        max_question_chars: longest question accepted, in characters: a longer one is a ValueError,
            raised before anything is generated (default
            :data:`~corewarding.data.loaders.MAX_QUESTION_CHARS`; None: no limit).
        keep_completions: keep every completion in the result (``EvaluationResult.completions``), to read
            what the model wrote.
    """
    runs = evaluation_runs(
        k=k, temperature=temperature, top_p=top_p, greedy=greedy, max_new_tokens=max_new_tokens
    )
    texts, failed = sample_completions(
        [p.question for p in problems], backend, runs, system_prompt=system_prompt, progress=progress,
        max_question_chars=max_question_chars,
    )
    answers = extracted_answers(texts, answer_extraction)
    scores, outcomes = _scores_and_outcomes(
        [p.answer for p in problems],
        answers.get("sampled"),
        [group[0] for group in answers["greedy"]] if greedy else None,
        pass_ks=pass_ks,
        matching=matching,
    )
    per_question = {}
    if greedy:
        per_question["greedy"] = [float(o.greedy_correct) for o in outcomes]
    if k:
        per_question[f"avg@{k}"] = [o.sampled_correct / k for o in outcomes]
    return EvaluationResult(
        scores, temperature if k else None, top_p if k else None, max_new_tokens, matching, failed,
        per_question, texts if keep_completions else {},
    )


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def results_table(results: Mapping[str, EvaluationResult], title: str = "Evaluation (accuracy, %)") -> Table:
    """A rich table, one row per named result: questions (n), greedy pass@1, and at temperature T: avg@k,
    pass@k, maj@k, the share of samples without an answer. (pass@1 is left out: it equals avg@k.)"""
    sample_counts = {r.scores.k for r in results.values() if r.scores.k}
    k = str(sample_counts.pop()) if len(sample_counts) == 1 else "k"
    pass_ks = sorted({n for r in results.values() for n in r.scores.pass_at_k if n > 1})
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", overflow="fold", min_width=12)
    for header in ("n", "greedy", "T", f"avg@{k}", *(f"pass@{n}" for n in pass_ks), f"maj@{k}", "no ans."):
        table.add_column(header, justify="right")
    for name, result in results.items():
        s = result.scores
        table.add_row(
            name,
            str(s.num_questions),
            _percent(s.greedy_accuracy),
            "–" if result.temperature is None else f"{result.temperature:g}",
            _percent(s.avg_at_k),
            *(_percent(s.pass_at_k.get(n)) for n in pass_ks),
            _percent(s.maj_at_k),
            _percent(s.no_answer_rate),
        )
    return table
