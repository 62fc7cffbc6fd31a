"""The rephrasing pipeline: questions → an LLM's rephrasings (resumable) → checks → a pair dataset on disk.

::

    problems ──render the instruction──► backend ──each completion, as it arrives──► cache (JSONL)
    cache ──parse_rephrasing──► problems with rephrasings ──validate_pairs──► reports ──► pair dataset

**Resuming.** Every completion is appended to a JSONL cache the moment it arrives (one line: the pair
id, the instruction fingerprint, the raw completion, whether it was cut off, the backend, the time).
A row is looked up by its pair id *and* :meth:`~corewarding.data.rephrasing_prompt.Instruction.fingerprint`
(a hash of the instruction, its markers and the original text), so an interrupted run sends only
what it has no completion for, and an edited question or instruction is sent again. A failed request
is not cached: the next run retries it. Completions are cached raw, so parsing and the checks can
change without sending anything again. A cache line that cannot be read (cut off by a killed process,
possibly inside a multibyte character; a junk byte) is skipped, its question sent again, and the run
says how many lines of which file it skipped (:meth:`RephrasingRun.cache_summary`).

**The pair dataset** (:func:`pair_rows`, written as JSONL or parquet by :func:`write_pair_dataset`)
has one row per question, with the columns of the ``pairs`` preset of
:mod:`corewarding.data.loaders`, so ``load_problems`` reads it back with ``rephrasing`` and
``rephrasing_valid`` set:

=====================  ==========================================================================
column                 holds
=====================  ==========================================================================
``idx``                the pair id (``Problem.id``)
``original_question``  the question
``rephrased_question`` the rephrasing, or null when there is none
``solution``           the reference answer in canonical form, or null
``rephrasing_valid``   the verdict: true when no rejecting check failed
``rejected_by``        the rejecting checks that failed
``flagged_by``         the reporting checks that failed
``checks``             every check: ``{name: {"passed": true/false/null, "detail": "…"}}``
(meta)                 the problem's ``meta`` (level, type, …)
=====================  ==========================================================================
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from rich.progress import Progress

from corewarding.core.errors import UserError
from corewarding.core.jsonl import SkippedLine, describe_skipped, read_jsonl, unterminated
from corewarding.core.prompts import SYSTEM_PROMPT, chat_messages
from corewarding.core.terminal import output_console
from corewarding.data.records import Problem
from corewarding.data.rephrasing_checks import PairReport, Solver
from corewarding.data.rephrasing_prompt import DEFAULT_INSTRUCTION, Instruction, parse_rephrasing
from corewarding.inference.generation import (
    Completion,
    GenerationBackend,
    GenerationSettings,
    completion_texts,
)

__all__ = [
    "REPHRASING_SETTINGS",
    "CachedCompletion",
    "CompletionCache",
    "RephrasingRun",
    "backend_solver",
    "pair_rows",
    "rephrase_problems",
    "write_pair_dataset",
]


#: The paper's rephrasing settings (Qwen3-32B): temperature 0.7, top-p 0.8, room for its thinking.
REPHRASING_SETTINGS = GenerationSettings(temperature=0.7, top_p=0.8, max_new_tokens=4096)


@dataclass(frozen=True)
class CachedCompletion:
    """One line of the cache."""

    id: str
    fingerprint: str
    text: str
    truncated: bool
    backend: str
    created: str


class CompletionCache:
    """An append-only JSONL file of completions, looked up by (pair id, instruction fingerprint).

    Appends are thread-safe and reach the file at once (opened, written, closed per line), so a
    killed run keeps everything it had received. Lines that cannot be read (cut off by a killed run,
    a junk byte, not a cached completion) are skipped and listed in ``skipped_lines``
    (:func:`~corewarding.core.jsonl.read_jsonl`); their questions are sent again.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], CachedCompletion] = {}
        self.skipped_lines: list[SkippedLine] = []
        # A line cut off by a killed run has no newline: the next append must not be glued to it.
        self._cut_off = unterminated(self.path)
        if self.path.is_file():
            entries, self.skipped_lines = read_jsonl(self.path, lambda row: CachedCompletion(**row))
            self._entries = {(entry.id, entry.fingerprint): entry for entry in entries}

    def get(self, id: str, fingerprint: str) -> CachedCompletion | None:
        return self._entries.get((id, fingerprint))

    def add(self, entry: CachedCompletion) -> None:
        line = json.dumps(asdict(entry), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write("\n" + line if self._cut_off else line)
            self._cut_off = False
            self._entries[entry.id, entry.fingerprint] = entry

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class RephrasingRun:
    """What :func:`rephrase_problems` made.

    Attributes:
        problems: the input problems, ``rephrasing`` set from the parsed completions (None where
            there is none).
        output_problems: pair id → why it has no rephrasing (failed request, unparsable output),
            for :func:`~corewarding.data.rephrasing_checks.validate_pairs`.
        sent: completions asked for in this run; ``failed`` of them did not come back.
        failures: why they did not: each distinct error → how many requests failed with it, the
            most frequent first.
        cached: rows answered from the cache.
        other_backends: cached rows written by another backend than this run's.
        cache: the cache file.
        skipped_cache_lines: the cache's lines that could not be read (their questions were sent again).
    """

    problems: list[Problem]
    output_problems: dict[str, str]
    sent: int
    failures: dict[str, int]
    cached: int
    other_backends: int
    cache: Path
    skipped_cache_lines: list[SkippedLine]

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def failure_summary(self, shown: int = 3) -> str:
        """One line: how many requests failed and why (the ``shown`` most frequent causes, counted
        when there are several), e.g. ``3 requests failed: cannot connect to http://localhost:8000/v1:
        connection refused (after 6 attempts)``."""
        causes = list(self.failures.items())
        if len(causes) == 1:
            reasons = causes[0][0]
        else:
            reasons = "; ".join(f"{count:,}x {cause}" for cause, count in causes[:shown])
            if len(causes) > shown:
                reasons += f"; {len(causes) - shown:,} other causes"
        noun = "request" if self.failed == 1 else "requests"
        return f"{self.failed:,} {noun} failed: {reasons}"

    def cache_summary(self) -> str | None:
        """One line naming the cache file and the lines of it that were skipped; None when none were."""
        return describe_skipped(self.cache, self.skipped_cache_lines) if self.skipped_cache_lines else None


def rephrase_problems(
    problems: Sequence[Problem],
    backend: GenerationBackend,
    cache_path: str | os.PathLike,
    *,
    instruction: Instruction = DEFAULT_INSTRUCTION,
    settings: GenerationSettings = REPHRASING_SETTINGS,
    progress: bool = True,
) -> RephrasingRun:
    """Rephrase every problem not in the cache yet, appending each completion to the cache as it arrives.

    An exception (an interrupt, a :class:`~corewarding.inference.generation.BackendError`) propagates after
    everything received so far is cached; running the same call again continues.
    """
    if settings.n != 1:
        raise UserError(f"a question gets one rephrasing: settings.n must be 1, got {settings.n}")
    cache = CompletionCache(cache_path)
    fingerprints = [instruction.fingerprint(p.question) for p in problems]
    cached = [cache.get(p.id, fingerprint) for p, fingerprint in zip(problems, fingerprints)]
    pending = [i for i, entry in enumerate(cached) if entry is None]
    conversations = [[{"role": "user", "content": instruction.render(problems[i].question)}] for i in pending]
    errors: dict[str, str] = {}

    with Progress(disable=not (progress and pending), console=output_console()) as bar:
        task = bar.add_task(f"rephrasing ({len(problems) - len(pending)} cached)", total=len(pending))

        def on_result(position: int, completions: list[Completion]) -> None:
            [completion] = completions
            i = pending[position]
            if completion.text is None:
                errors[problems[i].id] = completion.error or "no completion"
            else:
                cache.add(
                    CachedCompletion(
                        problems[i].id,
                        fingerprints[i],
                        completion.text,
                        completion.truncated,
                        backend.description,
                        datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    )
                )
            bar.advance(task)

        if conversations:
            backend.generate(conversations, settings, on_result)

    rephrased, output_problems = [], {}
    for problem, fingerprint in zip(problems, fingerprints):
        entry = cache.get(problem.id, fingerprint)
        if entry is None:
            output_problems[problem.id] = f"request failed: {errors.get(problem.id, 'no completion')}"
            rephrased.append(replace(problem, rephrasing=None))
            continue
        parsed = parse_rephrasing(entry.text, instruction, truncated=entry.truncated)
        if parsed.text is None:
            output_problems[problem.id] = parsed.problem
        rephrased.append(replace(problem, rephrasing=parsed.text))
    reused = [entry for entry in cached if entry is not None]
    return RephrasingRun(
        problems=rephrased,
        output_problems=output_problems,
        sent=len(pending),
        failures=dict(Counter(errors.values()).most_common()),
        cached=len(reused),
        other_backends=sum(entry.backend != backend.description for entry in reused),
        cache=cache.path,
        skipped_cache_lines=cache.skipped_lines,
    )


def backend_solver(
    backend: GenerationBackend, settings: GenerationSettings, system_prompt: str | None = SYSTEM_PROMPT
) -> Solver:
    """A :class:`~corewarding.data.rephrasing_checks.Solver` on a backend: ``k`` completions per question.

    Questions go out with the training system prompt (answer in ``\\boxed{}``); a failed request
    counts as a completion without an answer. Solver completions are not cached. With greedy
    ``settings`` each question is asked once and its answer counted ``k`` times (the ``k`` greedy
    answers would be alike).
    """

    def solve(questions: Sequence[str], k: int) -> list[list[str]]:
        conversations = [chat_messages(q, system_prompt) for q in questions]
        if settings.greedy:
            return [group * k for group in completion_texts(backend.generate(conversations, settings))]
        return completion_texts(backend.generate(conversations, replace(settings, n=k)))

    return solve


def pair_rows(problems: Sequence[Problem], reports: Sequence[PairReport]) -> list[dict]:
    """The pair dataset's rows (columns in the module docstring)."""
    rows = []
    for problem, report in zip(problems, reports, strict=True):
        row = {
            "idx": problem.id,
            "original_question": problem.question,
            "rephrased_question": problem.rephrasing,
            "solution": problem.answer,
            "rephrasing_valid": report.valid,
            "rejected_by": list(report.rejected_by),
            "flagged_by": list(report.flagged_by),
            "checks": {name: {"passed": r.passed, "detail": r.detail} for name, r in report.checks.items()},
        }
        rows.append(row | {k: v for k, v in problem.meta.items() if k not in row})
    return rows


def write_pair_dataset(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    """Write rows as JSONL (``.jsonl``) or parquet (``.parquet``), atomically: a crash leaves no half file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise UserError(
            f"cannot write a pair dataset as {suffix or 'a file without suffix'} ({path}): "
            "use .jsonl or .parquet"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    if suffix == ".jsonl":
        with partial.open("w", encoding="utf-8") as file:
            file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows)), partial)
    os.replace(partial, path)
    return path
