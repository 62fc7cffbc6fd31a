r"""Labelled data for Cooper's reward model: a policy's completions, labelled against the reference answer.

::

    problems ──policy samples k completions each (a generation backend)──► completions
      ──rule-based verifier: ans(completion) ≡ reference (math-verify)──► label 1 / 0
      ──(optional) completions without an extractable answer go to an LLM judge──► label 1 / 0
      ──appended to a JSONL file, question by question──► ``corewarding rm train``

**Hybrid annotation** (Cooper's): the verifier is precise when it can read the final answer, so it
labels every completion whose answer it extracts. A completion it cannot parse (no ``\boxed{}``) is
wrong by the verifier's rule; with a judge backend (the transformers, vLLM or OpenAI-compatible
backends of :mod:`corewarding.inference.generation`) the judge decides it instead, from the same
question / reference / completion text the reward model reads (:data:`JUDGE_INSTRUCTION`). A judge
answer without a YES or NO leaves the verifier's label.

**The file** has one JSON object per completion (:class:`LabelledExample`): ``question_id``,
``question``, ``reference``, ``completion``, ``answer`` (extracted, or null), ``label`` (true when
correct), ``labeler`` (``verifier`` or ``judge``) and ``split``. The split is decided per question
by a hash of its id (:func:`split_of_question`), so the held-out completions answer questions the
reward model never saw in training.

**Resuming.** A question's k rows are written together; a question is done when all k are in the file.
A rerun samples only the questions not done (a run killed in the middle of a write leaves a question
incomplete: its rows are dropped and it is sampled again). The settings are kept beside the file
(``<file>.settings.json``); a rerun with other settings is refused rather than mixing two kinds of data.

Worked example::

    >>> split_of_question("arith-5c7b2d0e1f3a", 0.1), split_of_question("arith-1", 0.1)
    ('heldout', 'train')
    >>> parse_verdict("It gives 12, the reference is 12.\nYES"), parse_verdict("No."), parse_verdict("?")
    (True, False, None)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.progress import Progress

from corewarding.cooper.reward_model import TemplateBounds, reward_model_text
from corewarding.core.answers import extract_answer
from corewarding.core.equivalence import answers_match
from corewarding.core.errors import UserError
from corewarding.core.jsonl import read_jsonl, unterminated
from corewarding.core.prompts import SYSTEM_PROMPT, chat_messages
from corewarding.core.terminal import output_console
from corewarding.data.records import Problem
from corewarding.inference.generation import (
    Completion,
    GenerationBackend,
    GenerationSettings,
    completion_texts,
)

__all__ = [
    "SPLITS",
    "JUDGE_INSTRUCTION",
    "LabelledExample",
    "AnnotationSettings",
    "AnnotationRun",
    "split_of_question",
    "parse_verdict",
    "label_completions",
    "annotate",
    "read_labelled",
]

SPLITS = ("train", "heldout")

#: What the judge is asked; ``{example}`` is the reward model's own text of the completion.
JUDGE_INSTRUCTION = (
    "You check a solution against the reference answer of a math question.\n\n"
    "{example}\n\n"
    "Is the final answer of the completion mathematically equivalent to the reference answer? "
    "Answer with one word: YES or NO."
)
_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


@dataclass(frozen=True)
class LabelledExample:
    """One labelled completion (a line of the file; see the module docstring)."""

    question_id: str
    question: str
    reference: str
    completion: str
    answer: str | None
    label: bool
    labeler: str
    split: str


@dataclass(frozen=True)
class AnnotationSettings:
    """How completions are sampled and split. The defaults suit the tiny model on the synthetic task.

    Attributes:
        samples: completions per question (k).
        temperature, top_p: sampling settings (the RL rollouts' defaults: 1.0 and 1.0).
        max_new_tokens: longest completion (48, the tiny recipes' ``max_completion_length``; raise it
            for an LLM).
        heldout_fraction: share of the questions whose completions are held out (default 0.1).
        chunk_size: questions sampled per call to the sampler, and written together.
        system_prompt: the system turn of every prompt (the training runs').
        bounds: the template bounds of the judge's text.
    """

    samples: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    heldout_fraction: float = 0.1
    chunk_size: int = 32
    system_prompt: str | None = SYSTEM_PROMPT
    bounds: TemplateBounds = TemplateBounds()

    def __post_init__(self):
        if not 0.0 < self.heldout_fraction < 1.0:
            raise UserError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if self.chunk_size < 1:
            raise UserError(f"chunk_size must be at least 1, got {self.chunk_size}")
        self.sampling()  # validates the sampling settings

    def sampling(self) -> GenerationSettings:
        """The policy's sampling settings: ``samples`` completions per question."""
        return GenerationSettings(self.samples, self.temperature, self.top_p, self.max_new_tokens)


@dataclass(frozen=True)
class AnnotationRun:
    """What a call of :func:`annotate` did.

    Attributes:
        questions: questions with a reference answer asked for.
        done_before: of those, questions already complete in the file.
        no_reference: questions skipped for having no reference answer.
        written: rows written now.
        labelers: rows written now, by labeler.
        positives: rows written now labelled correct.
        judge_unclear: completions the judge answered without a verdict (verifier's label kept).
    """

    questions: int
    done_before: int
    no_reference: int
    written: int
    labelers: dict[str, int]
    positives: int
    judge_unclear: int


def split_of_question(question_id: str, heldout_fraction: float) -> str:
    """``"heldout"`` or ``"train"``, by a hash of the question id: a question's completions share a split."""
    digest = hashlib.sha256(question_id.encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") < heldout_fraction * 2**64 else "train"


def parse_verdict(text: str | None) -> bool | None:
    """The judge's verdict: its last YES or NO (any case; a thinking model reasons first), else None."""
    found = _VERDICT.findall(text or "")
    return found[-1].lower() == "yes" if found else None


def label_completions(
    questions: Sequence[str],
    references: Sequence[str],
    completions: Sequence[str],
    *,
    judge: GenerationBackend | None = None,
    judge_settings: GenerationSettings = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=1024),
    bounds: TemplateBounds = TemplateBounds(),
) -> tuple[list[bool], list[str], list[str | None], int]:
    """Hybrid labels: ``(labels, labelers, answers, judge_unclear)``, one label per completion.

    The verifier labels 1[ans(completion) ≡ reference]; with a ``judge``, the completions whose answer
    cannot be extracted are labelled by the judge instead (greedy by default).
    """
    answers = [extract_answer(c) for c in completions]
    labels = answers_match(list(zip(references, answers)))
    labelers = ["verifier"] * len(completions)
    unparsed = [i for i, a in enumerate(answers) if a is None]
    unclear = 0
    if judge is not None and unparsed:
        conversations = [
            [
                {
                    "role": "user",
                    "content": JUDGE_INSTRUCTION.format(
                        example=reward_model_text(questions[i], references[i], completions[i], bounds)
                    ),
                }
            ]
            for i in unparsed
        ]
        verdicts: dict[int, bool | None] = {}

        def on_result(position: int, completions: list[Completion]) -> None:
            [completion] = completions
            verdicts[unparsed[position]] = parse_verdict(completion.text)

        judge.generate(conversations, judge_settings, on_result)
        for i in unparsed:
            if verdicts.get(i) is None:
                unclear += 1
            else:
                labels[i], labelers[i] = verdicts[i], "judge"
    return labels, labelers, answers, unclear


def _json_line(example: LabelledExample) -> str:
    return json.dumps(asdict(example), ensure_ascii=False) + "\n"


def _settings_record(settings: AnnotationSettings, policy: str, judge: GenerationBackend | None) -> dict:
    return {"policy": policy, "judge": judge.description if judge else None, **asdict(settings)}


def _check_settings(output: Path, record: dict) -> None:
    path = output.with_name(output.name + ".settings.json")
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in record.keys() | before.keys() if record.get(k) != before.get(k))
        if changed:
            raise UserError(
                f"{output} was annotated with other settings ({', '.join(changed)}); "
                "use another output file, or the same settings to go on"
            )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))


def _complete_questions(output: Path, samples: int) -> set[str]:
    """Questions with all their rows in the file; the rows of incomplete ones are dropped from it."""
    rows = read_labelled(output)
    counts = Counter(row.question_id for row in rows)
    complete = {q for q, n in counts.items() if n >= samples}
    if len(complete) < len(counts) or unterminated(output):
        kept = [row for row in rows if row.question_id in complete]
        partial = output.with_name(output.name + ".partial")
        partial.write_text("".join(map(_json_line, kept)))
        os.replace(partial, output)
    return complete


def annotate(
    problems: Sequence[Problem],
    sampler: GenerationBackend,
    output: str | os.PathLike,
    settings: AnnotationSettings = AnnotationSettings(),
    *,
    policy: str = "",
    judge: GenerationBackend | None = None,
    judge_settings: GenerationSettings = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=1024),
    progress: bool = True,
) -> AnnotationRun:
    """Sample ``settings.samples`` completions per problem, label them, append them to ``output`` (JSONL).

    ``policy`` names the sampler's model in the settings file. Problems without a reference answer
    are skipped; problems already complete in ``output`` are not sampled again.
    """
    output = Path(output)
    _check_settings(output, _settings_record(settings, policy, judge))
    usable = [p for p in problems if p.answer is not None]
    done = _complete_questions(output, settings.samples) if output.is_file() else set()
    todo = [p for p in usable if p.id not in done]
    sampling = settings.sampling()
    labelers: Counter[str] = Counter()
    written = positives = unclear = 0
    with Progress(disable=not (progress and todo), console=output_console()) as bar:
        task = bar.add_task(f"annotating ({len(usable) - len(todo)} done before)", total=len(todo))
        for start in range(0, len(todo), settings.chunk_size):
            chunk = todo[start : start + settings.chunk_size]
            sampled = completion_texts(
                sampler.generate([chat_messages(p.question, settings.system_prompt) for p in chunk], sampling)
            )
            rows = [(p, c) for p, group in zip(chunk, sampled, strict=True) for c in group]
            labels, who, answers, judge_unclear = label_completions(
                [p.question for p, _ in rows],
                [p.answer for p, _ in rows],
                [c for _, c in rows],
                judge=judge,
                judge_settings=judge_settings,
                bounds=settings.bounds,
            )
            fraction = settings.heldout_fraction
            examples = [
                LabelledExample(
                    p.id, p.question, p.answer, c, a, label, by, split_of_question(p.id, fraction)
                )
                for (p, c), a, label, by in zip(rows, answers, labels, who)
            ]
            with output.open("a", encoding="utf-8") as file:
                file.write("".join(map(_json_line, examples)))
            written += len(examples)
            positives += sum(labels)
            labelers.update(who)
            unclear += judge_unclear
            bar.advance(task, len(chunk))
    return AnnotationRun(
        questions=len(usable),
        done_before=len(usable) - len(todo),
        no_reference=len(problems) - len(usable),
        written=written,
        labelers=dict(labelers),
        positives=positives,
        judge_unclear=unclear,
    )


def read_labelled(path: str | os.PathLike, split: str | None = None) -> list[LabelledExample]:
    """The labelled completions of a file written by :func:`annotate` (only ``split``'s when given).

    A line cut off by a killed run is skipped.
    """
    if split is not None and split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no labelled data at {path}")
    rows, skipped = read_jsonl(path, lambda row: LabelledExample(**row))
    for line in skipped:
        if not line.last:  # only the last line can be cut off by a killed run; others mean a wrong file
            raise UserError(
                f"{path}:{line.number} is not a labelled completion ({line.reason}; made by rm annotate?)"
            )
    return [row for row in rows if split is None or row.split == split]
