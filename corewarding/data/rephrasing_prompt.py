r"""The instruction that asks an LLM for a rephrasing, and reading the rephrasing out of its answer.

Co-rewarding-I pairs every training question with a rephrasing written beforehand by a strong LLM
(the paper: Qwen3-32B, temperature 0.7, top_p 0.8). :data:`DEFAULT_INSTRUCTION` asks, as the paper
describes, for different wording and a different real-world scenario with the mathematics and the
final answer unchanged, no solution, and the result between explicit start and end markers. Unlike
a literal "always change the scenario", a purely symbolic problem may stay symbolic and only be
reworded: forcing a story onto ``Simplify $(2x^3)^3$`` is how the released rephrasings came to change
the mathematics ("… then multiply that probability by 7 to represent 7 such identical factory
setups"). It also asks to copy figure code: most released rephrasings of a problem with an
``[asy]`` figure dropped the figure.

An instruction can be replaced by a text file (:meth:`Instruction.from_file`) holding ``{question}``
exactly once, and the markers. ``{question}`` is replaced literally (not ``str.format``), so LaTeX
braces in an instruction need no escaping.

:func:`parse_rephrasing` reads the rephrasing out of a completion, in this order:

1. thinking is dropped: every ``<think>…</think>`` block, everything up to a ``</think>`` whose
   ``<think>`` was in the prompt (Qwen3's template), and an unclosed ``<think>`` to the end;
2. every start marker opens a candidate, closed by the next end marker or, when there is none, by
   the end of the text (a missing end marker is forgiven, unless the completion was cut off at the
   token limit: then the rephrasing is probably cut off too); markers may be set in bold
   (``**[REPHRASED]**``) and are matched without regard to case;
3. the last candidate that is not empty and not the placeholder wins: a model that echoes the
   instruction (whose format block holds the placeholder) and then answers is read correctly; when
   every candidate is the placeholder, the placeholder is returned, and the placeholder check of
   :mod:`corewarding.data.rephrasing_checks` rejects it;
4. a code fence around the rephrasing is removed.

No start marker means no rephrasing: text without markers may be a preamble, a solution or a refusal.

Worked example::

    >>> parse_rephrasing("<think>Hmm.</think>Sure!\n[REPHRASED]\nA baker has 3 pies...\n[/REPHRASED]")
    ParsedRephrasing(text='A baker has 3 pies...', problem=None)
    >>> parse_rephrasing("I cannot help with that.")
    ParsedRephrasing(text=None, problem='no start marker [REPHRASED]')
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from corewarding.core.errors import UserError

__all__ = [
    "DEFAULT_INSTRUCTION",
    "REFERENCE_PLACEHOLDER",
    "Instruction",
    "InstructionError",
    "ParsedRephrasing",
    "parse_rephrasing",
]

#: The placeholder of the reference pipeline's instruction; 19 released MATH and 45 DAPO rephrasings are it.
REFERENCE_PLACEHOLDER = "<rewritten question>"

_QUESTION = "{question}"

_DEFAULT_TEMPLATE = """\
Rewrite the math problem below as a new problem with exactly the same mathematics.

- Use different wording. If the problem tells a story or has a real-world setting, move it to a \
different real-world scenario (other people, objects and context). If it is purely symbolic, reword \
the sentences around the mathematics and keep the expressions.
- Keep the mathematics unchanged: every number, quantity, expression and condition, the question \
asked and any instruction on the form of the answer, so that the final answer stays the same. Keep \
LaTeX as LaTeX and copy any figure code (such as an [asy] block) unchanged.
- Do not solve the problem, give hints, or state the answer.

Problem:
{question}

Reply with the rewritten problem only, in exactly this format:
[REPHRASED]
<rewritten problem>
[/REPHRASED]"""


class InstructionError(UserError):
    """An instruction that cannot work as given (one line)."""


@dataclass(frozen=True)
class Instruction:
    """The text sent to the rephrasing model, and where its answer is found.

    Attributes:
        template: the instruction, with ``{question}`` exactly once where the question goes.
        start_marker, end_marker: what the answer's rephrasing sits between; both must appear in
            the template (it has to show the model the format).
        placeholder: what the template's format block puts between the markers; a model that echoes
            it has not answered.
    """

    template: str
    start_marker: str = "[REPHRASED]"
    end_marker: str = "[/REPHRASED]"
    placeholder: str = "<rewritten problem>"

    def __post_init__(self) -> None:
        count = self.template.count(_QUESTION)
        if count != 1:
            raise InstructionError(f"an instruction must contain {_QUESTION} exactly once, found {count}")
        for name in ("start_marker", "end_marker"):
            marker = getattr(self, name)
            if not marker.strip():
                raise InstructionError(f"the {name.replace('_', ' ')} is empty")
            if marker.lower() not in self.template.lower():
                raise InstructionError(
                    f"the instruction never shows the {name.replace('_', ' ')} {marker!r}: "
                    f"add it to the instruction's answer format or pass the marker it uses"
                )

    @classmethod
    def from_file(cls, path: str | os.PathLike, **markers: str) -> Instruction:
        """An instruction from a UTF-8 text file; ``markers`` override the default markers and placeholder."""
        path = Path(path)
        try:
            template = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise InstructionError(f"cannot read the instruction file {path}: {error}") from None
        try:
            return cls(template, **markers)
        except InstructionError as error:
            raise InstructionError(f"{path}: {error}") from None

    def render(self, question: str) -> str:
        """The instruction for one question."""
        return self.template.replace(_QUESTION, question)

    def fingerprint(self, question: str) -> str:
        """SHA-256 (hex) of everything that decides what is sent for ``question`` and how the answer is read.

        >>> fingerprint = DEFAULT_INSTRUCTION.fingerprint("What is 2+3?")
        >>> len(fingerprint), fingerprint == DEFAULT_INSTRUCTION.fingerprint("What is 2+4?")
        (64, False)
        """
        material = json.dumps([self.template, self.start_marker, self.end_marker, question])
        return hashlib.sha256(material.encode("utf-8")).hexdigest()


#: The instruction used unless one is given.
DEFAULT_INSTRUCTION = Instruction(_DEFAULT_TEMPLATE)


@dataclass(frozen=True)
class ParsedRephrasing:
    """What :func:`parse_rephrasing` found: the rephrasing, or why there is none."""

    text: str | None
    problem: str | None = None


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)
_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)
_FENCE_OPEN = re.compile(r"\A```[\w-]*[ \t]*\n")
_FENCE_CLOSE = re.compile(r"\n```\s*\Z")


def parse_rephrasing(
    completion: str | None, instruction: Instruction = DEFAULT_INSTRUCTION, *, truncated: bool = False
) -> ParsedRephrasing:
    """The rephrasing in a completion (see the module docstring for the rules).

    ``truncated``: the completion stopped at the token limit; a rephrasing without its end marker is
    then refused as probably cut off.
    """
    text = _without_thinking(completion or "")
    if not text.strip():
        thought = completion and _THINK_OPEN.search(completion)
        return ParsedRephrasing(None, "the output ended while thinking" if thought else "empty output")
    start = _marker(instruction.start_marker)
    end = _marker(instruction.end_marker)
    openings = list(start.finditer(text))
    if not openings:
        return ParsedRephrasing(None, f"no start marker {instruction.start_marker}")
    candidates = []
    for opening in openings:
        closing = end.search(text, opening.end())
        body = _unfenced(text[opening.end() : closing.start() if closing else len(text)].strip())
        candidates.append((body, closing is not None))
    placeholder = instruction.placeholder.strip().lower()
    answers = [(body, closed) for body, closed in candidates if body and body.lower() != placeholder]
    if not answers:
        body = candidates[-1][0]
        return ParsedRephrasing(body, None) if body else ParsedRephrasing(None, "nothing between the markers")
    body, closed = answers[-1]
    if truncated and not closed:
        return ParsedRephrasing(
            None, f"cut off at the token limit before the end marker {instruction.end_marker}"
        )
    return ParsedRephrasing(body)


def _marker(marker: str) -> re.Pattern:
    return re.compile(r"(?:\*\*)?" + re.escape(marker) + r"(?:\*\*)?", re.I)


def _without_thinking(text: str) -> str:
    text = _THINK_BLOCK.sub("", text)
    closings = list(_THINK_CLOSE.finditer(text))
    if closings:  # the <think> was part of the prompt (Qwen3's chat template opens it there)
        text = text[closings[-1].end() :]
    opening = _THINK_OPEN.search(text)
    return text[: opening.start()] if opening else text


def _unfenced(body: str) -> str:
    """``body`` without a code fence around it; a lone opening or closing fence goes too."""
    body = _FENCE_OPEN.sub("", body, count=1)
    return _FENCE_CLOSE.sub("", body, count=1).strip()
