"""Final answers: extracting them from completions and reference solutions, and their canonical form.

Every label-free reward starts here: ``ans(y)`` in the paper's notation is :func:`extract_answer`.
The functions are pure, linear in the length of the text, and never raise on model output.

Worked examples::

    >>> extract_answer(r"so the total is \\boxed{\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract_answer("Natalia sold 48/2 = 24 clips in May.\\n#### 1,234")
    '1234'
    >>> extract_answer("The answer is 42") is None     # no box: no answer, unless asked to fall back
    True
    >>> extract_answer("The answer is 42", "boxed_or_last_number")
    '42'
    >>> extract_answer(r"23 + 37 = 60, so \\boxed{6}", "last_number")   # the last number, boxed or not
    '6'
    >>> reference_answer("9 (apples)"), reference_answer(142.0)
    ('9', '142')
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from corewarding.core.lru import ByteLRU

__all__ = [
    "ANSWER_EXTRACTIONS", "extract_answer", "reference_answer", "canonical_answer", "last_boxed",
    "numbers_in", "answer_in_question_share",
]

#: How a completion's final answer is found (:func:`extract_answer`), the setting ``answer_extraction``.
ANSWER_EXTRACTIONS = ("boxed", "boxed_or_last_number", "last_number")

_BOX_COMMANDS = (r"\boxed", r"\fbox")
# A number as written in solutions: 1,234.5 or -0.75 or 3/4 (the last-number fallback only).
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_RE = re.compile(r"-?\d+\.\d*")
_LETTER_RE = re.compile(r"[A-Za-z]")
_SPACING_RE = re.compile(r"\\[,;:! ]|\\(?:left|right)(?![A-Za-z])|\s+")


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{…}`` / ``\fbox{…}`` (nested braces allowed), or of ``\boxed 5``.

    Returns None when there is no box, the last box is never closed (a truncated completion), or it
    is empty: a model that writes ``\boxed{}`` has not answered.
    """
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
    i = start + len(cmd)
    n = len(text)
    if i < n and text[i] == "{":
        depth = 0
        for j in range(i, n):
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    content = text[i + 1 : j].strip()
                    return content or None
        return None
    # "\boxed 5": a single space-separated token, as in the MATH dataset's own solutions.
    if i < n and text[i] == " ":
        token = text[i:].lstrip(" ").split(maxsplit=1)
        content = token[0].rstrip("$.,") if token else ""
        return content or None
    return None


def _gsm8k_answer(text: str) -> str | None:
    matches = _GSM8K_RE.findall(text)
    if not matches:
        return None
    content = matches[-1].strip().rstrip(".")
    return content or None


def _last_number(text: str) -> str | None:
    last = None
    for last in _NUMBER_RE.finditer(text):
        pass
    return last.group(0).rstrip(",") if last else None


def numbers_in(text: str) -> frozenset[str]:
    """The canonical form of every number written in ``text``, with and without a leading minus (in
    ``10-5`` the 5 is written too). An answer among the numbers of its question was often copied from
    it: the last-number echo of a collapsed run (``23 + 20 = ?`` answers 20).

        >>> sorted(numbers_in("What is 23 + 1,200? Then subtract 4.50."))
        ['1200', '23', '4.5']
    """
    found = (canonical_answer(n.rstrip(",")) for n in _NUMBER_RE.findall(text))
    return frozenset(m for n in found for m in (n, n.lstrip("-")))


def answer_in_question_share(answers: Sequence[str | None], questions: Sequence[str | None]) -> float:
    """The share of answers that are a number of their own question (:func:`numbers_in`); a missing answer
    or question counts as not copied. Each distinct question is read once (a group repeats it G times).

        >>> answer_in_question_share(["20", "43", None], ["What is 23 + 20?"] * 3)
        0.3333333333333333
    """
    if not answers:
        return 0.0
    numbers = {q: numbers_in(q) for q in set(questions) if q is not None}
    return sum(a is not None and q is not None and canonical_answer(a) in numbers[q]
               for a, q in zip(answers, questions)) / len(answers)


def extract_answer(text: str | None, extraction: str = "boxed") -> str | None:
    r"""``ans(y)``: the final answer of a completion, in :func:`canonical_answer` form, or None.

    ``extraction`` (one of :data:`ANSWER_EXTRACTIONS`) says where the answer is:

    * ``boxed`` (the paper's): the last ``\boxed{…}`` or ``\fbox{…}`` (what the system prompt asks
      for), else GSM8K's last ``#### <answer>`` line; nothing else counts. Right for models that follow
      the boxing instruction: a model that forgets the box is not rewarded for whatever number it wrote
      last, which label-free rewards would otherwise teach it (to stop boxing).
    * ``boxed_or_last_number``: as ``boxed``, else the last number in the text. For evaluating models
      never asked to box (few-shot base models).
    * ``last_number``: the last number in the text (``-1,234.5``, ``3/4``), boxed or not. For small
      models that answer in terse lines (``23 + 37 = 60``) and never box, such as SmolLM2-135M on the
      arithmetic task of :mod:`corewarding.data.arithmetic`.
    """
    if extraction not in ANSWER_EXTRACTIONS:
        raise ValueError(f"unknown answer extraction {extraction!r}: one of {', '.join(ANSWER_EXTRACTIONS)}")
    if not text:
        return None
    if extraction == "last_number":
        answer = _last_number(text)
    else:
        answer = last_boxed(text)
        if answer is None:
            answer = _gsm8k_answer(text)
        if answer is None and extraction == "boxed_or_last_number":
            answer = _last_number(text)
    if answer is None:
        return None
    return canonical_answer(answer) or None


def reference_answer(raw: object) -> str | None:
    r"""The reference answer of a dataset row, in canonical form.

    Accepts a whole worked solution (MATH's ``\boxed{}``, GSM8K's ``#### 18``) or a bare answer
    (AMC's ``142.0`` — also as a float —, ASDiv's ``9 (apples)``, MATH ground truths such as
    ``\frac{1}{2}``). None for an empty or missing value.
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    answer = extract_answer(text)
    if answer is not None:
        return answer
    return canonical_answer(_without_trailing_unit(text)) or None


def _without_trailing_unit(text: str) -> str:
    """``"9 (apples)"`` → ``"9"``: a number followed by a parenthesised unit, as ASDiv writes its answers.

    Found with ``rfind`` rather than a regular expression: a pattern such as ``[^()]*[A-Za-z][^()]*``
    backtracks quadratically on a long cell (seconds to minutes at 200,000 characters).
    """
    if not text.endswith(")"):
        return text
    start = text.rfind("(")
    unit, number = text[start + 1 : -1], text[:start].rstrip()
    if start <= 0 or ")" in unit or not _LETTER_RE.search(unit) or not _NUMBER_RE.fullmatch(number):
        return text
    return number


#: Bytes of canonical forms kept by :func:`canonical_answer` (keys and values, see :class:`ByteLRU`).
CANONICAL_CACHE_BYTES = 8 << 20
# The same answers recur across a group, its views and its diagnostics.
_CANONICAL_CACHE = ByteLRU(CANONICAL_CACHE_BYTES)


def canonical_answer(answer: str) -> str:
    r"""A normal form for display, exact-string voting and cache keys.

    Removes what never changes the value: whitespace, LaTeX spacing commands (``\,``, ``\!``),
    ``\left``/``\right``, enclosing ``$…$``, a trailing period, thousands separators in a plain
    number (``1,234`` → ``1234``) and trailing decimal zeros (``142.0`` → ``142``). It does not
    rewrite notation: ``\dfrac12``, ``\frac{1}{2}`` and ``0.5`` stay three strings, as in the
    reference implementation's exact voting; :mod:`corewarding.core.equivalence` is what merges them.
    Results are cached, up to :data:`CANONICAL_CACHE_BYTES`.
    """
    canonical = _CANONICAL_CACHE.get(answer)
    if canonical is None:
        canonical = _canonical(answer)
        _CANONICAL_CACHE.put(answer, canonical)
    return canonical


def _canonical(answer: str) -> str:
    # Enclosing dollars are peeled by moving two ends inward: slicing once per pair would be quadratic.
    start, end = 0, len(answer)
    while True:
        while start < end and answer[start].isspace():
            start += 1
        while end > start and answer[end - 1].isspace():
            end -= 1
        if end - start < 2 or answer[start] != "$" or answer[end - 1] != "$":
            break
        start, end = start + 1, end - 1
    s = _SPACING_RE.sub("", answer[start:end])
    s = s.rstrip(".")
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    if _DECIMAL_RE.fullmatch(s):
        s = s.rstrip("0").rstrip(".") or "0"
        if s in ("-", "-0"):
            s = "0"
    return s
