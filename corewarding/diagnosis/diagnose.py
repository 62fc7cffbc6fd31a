"""``diagnose``: the measurements, the probe and the verdict of one model on one set of questions.

The steps, each its own module: :func:`~corewarding.diagnosis.measurements.sample_views` draws the
answers; :func:`~corewarding.diagnosis.measurements.label_free_measurements` and, where every question
has a reference answer, :func:`~corewarding.diagnosis.measurements.labelled_measurements` measure
them; :func:`~corewarding.diagnosis.probe.run_probe` runs a short majority-vote training (optional);
:func:`~corewarding.diagnosis.verdict.judge` turns the figures into advice. The record returned is
what ``corewarding diagnose -o`` writes: ``recommended`` (method names, possibly none),
``ranking``, ``verdicts`` (per method: expected outcome and why) and ``measurements`` (every figure).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from corewarding.core.prompts import SYSTEM_PROMPT
from corewarding.data.records import Problem
from corewarding.diagnosis.measurements import label_free_measurements, labelled_measurements, sample_views
from corewarding.diagnosis.probe import run_probe
from corewarding.diagnosis.verdict import LABEL_FREE_EVIDENCE, VerdictRules, judge
from corewarding.inference.generation import GenerationBackend

__all__ = ["diagnose"]


def diagnose(
    model: str,
    dataset: str,
    problems: Sequence[Problem],
    backend: GenerationBackend,
    *,
    k: int = 8,
    temperature: float = 1.0,
    max_new_tokens: int = 48,
    probe_steps: int = 0,
    seed: int = 0,
    matching: str = "equivalence",
    system_prompt: str | None = SYSTEM_PROMPT,
    answer_extraction: str = "boxed",
    rules: VerdictRules = VerdictRules(),
    progress: bool = False,
) -> dict:
    """Diagnose ``model`` (served by ``backend``) on ``problems`` of ``dataset`` (module docstring).

    Answers are measured only when every problem has one. ``progress``: show progress bars of the
    sampling and of the probe. Returns the JSON-ready record."""
    started = time.perf_counter()
    answers, failed = sample_views(
        problems, backend, k=k, temperature=temperature, max_new_tokens=max_new_tokens,
        system_prompt=system_prompt, answer_extraction=answer_extraction, progress=progress,
    )
    sampled = time.perf_counter()
    references = [p.answer for p in problems]
    measurements = {
        "label_free": label_free_measurements(answers, matching),
        "labelled": (
            labelled_measurements(answers, references, matching) if None not in references else None
        ),
        "probe": None,
    }
    if probe_steps:
        from rich.progress import Progress

        from corewarding.training.progress import progress_display

        # A disabled display still replaces TRL's per-step printing.
        display = progress_display() if progress else Progress(disable=True)
        with tempfile.TemporaryDirectory(prefix="corewarding-probe-") as folder, display as bar:
            measurements["probe"] = run_probe(
                model, dataset, problems, probe_steps, Path(folder), seed=seed, progress=bar,
                answers=["--system_prompt", system_prompt or "", "--answer_extraction", answer_extraction,
                         "--answer_matching", matching],
            )
    verdict = judge(measurements, rules).to_dict()
    return {
        "model": model, "dataset": dataset, "seed": seed, "num_questions": len(problems), "k": k,
        "temperature": temperature, "max_new_tokens": max_new_tokens, "matching": matching,
        "has_answers": measurements["labelled"] is not None,
        "has_rephrasings": answers.rephrasing is not None,
        "failed_completions": failed,
        "recommended": verdict["recommended"],
        "reason": verdict["reason"],
        "ranking": verdict["ranking"],
        "basis": verdict["basis"],
        "label_free_evidence": LABEL_FREE_EVIDENCE if verdict["basis"] == "label-free" else None,
        "verdicts": verdict["methods"],
        "measurements": measurements,
        "seconds": {
            "sampling": round(sampled - started, 1),
            "probe": measurements["probe"]["seconds"] if measurements["probe"] else 0.0,
            "total": round(time.perf_counter() - started, 1),
        },
    }
