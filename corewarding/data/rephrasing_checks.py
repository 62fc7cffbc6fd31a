r"""Validation of rephrasings: is each one a faithful restatement of its question, fit to train on?

Every pair gets every check; a check passes, fails, or is not run (``passed=None``: no rephrasing to
check, or the check does not apply). A failed *rejecting* check makes the pair invalid
(``Problem.rephrasing_valid=False``, kept out of training); a failed *reporting* check only flags it.

=================  ========  ================================================================================
check              default   fails when
=================  ========  ================================================================================
``output``         rejects   there is no rephrasing: the request failed, the output is empty, or it has no
                             start marker (:func:`~corewarding.data.rephrasing_prompt.parse_rephrasing`)
``placeholder``    rejects   the rephrasing contains an instruction's placeholder (``<rewritten question>``)
``unchanged``      rejects   it is the original, once whitespace and case are normalised
``near_identical`` rejects   its wording is nearly the original's: similarity ≥ ``max_similarity`` (0.9)
``length``         rejects   length ratio r = len(rephrasing) / len(original) < ``min_length_ratio`` (0.25),
                             or len(rephrasing) > ``max_length_ratio`` (3) · len(original) + ``length_slack``
                             (500 characters)
``numbers``        reports   a number of the original appears neither as digits nor as a number word
                             (zero … twenty, the tens, hundred, thousand) in the rephrasing
``figure``         reports   the original has figure code (``[asy]…[/asy]``, ``\begin{asy}…``, a fenced
                             ``asy`` block) and the rephrasing has none
``answers``        rejects   (only with a solver) the majority answers of k solver samples on the two views
                             are not equivalent (:func:`~corewarding.core.voting.majority_vote`, then
                             :func:`~corewarding.core.equivalence.answers_match`); also when either view
                             gets no majority answer
=================  ========  ================================================================================

Definitions and why:

* **Similarity** is difflib's ratio 2·M / (|a| + |b|) (M: words in matching blocks) over the *prose
  words* (``\w+``, lower-cased) of the two texts, figure code and LaTeX math (``$…$``, ``$$…$$``,
  ``\[…\]``, ``\(…\)``, ``\begin{…}…\end{…}``) left out; over all words outside figures when the
  original has no prose at all. The mathematics is meant to stay the same, so comparing it would
  call ``Find $<long formula>$`` → ``Calculate $<long formula>$`` a copy (0.96 on all words, MATH); on
  prose it is 0, while an original wrapped in angle brackets (MATH has one, DAPO two) scores 1.0. At
  0.9 about one prose word in ten has changed.
* **Length** counts characters with figure code left out and whitespace collapsed: a rephrasing that
  describes a figure in words instead of copying its code is not "too short". The bounds come from
  the released data: on MATH every rephrasing that is not a placeholder has r ≥ 0.5 and is at most
  403 characters longer than its original; a word problem made of a one-line exercise
  (``Compute $139+27+23+11$.``, 23 characters → 139) is legitimate, hence the additive slack.
* **Numbers** and **figure** only report by default: a rephrasing may write "a unit square" for
  "sides of length 1", and may state a figure's content in words. Both point at pairs worth reading.

On the released rephrasings (Qwen3-32B; ``corewarding validate-pairs train.parquet
train_rewrite_Qwen3-32B.parquet``), pairs failing each check:

==========  ======  ===========  =========  ==============  ======  =======  ======  ===============
data        pairs   placeholder  unchanged  near_identical  length  numbers  figure  rejected (kept)
==========  ======  ===========  =========  ==============  ======  =======  ======  ===============
MATH        7,500   19           2          1               19      787      583     22 (7,478)
DAPO-14k    14,109  45           0          5               47      1,971    433     52 (14,057)
AMC         83      0            0          0               0       12       2       0 (83)
==========  ======  ===========  =========  ==============  ======  =======  ======  ===============

The placeholder rows are also too short. MATH's near-copy and two of DAPO's are the original wrapped
in ``<…>``; DAPO's other three are an integral with ``|1 - |x||`` written ``||x| - 1|`` and two
rephrasings that change two or three words. DAPO's two other length failures are questions whose
figure code is wrapped in ``\text{}`` (not recognised as a figure) rephrased without it. 583 of the
707 MATH questions with a figure lost it in their rephrasing.

Worked example::

    >>> checks = text_checks("Tom has 3 apples and buys 4 more. How many apples does he have?",
    ...                      "Ana owns 3 pens and gets 4 more. How many pens does she own now?")
    >>> [name for name, result in checks.items() if result.passed is False]
    []
    >>> checks["near_identical"].detail
    'similarity 0.48 < 0.9'
    >>> text_checks("What is $2+3$?", "<rewritten question>")["placeholder"]
    CheckResult(passed=False, detail="echoes the placeholder '<rewritten question>'")
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from rich.table import Table

from corewarding.core.answers import extract_answer
from corewarding.core.equivalence import answers_match
from corewarding.core.errors import UserError
from corewarding.core.voting import VotingConfig, majority_votes
from corewarding.data.records import Problem
from corewarding.data.rephrasing_prompt import DEFAULT_INSTRUCTION, REFERENCE_PLACEHOLDER

__all__ = [
    "CHECKS",
    "CheckResult",
    "PairReport",
    "Solver",
    "ValidationSettings",
    "failure_counts",
    "summary_table",
    "text_checks",
    "validate_pairs",
    "with_verdicts",
]

#: Every check, in the order they are reported, with what a failure means.
CHECKS: dict[str, str] = {
    "output": "no rephrasing (failed request, empty or unparsable output)",
    "placeholder": "the instruction's placeholder echoed",
    "unchanged": "identical to the original",
    "near_identical": "wording nearly identical to the original",
    "length": "length out of bounds",
    "numbers": "numbers of the original missing",
    "figure": "the original's figure dropped",
    "answers": "majority answers of the two views differ",
}


@dataclass(frozen=True)
class CheckResult:
    """One check on one pair: ``passed`` is None when the check was not run; ``detail`` says why/how much."""

    passed: bool | None
    detail: str = ""


@dataclass(frozen=True)
class ValidationSettings:
    """Thresholds and policy of the checks (the module docstring says what each does).

    Attributes:
        max_similarity: prose similarity at or above which a rephrasing is near-identical.
        min_length_ratio, max_length_ratio, length_slack: the length bounds.
        placeholders: texts that mean "the model echoed the instruction's format block"; a custom
            instruction's placeholder must be added here (``corewarding rephrase`` does).
        report_only: checks that flag without rejecting (``output`` cannot be one).
        answer_samples: k, the solver's samples per view for the ``answers`` check.
        voting: how the solver's answers are voted on and compared.
    """

    max_similarity: float = 0.9
    min_length_ratio: float = 0.25
    max_length_ratio: float = 3.0
    length_slack: int = 500
    placeholders: tuple[str, ...] = (DEFAULT_INSTRUCTION.placeholder, REFERENCE_PLACEHOLDER)
    report_only: frozenset[str] = frozenset({"numbers", "figure"})
    answer_samples: int = 8
    voting: VotingConfig = field(default_factory=VotingConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "report_only", frozenset(self.report_only))
        unknown = sorted(self.report_only - CHECKS.keys())
        if unknown:
            raise UserError(f"unknown check {unknown[0]!r}: expected one of {', '.join(CHECKS)}")
        if "output" in self.report_only:
            raise UserError(
                "the output check cannot be report-only: a pair without a rephrasing cannot be trained on"
            )
        if not 0 < self.max_similarity <= 1:
            raise UserError(f"max_similarity must be in (0, 1], got {self.max_similarity}")
        if not 0 <= self.min_length_ratio < self.max_length_ratio:
            raise UserError(
                "length ratios must satisfy 0 <= min < max, "
                f"got {self.min_length_ratio} and {self.max_length_ratio}"
            )
        if self.answer_samples < 1:
            raise UserError(f"answer_samples must be at least 1, got {self.answer_samples}")


@dataclass(frozen=True)
class PairReport:
    """Every check's result for one pair, and the verdict.

    Attributes:
        id: the pair's id (``Problem.id``).
        checks: one :class:`CheckResult` per name of :data:`CHECKS`, in that order.
        rejected_by: the failed rejecting checks; the pair is valid when there are none.
        flagged_by: the failed reporting checks.
    """

    id: str
    checks: dict[str, CheckResult]
    rejected_by: tuple[str, ...]
    flagged_by: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return not self.rejected_by


class Solver(Protocol):
    """A model that answers questions: ``k`` completions for each question, in order.

    Any callable of this shape works; :func:`corewarding.inference.rephrase.backend_solver` makes one of
    any generation backend.
    """

    def __call__(self, questions: Sequence[str], k: int) -> list[list[str]]: ...


_FIGURE = re.compile(r"\[asy\].*?\[/asy\]|\\begin\{asy\}.*?\\end\{asy\}|```asy.*?```", re.S | re.I)
_MATH = re.compile(
    r"\$\$.*?\$\$|\$.*?\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{([a-zA-Z]+\*?)\}.*?\\end\{\1\}", re.S
)
_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d)(?:,|\{,\})(?=\d{3}(?!\d))")
_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen \
seventeen eighteen nineteen twenty".split()
)
_TENS = "thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORDS = (
    {word: str(value) for value, word in enumerate(_UNITS)}
    | {word: str(10 * value) for value, word in enumerate(_TENS, start=3)}
    | {"hundred": "100", "thousand": "1000"}
)


def text_checks(
    original: str,
    rephrasing: str | None,
    settings: ValidationSettings = ValidationSettings(),
    *,
    output_problem: str | None = None,
) -> dict[str, CheckResult]:
    """Every check that needs only the two texts (all but ``answers``, which is left not run).

    ``output_problem`` says why there is no rephrasing (a failed request, an unparsable output); the
    ``output`` check then fails with it and nothing else is run.
    """
    if output_problem is not None or not (rephrasing or "").strip():
        skipped = CheckResult(None, "no rephrasing")
        return {"output": CheckResult(False, output_problem or "empty rephrasing")} | {
            name: skipped for name in CHECKS if name != "output"
        }
    unchanged = _normalised(original) == _normalised(rephrasing)
    return {
        "output": CheckResult(True),
        "placeholder": _placeholder_check(rephrasing, settings.placeholders),
        "unchanged": CheckResult(False, "same text as the original") if unchanged else CheckResult(True),
        "near_identical": CheckResult(None, "unchanged")
        if unchanged
        else _similarity_check(original, rephrasing, settings),
        "length": _length_check(original, rephrasing, settings),
        "numbers": _numbers_check(original, rephrasing),
        "figure": _figure_check(original, rephrasing),
        "answers": CheckResult(None, "no solver"),
    }


def validate_pairs(
    problems: Sequence[Problem],
    settings: ValidationSettings = ValidationSettings(),
    *,
    solver: Solver | None = None,
    output_problems: Mapping[str, str] | None = None,
) -> list[PairReport]:
    """Check every problem's rephrasing; one report per problem, in order.

    ``output_problems`` maps a pair id to why it has no rephrasing. With a ``solver``, the
    ``answers`` check runs on the pairs that passed every other rejecting check (one solver call for
    all of them, both views).
    """
    output_problems = output_problems or {}
    checks = [
        text_checks(p.question, p.rephrasing, settings, output_problem=output_problems.get(p.id))
        for p in problems
    ]
    if solver is not None:
        candidates = [i for i, c in enumerate(checks) if not _rejecting_failures(c, settings)]
        results = _answer_checks([problems[i] for i in candidates], solver, settings)
        for i, c in enumerate(checks):
            if c["output"].passed:
                checks[i] = c | {"answers": CheckResult(None, "already rejected")}
        for i, result in zip(candidates, results):
            checks[i] = checks[i] | {"answers": result}
    return [
        PairReport(
            id=p.id,
            checks=c,
            rejected_by=_rejecting_failures(c, settings),
            flagged_by=tuple(
                name for name, r in c.items() if r.passed is False and name in settings.report_only
            ),
        )
        for p, c in zip(problems, checks)
    ]


def with_verdicts(problems: Sequence[Problem], reports: Sequence[PairReport]) -> list[Problem]:
    """The problems with ``rephrasing_valid`` set from their reports."""
    return [replace(p, rephrasing_valid=r.valid) for p, r in zip(problems, reports, strict=True)]


def failure_counts(reports: Sequence[PairReport]) -> dict[str, int | None]:
    """Pairs failing each check; None for a check that was run on no pair."""
    counts = {}
    for name in CHECKS:
        results = [r.checks[name].passed for r in reports]
        counts[name] = (
            sum(passed is False for passed in results) if any(p is not None for p in results) else None
        )
    return counts


def summary_table(
    reports: Sequence[PairReport], settings: ValidationSettings, title: str = "Rephrasing checks"
) -> Table:
    """A rich table: pairs failing each check, what that does, and how many pairs are kept."""
    table = Table(title=title)
    table.add_column("check")
    table.add_column("fails when")
    table.add_column("effect")
    table.add_column("pairs", justify="right")
    for name, count in failure_counts(reports).items():
        effect = "reports" if name in settings.report_only else "rejects"
        table.add_row(name, CHECKS[name], effect, "not run" if count is None else f"{count:,}")
    valid = sum(r.valid for r in reports)
    table.add_section()
    table.add_row("valid", "kept for training", "", f"{valid:,} of {len(reports):,}")
    table.add_row("rejected", "rephrasing_valid=False", "", f"{len(reports) - valid:,}")
    return table


def _rejecting_failures(checks: Mapping[str, CheckResult], settings: ValidationSettings) -> tuple[str, ...]:
    return tuple(name for name, r in checks.items() if r.passed is False and name not in settings.report_only)


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _without_figures(text: str) -> str:
    return _FIGURE.sub(" ", text)


def _placeholder_check(rephrasing: str, placeholders: Sequence[str]) -> CheckResult:
    text = _normalised(rephrasing)
    echoed = next((p for p in placeholders if p.strip() and _normalised(p) in text), None)
    return CheckResult(False, f"echoes the placeholder {echoed!r}") if echoed else CheckResult(True)


def _similarity(original: str, rephrasing: str) -> float:
    a = _WORD.findall(_MATH.sub(" ", _without_figures(original)).lower())
    b = _WORD.findall(_MATH.sub(" ", _without_figures(rephrasing)).lower())
    if not a:  # a question that is only mathematics: compare all of it
        a = _WORD.findall(_without_figures(original).lower())
        b = _WORD.findall(_without_figures(rephrasing).lower())
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _similarity_check(original: str, rephrasing: str, settings: ValidationSettings) -> CheckResult:
    similarity = _similarity(original, rephrasing)
    if similarity >= settings.max_similarity:
        return CheckResult(False, f"similarity {similarity:.2f} >= {settings.max_similarity:g}")
    return CheckResult(True, f"similarity {similarity:.2f} < {settings.max_similarity:g}")


def _length(text: str) -> int:
    return len(" ".join(_without_figures(text).split()))


def _length_check(original: str, rephrasing: str, settings: ValidationSettings) -> CheckResult:
    n_original, n_rephrasing = _length(original), _length(rephrasing)
    ratio = n_rephrasing / n_original if n_original else float("inf")
    if n_rephrasing < settings.min_length_ratio * n_original:
        return CheckResult(False, f"length ratio {ratio:.2f} < {settings.min_length_ratio:g}")
    limit = settings.max_length_ratio * n_original + settings.length_slack
    if n_rephrasing > limit:
        return CheckResult(
            False, f"{n_rephrasing} characters > {limit:g} allowed for an original of {n_original}"
        )
    return CheckResult(True, f"length ratio {ratio:.2f}")


def _numbers(text: str) -> set[str]:
    return {_canonical_number(n) for n in _NUMBER.findall(_THOUSANDS.sub("", text))}


def _canonical_number(number: str) -> str:
    """``007`` → ``7``, ``0.50`` → ``0.5``, ``2.0`` → ``2``."""
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    number = number.lstrip("0")
    return "0" + number if number.startswith(".") or not number else number


def _numbers_check(original: str, rephrasing: str) -> CheckResult:
    written = _numbers(rephrasing) | {
        _NUMBER_WORDS[w] for w in _WORD.findall(rephrasing.lower()) if w in _NUMBER_WORDS
    }
    missing = sorted(_numbers(_without_figures(original)) - written, key=float)
    return CheckResult(False, "missing " + ", ".join(missing)) if missing else CheckResult(True)


def _figure_check(original: str, rephrasing: str) -> CheckResult:
    if not _FIGURE.search(original):
        return CheckResult(None, "the original has no figure")
    return CheckResult(True) if _FIGURE.search(rephrasing) else CheckResult(False, "figure code dropped")


def _answer_checks(
    problems: Sequence[Problem], solver: Solver, settings: ValidationSettings
) -> list[CheckResult]:
    if not problems:
        return []
    k = settings.answer_samples
    questions = [p.question for p in problems] + [p.rephrasing for p in problems]
    completions = solver(questions, k)
    if len(completions) != len(questions) or any(len(group) != k for group in completions):
        raise ValueError(f"the solver must return {k} completions for each of the {len(questions)} questions")
    votes = majority_votes([[extract_answer(c) for c in group] for group in completions], settings.voting)
    n = len(problems)
    pairs = list(zip(votes[:n], votes[n:]))
    agree = answers_match([(a.label, b.label) for a, b in pairs], mode=settings.voting.matching)
    results = []
    for (a, b), same in zip(pairs, agree):
        detail = f"original {_vote_text(a.label, a.count, k)}, rephrasing {_vote_text(b.label, b.count, k)}"
        results.append(CheckResult(same, detail))
    return results


def _vote_text(label: str | None, count: int, k: int) -> str:
    return f"{label} ({count}/{k})" if label is not None else "no majority answer"
