"""Answer equivalence: are two final answers the same mathematical object?

The reference implementation compares raw ``\\boxed{}`` strings, so ``\\frac{1}{2}``, ``\\dfrac12`` and
``0.5`` split a vote three ways. Here answers are compared with math-verify, under these guarantees:

* **Bounded input.** An answer longer than :data:`MAX_ANSWER_CHARS` characters, nested deeper than
  :data:`MAX_NESTING` brackets, or shaped like a magnitude bomb (a numeric power tower such as
  ``9^{9^{9}}``, an exponent of six or more digits, the factorial of a huge number) is never parsed:
  it equals only an answer with the same canonical string.
* **Bounded time, from any thread or process.** math-verify's own timeout uses ``signal.alarm``,
  which raises outside the main thread. Parsing and comparison therefore run in a worker process
  (started on first use, one per checker and per process that uses it), in *its* main thread, under a
  sub-second interval timer (``timeout_s``, default 1 s) and a memory cap; if the worker still does not
  answer within ``hard_timeout_s`` (default 5 s) it is killed and restarted, and that comparison is
  False.
* **Model text is never executed.** Only LaTeX extraction is used: math-verify's plain-expression
  extraction goes through sympy's ``parse_expr``, which calls ``eval``, so it is not enabled.
* **Quiet.** math-verify's loggers (which print whole inputs on timeout) are silenced in the worker.
* **Fast.** Canonically identical answers and pairs of plain numbers (``12``, ``-0.5``, ``3/4``,
  ``\\frac{3}{4}``) are decided in-process without the worker; results are cached on canonical
  strings; :meth:`EquivalenceChecker.cluster_groups` sends each clustering round of many groups to
  the worker as one message.

Worked example::

    >>> equivalent(r"\\frac{1}{2}", "0.5")
    True
    >>> cluster_answers([r"\\frac{1}{2}", "7", r"\\dfrac12", "0.5", None])
    [0, 1, 0, 0, None]
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

from corewarding.core.answers import canonical_answer

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_NESTING",
    "EquivalenceChecker",
    "equivalent",
    "cluster_answers",
    "cluster_answer_groups",
    "answers_match",
    "default_checker",
    "set_default_checker",
]

#: Longest answer (in characters, canonical form) handed to math-verify. The longest ground truth of
#: the MATH train split is 159 characters (a 3x3 matrix); 512 leaves room for verbose but honest forms.
MAX_ANSWER_CHARS = 512
#: Deepest bracket nesting handed to math-verify.
MAX_NESTING = 24

_MAGNITUDE_BOMB = re.compile(
    r"\^\s*\{?\s*\(?\s*-?[\d.]+\s*\)?\s*\^"  # numeric power tower: 9^{9^{9}}
    r"|\^\s*\{?\s*\d{6,}"  # exponent with six or more digits
    r"|\d{4,}\s*!"  # factorial of a four-digit number
    r"|\^[^!]*\)\s*!"  # factorial of an expression with a power: (10^{10})!
    r"|\*\*"  # Python power, never LaTeX
)


def _is_safe(answer: str) -> bool:
    if len(answer) > MAX_ANSWER_CHARS or _MAGNITUDE_BOMB.search(answer):
        return False
    depth = 0
    for ch in answer:
        if ch in "{([":
            depth += 1
            if depth > MAX_NESTING:
                return False
        elif ch in "})]":
            depth -= 1
    return True


_RATIONAL_RE = re.compile(
    r"(?P<sign>-?)(?:"
    r"(?P<int>\d+)"
    r"|(?P<dec>\d*\.\d+)"
    r"|(?P<num>\d+)/(?P<den>\d+)"
    r"|\\[dt]?frac(?:\{(?P<fnum>\d+)\}|(?P<fnum1>\d))(?:\{(?P<fden>\d+)\}|(?P<fden1>\d))"
    r")"
)


def _as_rational(answer: str) -> tuple[Fraction, bool] | None:
    """A plain-number answer as (exact value, written with a decimal point), else None."""
    m = _RATIONAL_RE.fullmatch(answer)
    if m is None or len(answer) > 64:
        return None
    g = m.groupdict()
    if g["int"] is not None:
        value, is_decimal = Fraction(int(g["int"])), False
    elif g["dec"] is not None:
        value, is_decimal = Fraction(g["dec"]), True
    else:
        num = g["num"] or g["fnum"] or g["fnum1"]
        den = int(g["den"] or g["fden"] or g["fden1"])
        if den == 0:
            return None
        value, is_decimal = Fraction(int(num), den), False
    return (-value if g["sign"] else value), is_decimal


_FRAC_VARIANT_RE = re.compile(r"\\[dt]frac")
_FRAC_SHORTHAND_RE = re.compile(r"\\frac(\d)(\d)")


def _notation_key(answer: str) -> str:
    r"""The canonical form with notation variants of one meaning unified: \dfrac, \tfrac, \frac12."""
    return _FRAC_SHORTHAND_RE.sub(r"\\frac{\1}{\2}", _FRAC_VARIANT_RE.sub(r"\\frac", answer))


def _decide_in_process(reference: str, answer: str) -> bool | None:
    """Decide a comparison without math-verify when that is exact; None when it needs the worker."""
    if reference == answer:
        return True
    if not (_is_safe(reference) and _is_safe(answer)):
        return False
    if _notation_key(reference) == _notation_key(answer):
        return True
    a, b = _as_rational(reference), _as_rational(answer)
    if a is None or b is None:
        return None
    if a[0] == b[0]:
        return True
    if not (a[1] or b[1]):
        return False
    # math-verify rounds floats to 6 decimals (1/3 == 0.333333); only a clear gap is decided here.
    return False if abs(a[0] - b[0]) > Fraction(1, 10**5) else None


class _Worker:
    """A math-verify process answering one JSON line per comparison, killed on a hard timeout."""

    def __init__(self, timeout_s: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corewarding.core.equivalence", str(timeout_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        self.owner_pid = os.getpid()
        self._buffer = b""
        ready = self.read_line(deadline=time.monotonic() + 120)
        if ready != {"ready": True}:
            self.kill()
            raise RuntimeError("the math-verify worker process failed to start")

    def read_line(self, deadline: float) -> dict | None:
        """The next reply, or None when the deadline passes or the worker died."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def send(self, pairs: list[tuple[str, str]]) -> None:
        self.proc.stdin.write(json.dumps(pairs).encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


class EquivalenceChecker:
    """Math-verify answer equivalence, bounded in input size and time, cached, thread-safe.

    ``equivalent(reference, answer)`` treats its first argument as math-verify's gold (the order
    matters only for equations such as ``x=5`` against ``5``).

    Args:
        timeout_s: bound on one comparison inside the worker (interval timer; default 1 s).
        hard_timeout_s: bound after which a silent worker is killed and restarted (default 5 s).
        workers: worker processes comparing in parallel (default: 2, or 1 on a single core).
        cache_size: results kept (least recently used dropped first).
    """

    def __init__(
        self,
        timeout_s: float = 1.0,
        hard_timeout_s: float = 5.0,
        workers: int | None = None,
        cache_size: int = 1 << 17,
    ):
        self.timeout_s = timeout_s
        self.hard_timeout_s = hard_timeout_s
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._lock = threading.Lock()
        self._workers: list[_Worker | None] = [None] * (workers or min(2, os.cpu_count() or 1))
        #: Comparisons that timed out (each counts as not equivalent).
        self.timeouts = 0
        self._timeouts_lock = threading.Lock()
        atexit.register(self.close)

    def start(self) -> None:
        """Start the worker processes now rather than on the first comparison that needs them."""
        with self._lock, ThreadPoolExecutor(max_workers=len(self._workers)) as pool:
            list(pool.map(self._live_worker, range(len(self._workers))))

    def equivalent(self, reference: str, answer: str) -> bool:
        return self.equivalent_many([(reference, answer)])[0]

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Compare many (reference, answer) pairs, sending the undecided ones to the workers at once."""
        keys = [(canonical_answer(a), canonical_answer(b)) for a, b in pairs]
        results: list[bool | None] = []
        pending: dict[tuple[str, str], list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                decided = self._cache.get(key)
                if decided is None:
                    decided = _decide_in_process(*key)
                    if decided is None:
                        pending.setdefault(key, []).append(i)
                    else:
                        self._cache[key] = decided
                results.append(decided)
            if pending:
                todo = list(pending)
                for key, value in zip(todo, self._ask_workers(todo)):
                    self._cache[key] = value
                    for i in pending[key]:
                        results[i] = value
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return results  # type: ignore[return-value]

    def cluster(self, answers: Sequence[str | None]) -> list[int | None]:
        """Cluster ids (0, 1, … in order of first appearance) of one group's answers; None stays None."""
        return self.cluster_groups([answers])[0]

    def cluster_groups(self, groups: Sequence[Sequence[str | None]]) -> list[list[int | None]]:
        """Cluster every group's answers by equivalence.

        Within a group, distinct canonical forms are taken in order of first appearance; each joins
        the first existing cluster whose representative (its first form) it is equivalent to, else it
        founds a new cluster. Round r compares the r-th distinct form of every group with that group's
        representatives, all groups in one batch.
        """
        forms: list[list[str]] = []
        form_index: list[list[int | None]] = []
        for answers in groups:
            seen: dict[str, int] = {}
            index = []
            for a in answers:
                if a is None:
                    index.append(None)
                    continue
                key = canonical_answer(a)
                index.append(seen.setdefault(key, len(seen)))
            forms.append(list(seen))
            form_index.append(index)

        form_cluster = [[0] if f else [] for f in forms]
        representatives = [[f[0]] if f else [] for f in forms]
        for r in range(1, max((len(f) for f in forms), default=0)):
            active = [g for g, f in enumerate(forms) if r < len(f)]
            pairs = [(rep, forms[g][r]) for g in active for rep in representatives[g]]
            verdicts = iter(self.equivalent_many(pairs))
            for g in active:
                matches = [next(verdicts) for _ in representatives[g]]
                if True in matches:
                    form_cluster[g].append(matches.index(True))
                else:
                    form_cluster[g].append(len(representatives[g]))
                    representatives[g].append(forms[g][r])
        return [
            [None if i is None else form_cluster[g][i] for i in index] for g, index in enumerate(form_index)
        ]

    def _ask_workers(self, todo: list[tuple[str, str]]) -> list[bool]:
        # Contiguous chunks keep a group's pairs (which share forms) on one worker and its parse cache.
        n = min(len(self._workers), max(1, len(todo) // 8))
        bounds = [len(todo) * k // n for k in range(n + 1)]
        chunks = [todo[bounds[k] : bounds[k + 1]] for k in range(n)]
        if n == 1:
            return self._ask_worker(0, todo)
        with ThreadPoolExecutor(max_workers=n) as pool:
            parts = list(pool.map(self._ask_worker, range(n), chunks))
        return [verdict for part in parts for verdict in part]

    def _ask_worker(self, slot: int, todo: list[tuple[str, str]]) -> list[bool]:
        answers: list[bool] = []
        while len(answers) < len(todo):
            worker = self._live_worker(slot)
            worker.send(todo[len(answers) :])
            for _ in range(len(todo) - len(answers)):
                reply = worker.read_line(deadline=time.monotonic() + self.hard_timeout_s)
                if reply is None:
                    # The worker is stuck (or died) on this comparison: count it as a timeout and
                    # restart the worker for the rest.
                    worker.kill()
                    self._workers[slot] = None
                    reply = {"eq": False, "timeout": True}
                with self._timeouts_lock:
                    self.timeouts += reply.get("timeout", False)
                answers.append(reply["eq"])
                if self._workers[slot] is None:
                    break
        return answers

    def _live_worker(self, slot: int) -> _Worker:
        worker = self._workers[slot]
        # A forked child inherits the parent's pipes; it must not talk over them, so it starts its own.
        if worker is None or worker.owner_pid != os.getpid() or worker.proc.poll() is not None:
            worker = self._workers[slot] = _Worker(self.timeout_s)
        return worker

    def close(self) -> None:
        """Stop the worker processes (they are restarted if the checker is used again)."""
        with self._lock:
            for slot, worker in enumerate(self._workers):
                if worker is not None and worker.owner_pid == os.getpid():
                    worker.kill()
                self._workers[slot] = None


_DEFAULT: EquivalenceChecker | None = None
_DEFAULT_LOCK = threading.Lock()


def default_checker() -> EquivalenceChecker:
    """The process-wide checker used by the module-level functions."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = EquivalenceChecker()
        return _DEFAULT


def set_default_checker(checker: EquivalenceChecker) -> None:
    """Make ``checker`` the process-wide one (e.g. with other time bounds); the previous one is closed."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is not None and _DEFAULT is not checker:
            _DEFAULT.close()
        _DEFAULT = checker


def equivalent(reference: str, answer: str) -> bool:
    """True when ``answer`` is mathematically equal to ``reference`` (math-verify, bounded)."""
    return default_checker().equivalent(reference, answer)


def cluster_answers(answers: Sequence[str | None], *, mode: str = "equivalence") -> list[int | None]:
    """Cluster ids of answers: by math-verify equivalence, or by canonical string when ``mode="exact"``."""
    return cluster_answer_groups([answers], mode=mode)[0]


def answers_match(
    pairs: Sequence[tuple[str | None, str | None]], *, mode: str = "equivalence"
) -> list[bool]:
    """For each (reference, answer) pair: does the answer match? A None on either side never matches."""
    known = [i for i, (a, b) in enumerate(pairs) if a is not None and b is not None]
    if mode == "exact":
        verdicts = [canonical_answer(pairs[i][0]) == canonical_answer(pairs[i][1]) for i in known]
    elif mode == "equivalence":
        verdicts = default_checker().equivalent_many([pairs[i] for i in known])
    else:
        raise ValueError(f"unknown answer matching mode {mode!r}: expected 'equivalence' or 'exact'")
    matched = [False] * len(pairs)
    for i, verdict in zip(known, verdicts):
        matched[i] = verdict
    return matched


def cluster_answer_groups(
    groups: Sequence[Sequence[str | None]], *, mode: str = "equivalence"
) -> list[list[int | None]]:
    """:func:`cluster_answers` of many groups (one batch of worker rounds in equivalence mode)."""
    if mode == "exact":
        clustered = []
        for answers in groups:
            seen: dict[str, int] = {}
            clustered.append(
                [None if a is None else seen.setdefault(canonical_answer(a), len(seen)) for a in answers]
            )
        return clustered
    if mode != "equivalence":
        raise ValueError(f"unknown answer matching mode {mode!r}: expected 'equivalence' or 'exact'")
    return default_checker().cluster_groups(groups)


def _serve(timeout_s: float) -> None:
    """The worker's loop: read a JSON list of [gold, pred] pairs per line, answer one line per pair."""
    import logging
    import resource
    import signal
    import warnings

    # A comparison that builds a gigantic integer fails with MemoryError instead of swapping.
    limit = 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    from functools import lru_cache

    from math_verify import LatexExtractionConfig, parse, verify

    class _Timeout(BaseException):  # not an Exception: math-verify's handlers must not swallow it
        pass

    def on_alarm(signum, frame):
        raise _Timeout

    signal.signal(signal.SIGALRM, on_alarm)
    extraction = [LatexExtractionConfig()]

    @lru_cache(maxsize=8192)
    def parsed(answer: str):
        return parse(f"${answer}$", extraction_config=extraction, parsing_timeout=None)

    def compare(gold: str, pred: str) -> dict:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return {"eq": bool(verify(parsed(gold), parsed(pred), timeout_seconds=None))}
        except _Timeout:
            return {"eq": False, "timeout": True}
        except Exception:
            return {"eq": False}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    # The first parse and comparison load most of sympy and the LaTeX grammar (over a second): pay it
    # here, once per worker, rather than in the first batch of answers.
    for gold, pred in ((r"\frac{1}{2}", "0.5"), (r"2\sqrt{3}", r"\sqrt{12}"), (r"(1, \pi]", r"\{1, 2\}")):
        compare(gold, pred)
    parsed.cache_clear()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        for gold, pred in json.loads(line):
            out.write(json.dumps(compare(gold, pred)) + "\n")
            out.flush()


if __name__ == "__main__":
    _serve(float(sys.argv[1]))
