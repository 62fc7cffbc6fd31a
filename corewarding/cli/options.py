"""Options several commands share, declared once: each group is a dataclass whose fields are the
options (name, type, help, default), handed to a command as one object by :func:`option_group`."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from corewarding.cli.app import quiet_libraries
from corewarding.core.answers import ANSWER_EXTRACTIONS
from corewarding.core.errors import UserError, unknown_choice
from corewarding.core.prompts import SYSTEM_PROMPT
from corewarding.core.voting import MATCHING_MODES
from corewarding.data.rephrasing_checks import ValidationSettings

__all__ = [
    "option_group", "BackendOptions", "AnswerOptions", "ValidationOptions", "Columns", "Threads",
    "make_backend", "check_writable", "busy_cores", "default_threads", "start_torch",
]

#: The column mapping, one option in every command: ``--dataset-columns`` (``dataset_columns`` in a
#: training recipe), ``--columns`` for short.
Columns = Annotated[
    str | None,
    typer.Option(
        "--dataset-columns", "--columns",
        help="Column preset (verl, pairs, svamp, asdiv, qa), or the columns: "
        "question=COL[,answer=COL][,id=COL] (question=A+B joins two). Detected when not given.",
    ),
]


#: torch's CPU threads, the same option in every command that computes with torch.
Threads = Annotated[
    int | None,
    typer.Option(
        min=1, help="CPU threads for torch. Default: the cores no other process is using (CPU count less "
        "the cores busy now, at least 1), or OMP_NUM_THREADS when set.",
    ),
]


#: How long :func:`busy_cores` watches the CPUs: long enough for a few scheduler ticks on every core.
BUSY_WINDOW_S = 0.1


def cpu_ticks(stat: Path = Path("/proc/stat")) -> tuple[int, int, int] | None:
    """(busy, total) CPU ticks since boot summed over every core, and the number of cores, from Linux's
    ``/proc/stat`` (its ``cpu`` line: user nice system idle iowait irq softirq steal ...; idle and
    iowait are not busy); None where there is no such file."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    ticks = [int(value) for value in lines[0].split()[1:9]]
    cores = sum(1 for line in lines[1:] if line.startswith("cpu"))
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks), cores


def busy_cores(window_s: float = BUSY_WINDOW_S) -> float:
    """How many cores other processes keep busy now: the busy share of the CPU ticks over ``window_s``
    (this process sleeps meanwhile) times the cores; the 1-minute load average where ``/proc/stat`` is
    missing (macOS). The load average lags by a minute: just after a job ends it still counts it, and a
    demo started then would run on half the cores throughout."""
    before = cpu_ticks()
    if before is None:
        return os.getloadavg()[0]
    time.sleep(window_s)
    after = cpu_ticks()
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * after[2] if total > 0 else 0.0


def default_threads() -> int | None:
    """The one rule for ``--threads`` left unset, in every command: the cores no other process is using,
    the CPU count less :func:`busy_cores` (rounded, at least 1); None (torch's own count) where
    ``OMP_NUM_THREADS`` is set, as torchrun sets it for each of its processes.

    Measured (docs/launch_modes.md, "CPU threads"): on 2 cores shared with other jobs, torch's default
    of one thread per core made steps of the tiny model several times slower than one thread (the threads
    wait on each other for a core); on cores left idle, more threads are faster."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - round(busy_cores()))


def start_torch(threads: int | None) -> None:
    """Import torch and transformers for a command, quiet, with ``threads`` CPU threads
    (:func:`default_threads` when None). Called after the command's own checks, so that a mistake is
    reported before seconds of imports."""
    import torch

    quiet_libraries()
    threads = threads or default_threads()
    if threads is not None:
        torch.set_num_threads(threads)


def check_writable(path: Path, option: str) -> None:
    """Fail now, not after the work, when a result file could not be written there."""
    if path.is_dir():
        raise IsADirectoryError(
            f"{option} {path} is a folder: give a file name, e.g. {path / 'results.json'}"
        )
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"{option} {path}: {folder} is a file, not a folder")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise PermissionError(f"{option} {path} cannot be written")


def option_group(cls, parameter: str, prefix: str = "", **defaults):
    """Decorate a command: the fields of the dataclass ``cls`` become its options (named ``prefix`` +
    field, defaults overridable by ``defaults``), and the command receives them as ``parameter=cls(…)``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    group = [
        inspect.Parameter(
            prefix + f.name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(f.name, f.default),
            annotation=hints[f.name],
        )
        for f in dataclasses.fields(cls)
    ]

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {f.name: kwargs.pop(prefix + f.name) for f in dataclasses.fields(cls)}
            return command(*args, **{parameter: cls(**values)}, **kwargs)

        own = [p for p in signature.parameters.values() if p.name != parameter]
        wrapper.__signature__ = signature.replace(parameters=own + group)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + group}
        return wrapper

    return decorate


@dataclass(frozen=True)
class BackendOptions:
    """Where generations come from: ``--backend`` and the settings of each kind."""

    backend: Annotated[
        str, typer.Option(help="transformers, vllm or openai (an OpenAI-compatible endpoint).")
    ] = "transformers"
    base_url: Annotated[str, typer.Option(help="Endpoint root, /v1 included (openai).")] = "http://localhost:8000/v1"
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key (openai; not set: no key).")
    ] = "OPENAI_API_KEY"
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once (openai).")] = 8
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one request (openai).")] = 300.0
    max_attempts: Annotated[int, typer.Option(help="Attempts per request before it fails (openai).")] = 6
    extra_body: Annotated[
        str,
        typer.Option(
            help='JSON added to every request, e.g. {"chat_template_kwargs": {"enable_thinking": false}}.'
        ),
    ] = "{}"
    batch_size: Annotated[int, typer.Option(help="Sequences per generate call (transformers).")] = 64


@dataclass(frozen=True)
class AnswerOptions:
    """How a command asks for answers and compares them: the system prompt, answer extraction, matching."""

    system_prompt: Annotated[
        str, typer.Option(help="The system turn of every prompt ('' for none).")
    ] = SYSTEM_PROMPT
    answer_extraction: Annotated[
        str,
        typer.Option(help="Where a completion's answer is: boxed (\\boxed{} or ####), boxed_or_last_number "
                     "(base models), last_number (small models that never box)."),
    ] = "boxed"
    matching: Annotated[
        str, typer.Option(help="equivalence (math-verify) or exact answer matching.")
    ] = "equivalence"

    def __post_init__(self):
        if self.matching not in MATCHING_MODES:
            raise unknown_choice("--matching", self.matching, MATCHING_MODES)
        if self.answer_extraction not in ANSWER_EXTRACTIONS:
            raise unknown_choice("--answer-extraction", self.answer_extraction, ANSWER_EXTRACTIONS)


def make_backend(model: str, options: BackendOptions, seed: int = 0):
    """The generation backend the options name, for ``model`` (``tiny`` is the shipped tiny model)."""
    from corewarding.inference.generation import OpenAIBackend, TransformersBackend, VLLMBackend

    if options.backend == "openai":
        try:
            body = json.loads(options.extra_body)
        except json.JSONDecodeError as error:
            raise UserError(f"--extra-body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise UserError("--extra-body must be a JSON object")
        return OpenAIBackend(
            options.base_url, model, api_key_env=options.api_key_env or None, concurrency=options.concurrency,
            timeout_s=options.timeout, max_attempts=options.max_attempts, extra_body=body,
        )
    if options.backend == "transformers":
        return TransformersBackend.load(model, batch_size=options.batch_size, seed=seed)
    if options.backend == "vllm":
        return VLLMBackend(model, seed=seed)
    raise unknown_choice("--backend", options.backend, ("openai", "transformers", "vllm"))


_DEFAULT_CHECKS = ValidationSettings()


@dataclass(frozen=True)
class ValidationOptions:
    """The rephrasing checks of ``rephrase`` and ``validate-pairs`` (defaults: ValidationSettings')."""

    max_similarity: Annotated[
        float, typer.Option(help="Prose-word similarity at or above which a rephrasing is a near-copy.")
    ] = _DEFAULT_CHECKS.max_similarity
    min_length_ratio: Annotated[
        float, typer.Option(help="Shortest rephrasing, as a share of the original's length.")
    ] = _DEFAULT_CHECKS.min_length_ratio
    max_length_ratio: Annotated[
        float,
        typer.Option(help="Longest rephrasing: this many times the original's length, plus --length-slack."),
    ] = _DEFAULT_CHECKS.max_length_ratio
    length_slack: Annotated[
        int, typer.Option(help="Characters a rephrasing may add beyond --max-length-ratio.")
    ] = _DEFAULT_CHECKS.length_slack
    reject_missing_numbers: Annotated[
        bool, typer.Option(help="Reject, not just report, rephrasings missing a number of the original.")
    ] = False
    reject_dropped_figures: Annotated[
        bool, typer.Option(help="Reject, not just report, rephrasings that drop the original's figure code.")
    ] = False
    only_valid: Annotated[
        bool, typer.Option(help="Write only the pairs that passed every rejecting check.")
    ] = False

    def settings(self, placeholders: tuple[str, ...] = (), answer_samples: int = 0) -> ValidationSettings:
        rejected = {"numbers": self.reject_missing_numbers, "figure": self.reject_dropped_figures}
        defaults = _DEFAULT_CHECKS
        return ValidationSettings(
            max_similarity=self.max_similarity,
            min_length_ratio=self.min_length_ratio,
            max_length_ratio=self.max_length_ratio,
            length_slack=self.length_slack,
            placeholders=defaults.placeholders
            + tuple(p for p in placeholders if p not in defaults.placeholders),
            report_only=frozenset(name for name in defaults.report_only if not rejected.get(name)),
            answer_samples=answer_samples or defaults.answer_samples,
        )
