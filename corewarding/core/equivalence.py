"""Answer equivalence: are two final answers the same mathematical object?

The reference implementation compares raw ``\\boxed{}`` strings, so ``\\frac{1}{2}``, ``\\dfrac12`` and
``0.5`` split a vote three ways. Here answers are compared with math-verify, under these guarantees:

* **Bounded input.** An answer longer than :data:`MAX_ANSWER_CHARS` characters, nested deeper than
  :data:`MAX_NESTING` brackets, or shaped like a magnitude bomb (a numeric power tower such as
  ``9^{9^{9}}``, an exponent of six or more digits, the factorial of a huge number) is never parsed:
  it equals only an answer with the same canonical string.
* **Bounded time per comparison, from any thread or process.** math-verify's own timeout uses
  ``signal.alarm``, which raises outside the main thread. Parsing and comparison therefore run in
  worker processes (started on first use, per checker and per process that uses it), in *their* main
  thread, under a memory cap and an interval timer of CPU time: each parse and each verification gets
  ``timeout_s`` (default 1 s) of the worker's CPU time, so a verdict does not depend on how busy the
  machine is. A parse that runs out of time is remembered, so a hostile answer costs
  one timeout per worker, not one per comparison. A worker silent for ``hard_timeout_s`` (default 5 s)
  is killed and restarted, and that comparison is False.
* **Bounded work per group.** :meth:`EquivalenceChecker.cluster_groups` compares at most
  ``max_compared`` distinct answers of a group with math-verify (default
  :data:`MAX_COMPARED_ANSWERS`, the most frequent first); the others are grouped by canonical string
  only. That bound is deterministic: clusters depend on the group alone. It caps a group at
  ``max_compared`` parses and ``max_compared * (max_compared - 1) / 2`` verifications, each bounded
  as above. A time cap, ``max_seconds`` of worker CPU time per group (default
  :data:`MAX_COMPARISON_SECONDS`), is only a safety net on top: it depends on timing, and honest
  groups never reach it.
* **No global lock.** Cache look-ups and in-process decisions wait on nothing but the cache's own
  short lock. A worker is lent to one caller at a time, first come first served, for a time slice
  (0.5 s, then the comparison under way is finished and the rest deferred), so a call waits for a
  worker behind at most one slice of each caller that was waiting before it.
* **Bounded memory.** Results are cached on canonical strings up to ``cache_bytes`` (default
  :data:`CACHE_BYTES`, counted by :class:`~corewarding.core.lru.ByteLRU`); a worker keeps at most
  4,096 parsed answers, each at most :data:`MAX_ANSWER_CHARS` characters, under its 2 GiB cap.
* **Model text is never executed.** Only LaTeX extraction is used: math-verify's plain-expression
  extraction goes through sympy's ``parse_expr``, which calls ``eval``, so it is not enabled.
* **Quiet.** math-verify's loggers (which print whole inputs on timeout) are silenced in the worker.
* **Fast.** Canonically identical answers and pairs of plain numbers (``12``, ``-0.5``, ``3/4``,
  ``\\frac{3}{4}``) are decided in-process without the worker; each clustering round of many groups
  goes to the workers as one batch.

Worked example::

    >>> equivalent(r"\\frac{1}{2}", "0.5")
    True
    >>> cluster_answers([r"\\frac{1}{2}", "7", r"\\dfrac12", "0.5", None])
    [0, 1, 0, 0, None]
    >>> cluster_answers([r"\\frac{1}{2}", "7", r"\\dfrac12", "0.5", "7"], max_compared=2)
    [0, 1, 2, 3, 1]

(With ``max_compared=2`` only ``7``, the most frequent, and ``\\frac{1}{2}``, the first seen of the
rest, are compared: ``\\dfrac12`` and ``0.5`` keep clusters of their own.)
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
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from fractions import Fraction

from corewarding.core.answers import canonical_answer
from corewarding.core.lru import ByteLRU

__all__ = [
    "CACHE_BYTES",
    "MAX_ANSWER_CHARS",
    "MAX_COMPARED_ANSWERS",
    "MAX_COMPARISON_SECONDS",
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
#: Deepest bracket nesting handed to math-verify. The ground truths of MATH, DAPO and AMC nest at most
#: 3 deep, while parsing costs some 25-50 ms per level (a 20-deep answer takes over a second).
MAX_NESTING = 10
#: Distinct answers of one group compared with math-verify by default (see
#: :meth:`EquivalenceChecker.cluster_groups`): at most 120 verifications per group, and every group of
#: up to 16 rollouts is compared in full.
MAX_COMPARED_ANSWERS = 16
#: Seconds of math-verify work per group by default, a safety net (see
#: :meth:`EquivalenceChecker.cluster_groups`): honest groups take well under a second, while every
#: comparison with an answer such as ``\sin(10^{99999})`` runs into the 1 s timeout.
MAX_COMPARISON_SECONDS = 5.0
#: Bytes of comparison results an :class:`EquivalenceChecker` caches by default (some 100,000 pairs of
#: short answers).
CACHE_BYTES = 32 << 20
# Comparisons per message to a worker, the unit of parallel work.
_CHUNK = 8
# Seconds after which a worker defers the rest of a message: a caller holds a worker for one slice at a
# time, then waits for one again behind the callers already waiting.
_SLICE_S = 0.5
# Parsed answers a worker keeps.
_PARSE_CACHE_ENTRIES = 4096


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

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


class _Slots:
    """Worker slots lent first come, first served: a returned slot goes straight to the longest waiter.

    (With a plain queue, a thread returning a slot and asking again at once could take it back ahead
    of a thread already waiting, and a long batch would starve a single comparison.) A free caller gets
    the lowest free slot, so a single thread keeps using the same worker and its parse cache.
    """

    def __init__(self, n: int):
        self._free = list(range(n))
        self._waiting: deque[list] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> int:
        with self._lock:
            if self._free and not self._waiting:
                slot = min(self._free)
                self._free.remove(slot)
                return slot
            ticket = [threading.Event(), None]
            self._waiting.append(ticket)
        ticket[0].wait()
        return ticket[1]

    def release(self, slot: int) -> None:
        with self._lock:
            if self._waiting:
                ticket = self._waiting.popleft()
                ticket[1] = slot
                ticket[0].set()
            else:
                self._free.append(slot)


class _TimeBudgets:
    """Seconds of worker time left to each group of one batch, charged as the workers report them.

    The time left to a group is shared among its messages not yet answered, so that workers comparing
    one group in parallel do not each spend all of it.
    """

    def __init__(self, tags: list[int], seconds_left: list[float], chunks: Sequence[range]):
        self.tags = tags
        self.seconds_left = seconds_left
        self._unanswered = Counter(t for chunk in chunks for t in {tags[i] for i in chunk})
        self._lock = threading.Lock()

    def message(self, pairs: range) -> tuple[list[int], list[float]]:
        """For a message of these pairs: each pair's budget number, and the seconds of each budget."""
        numbers: dict[int, int] = {}
        for i in pairs:
            numbers.setdefault(self.tags[i], len(numbers))
        with self._lock:
            seconds = [self.seconds_left[t] / self._unanswered[t] for t in numbers]
        return [numbers[self.tags[i]] for i in pairs], seconds

    def charge(self, pair: int, seconds: float) -> None:
        with self._lock:
            self.seconds_left[self.tags[pair]] -= seconds

    def answered(self, pairs: range) -> None:
        with self._lock:
            self._unanswered.subtract({self.tags[i] for i in pairs})


class EquivalenceChecker:
    """Math-verify answer equivalence, bounded in input size, time and memory, cached, thread-safe.

    ``equivalent(reference, answer)`` treats its first argument as math-verify's gold (the order
    matters only for equations such as ``x=5`` against ``5``).

    Args:
        timeout_s: bound on each parse and each verification inside a worker (interval timer; default
            1 s).
        hard_timeout_s: bound after which a silent worker is killed and restarted (default 5 s).
        workers: worker processes comparing in parallel (default: 2, or 1 on a single core).
        cache_bytes: bytes of results kept, least recently used dropped first (default
            :data:`CACHE_BYTES`).

    Attributes:
        timeouts: comparisons that timed out (each counts as not equivalent).
        comparisons: comparisons made by math-verify in the workers (cache hits and in-process
            decisions excluded).
        groups_out_of_time: groups of :meth:`cluster_groups` whose time cap cut their comparisons short.
    """

    def __init__(
        self,
        timeout_s: float = 1.0,
        hard_timeout_s: float = 5.0,
        workers: int | None = None,
        cache_bytes: int = CACHE_BYTES,
    ):
        self.timeout_s = timeout_s
        self.hard_timeout_s = hard_timeout_s
        self._cache = ByteLRU(cache_bytes)
        self._workers: list[_Worker | None] = [None] * (workers or min(2, os.cpu_count() or 1))
        self.timeouts = 0
        self.comparisons = 0
        self.groups_out_of_time = 0
        self._new_locks()
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.close)

    def _new_locks(self) -> None:
        self._slots = _Slots(len(self._workers))
        self._stats_lock = threading.Lock()
        self._all_lock = threading.Lock()

    def _after_fork(self) -> None:
        # The parent's workers answer the parent (and a lock held by one of its threads stays held in
        # the child): a child starts afresh, its own workers on first use.
        self._workers = [None] * len(self._workers)
        self._new_locks()

    @contextmanager
    def _every_worker(self) -> Iterator[None]:
        """Hold every worker slot (waiting for calls in flight); one holder at a time, so no deadlock."""
        with self._all_lock:
            held = [self._slots.acquire() for _ in self._workers]
        try:
            yield
        finally:
            for slot in held:
                self._slots.release(slot)

    def start(self) -> None:
        """Start the worker processes now rather than on the first comparison that needs them."""
        with self._every_worker(), ThreadPoolExecutor(max_workers=len(self._workers)) as pool:
            list(pool.map(self._live_worker, range(len(self._workers))))

    def equivalent(self, reference: str, answer: str) -> bool:
        return self.equivalent_many([(reference, answer)])[0]

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Compare many (reference, answer) pairs, sending the undecided ones to the workers at once."""
        keys = [(canonical_answer(a), canonical_answer(b)) for a, b in pairs]
        return self._verdicts(keys)  # type: ignore[return-value]  # no budget: every pair is decided

    def cluster(
        self,
        answers: Sequence[str | None],
        *,
        max_compared: int | None = MAX_COMPARED_ANSWERS,
        max_seconds: float | None = MAX_COMPARISON_SECONDS,
    ) -> list[int | None]:
        """Cluster ids (0, 1, … in order of first appearance) of one group's answers; None stays None."""
        return self.cluster_groups([answers], max_compared=max_compared, max_seconds=max_seconds)[0]

    def cluster_groups(
        self,
        groups: Sequence[Sequence[str | None]],
        *,
        max_compared: int | None = MAX_COMPARED_ANSWERS,
        max_seconds: float | None = MAX_COMPARISON_SECONDS,
    ) -> list[list[int | None]]:
        """Cluster every group's answers by equivalence, within a budget per group.

        1. **Budget.** A group's distinct canonical forms are ranked by how many answers have them
           (ties to the first seen); the first ``max_compared`` are *compared*, the rest are not (None:
           all are compared).
        2. **Clustering.** The compared forms, in order of first appearance, each join the first
           cluster whose representative (its first form) they are equivalent to, else found a new
           cluster. Round r compares the r-th compared form of every group with that group's
           representatives, all groups in one batch.
        3. **Fallback.** A form that is not compared is a cluster of its own: it gathers the answers
           with exactly its canonical string, and nothing else.
        4. Cluster ids are numbered by first appearance in the group.

        Steps 1-4 make the clusters a function of the group alone (the order of its answers
        included). With no more than ``max_compared`` distinct forms every form is compared, as
        without a budget. A group costs at most ``max_compared`` parses and ``max_compared *
        (max_compared - 1) / 2`` verifications per worker, each bounded by ``timeout_s``.

        **Time cap (a safety net).** Once a group's comparisons have taken ``max_seconds`` of worker
        time, its remaining comparisons are skipped and its forms not yet placed fall back as in
        step 3 (None: no cap). The workers measure the time and check it before each comparison
        (the time left shared among the group's messages in flight), so a group overruns the cap by
        at most one comparison per worker. Where the cap acts, the clusters depend on timing;
        :attr:`groups_out_of_time` counts those groups.
        """
        if max_compared is not None and max_compared < 1:
            raise ValueError(f"max_compared must be at least 1 (or None), got {max_compared}")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive (or None), got {max_seconds}")
        forms: list[list[str]] = []
        form_index: list[list[int | None]] = []
        compared: list[list[int]] = []
        for answers in groups:
            keys = [None if a is None else canonical_answer(a) for a in answers]
            counts = Counter(k for k in keys if k is not None)  # in order of first appearance
            group_forms = list(counts)
            position = {form: f for f, form in enumerate(group_forms)}
            ranked = sorted(range(len(group_forms)), key=lambda f: -counts[group_forms[f]])  # stable
            compared.append(sorted(ranked[:max_compared]))
            forms.append(group_forms)
            form_index.append([None if k is None else position[k] for k in keys])

        # cluster_of[g][f]: the representative of form f's cluster; a form that founds a cluster, or
        # is never compared, is its own.
        cluster_of = [list(range(len(f))) for f in forms]
        representatives = [c[:1] for c in compared]
        seconds_left = [max_seconds] * len(groups) if max_seconds is not None else []
        out_of_time: set[int] = set()
        for r in range(1, max((len(c) for c in compared), default=0)):
            active = []
            for g, chosen in enumerate(compared):
                if r < len(chosen):
                    if max_seconds is not None and seconds_left[g] <= 0:
                        out_of_time.add(g)
                    else:
                        active.append(g)
            pairs = [(forms[g][rep], forms[g][compared[g][r]]) for g in active for rep in representatives[g]]
            if max_seconds is None:
                verdicts = iter(self._verdicts(pairs))
            else:
                tags = [g for g in active for _ in representatives[g]]
                verdicts = iter(self._verdicts(pairs, tags, seconds_left))
            for g in active:
                form = compared[g][r]
                matches = [next(verdicts) for _ in representatives[g]]
                for rep, verdict in zip(representatives[g], matches):
                    if verdict is None:  # skipped: the group ran out of time
                        seconds_left[g] = 0.0
                        out_of_time.add(g)
                        break
                    if verdict:
                        cluster_of[g][form] = rep
                        break
                else:
                    representatives[g].append(form)
        with self._stats_lock:
            self.groups_out_of_time += len(out_of_time)

        clustered = []
        for g, index in enumerate(form_index):
            ids: dict[int, int] = {}
            clustered.append(
                [None if f is None else ids.setdefault(cluster_of[g][f], len(ids)) for f in index]
            )
        return clustered

    def _verdicts(
        self,
        keys: Sequence[tuple[str, str]],
        tags: Sequence[int] | None = None,
        seconds_left: list[float] | None = None,
    ) -> list[bool | None]:
        """Verdicts on pairs of canonical answers: from the cache, decided in-process, else by the workers.

        With ``tags``, pair i is charged to ``seconds_left[tags[i]]`` (updated in place), and a pair
        whose budget is spent is not compared: its verdict is None.
        """
        results: list[bool | None] = []
        pending: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(keys):
            verdict = self._cache.get(key)
            if verdict is None:
                verdict = _decide_in_process(*key)
                if verdict is None:
                    pending.setdefault(key, []).append(i)
                elif max(map(len, key)) <= MAX_ANSWER_CHARS:  # a longer answer is decided at a glance
                    self._cache.put(key, verdict)
            results.append(verdict)
        if pending:
            todo = list(pending)
            todo_tags = None if tags is None else [tags[pending[key][0]] for key in todo]
            for key, verdict in zip(todo, self._ask_workers(todo, todo_tags, seconds_left)):
                if verdict is not None:
                    self._cache.put(key, verdict)
                for i in pending[key]:
                    results[i] = verdict
        return results

    def _ask_workers(
        self, todo: list[tuple[str, str]], tags: list[int] | None, seconds_left: list[float] | None
    ) -> list[bool | None]:
        # Messages of _CHUNK contiguous pairs (a group's pairs share forms, so mostly one worker's parse
        # cache), each sent by whichever helper thread gets a worker next.
        verdicts: list[bool | None] = [None] * len(todo)
        chunks = deque((range(k, min(k + _CHUNK, len(todo))), 0) for k in range(0, len(todo), _CHUNK))
        budgets = None if tags is None else _TimeBudgets(tags, seconds_left, [c for c, _ in chunks])

        def send_chunks() -> None:
            while True:
                try:
                    chunk, start = chunks.popleft()
                except IndexError:
                    return
                slot = self._slots.acquire()
                try:
                    start = self._ask_worker(slot, chunk, start, todo, budgets, verdicts)
                finally:
                    self._slots.release(slot)
                if start < len(chunk):
                    # Its time slice used up, the rest of the chunk waits for a worker again, behind
                    # any caller that was already waiting.
                    chunks.appendleft((chunk, start))
                elif budgets is not None:
                    budgets.answered(chunk)

        helpers = min(len(self._workers), len(chunks))
        if helpers == 1:
            send_chunks()
        else:
            with ThreadPoolExecutor(max_workers=helpers) as pool:
                for done in [pool.submit(send_chunks) for _ in range(helpers)]:
                    done.result()
        return verdicts

    def _ask_worker(
        self,
        slot: int,
        chunk: range,
        start: int,
        todo: list[tuple[str, str]],
        budgets: _TimeBudgets | None,
        verdicts: list[bool | None],
    ) -> int:
        """Have the worker in ``slot`` compare ``chunk[start:]`` for one time slice; the position in
        ``chunk`` of the first pair left unanswered (``len(chunk)`` when none is)."""
        answered = start
        while answered < len(chunk):
            rest = chunk[answered:]
            worker = self._live_worker(slot)
            local_tags, seconds = budgets.message(rest) if budgets is not None else ([-1] * len(rest), [])
            pairs = [[*todo[i], t] for i, t in zip(rest, local_tags)]
            worker.send({"pairs": pairs, "budgets": seconds, "slice": _SLICE_S})
            deferred = False
            for i in rest:
                reply = worker.read_line(deadline=time.monotonic() + self.hard_timeout_s)
                if reply is None:
                    # The worker is stuck (or died) on this comparison: count it as a timeout and
                    # restart the worker for the rest.
                    worker.kill()
                    self._workers[slot] = None
                    reply = {"eq": False, "timeout": True, "s": self.hard_timeout_s}
                if reply.get("deferred", False):  # this and every later pair of the message
                    deferred = True
                    continue
                skipped = reply.get("skipped", False)
                with self._stats_lock:
                    self.timeouts += reply.get("timeout", False)
                    self.comparisons += not skipped
                if budgets is not None:
                    budgets.charge(i, reply["s"])
                verdicts[i] = None if skipped else reply["eq"]
                answered += 1
                if self._workers[slot] is None:
                    break
            if deferred:
                break
        return answered

    def _live_worker(self, slot: int) -> _Worker:
        worker = self._workers[slot]
        if worker is None or worker.proc.poll() is not None:
            worker = self._workers[slot] = _Worker(self.timeout_s)
        return worker

    def close(self) -> None:
        """Stop the worker processes (they are restarted if the checker is used again)."""
        with self._every_worker():
            for slot, worker in enumerate(self._workers):
                if worker is not None:
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


def cluster_answers(
    answers: Sequence[str | None],
    *,
    mode: str = "equivalence",
    max_compared: int | None = MAX_COMPARED_ANSWERS,
    max_seconds: float | None = MAX_COMPARISON_SECONDS,
) -> list[int | None]:
    """Cluster ids of answers: by math-verify equivalence, or by canonical string when ``mode="exact"``.

    ``max_compared`` and ``max_seconds`` bound the equivalence work (see
    :meth:`EquivalenceChecker.cluster_groups`).
    """
    return cluster_answer_groups([answers], mode=mode, max_compared=max_compared, max_seconds=max_seconds)[0]


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
    groups: Sequence[Sequence[str | None]],
    *,
    mode: str = "equivalence",
    max_compared: int | None = MAX_COMPARED_ANSWERS,
    max_seconds: float | None = MAX_COMPARISON_SECONDS,
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
    return default_checker().cluster_groups(groups, max_compared=max_compared, max_seconds=max_seconds)


def _serve(timeout_s: float) -> None:
    """The worker's loop: one message per line, one reply per pair.

    A message is ``{"pairs": [[gold, pred, tag], ...], "budgets": [seconds, ...], "slice": seconds}``;
    a reply is ``{"eq": bool, "s": seconds taken}``, with ``"timeout": true`` when a parse or the
    verification ran out of time. A pair with ``tag >= 0`` is charged to ``budgets[tag]``; once that
    is spent, the tag's remaining pairs are not compared and get ``{"eq": false, "skipped": true, "s":
    0}``. A tag of -1 has no budget. Once the message has taken ``slice`` seconds, its remaining pairs
    get ``{"eq": false, "deferred": true, "s": 0}``: the caller sends them again later.
    """
    import logging
    import resource
    import signal
    import warnings

    # A comparison that builds a gigantic integer fails with MemoryError instead of swapping.
    limit = 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    from math_verify import LatexExtractionConfig, parse, verify

    class _Timeout(BaseException):  # not an Exception: math-verify's handlers must not swallow it
        pass

    def on_alarm(signum, frame):
        raise _Timeout

    # CPU time, not wall time: on a loaded machine a comparison still gets its full budget of work, so
    # its verdict does not depend on what else the machine is doing.
    signal.signal(signal.SIGPROF, on_alarm)
    extraction = [LatexExtractionConfig()]
    # Answer -> its parse, or None when parsing it ran out of time: a hostile answer costs one timeout.
    parses: OrderedDict[str, list | None] = OrderedDict()

    def bounded(function, *args, **kwargs):
        signal.setitimer(signal.ITIMER_PROF, timeout_s)
        try:
            return function(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)

    def parsed(answer: str) -> tuple[list | None, bool]:
        """The parse of ``answer`` (None: out of time, now or before), and whether it timed out now."""
        if answer in parses:
            parses.move_to_end(answer)
            return parses[answer], False
        timed_out = False
        try:
            value = bounded(parse, f"${answer}$", extraction_config=extraction, parsing_timeout=None)
        except _Timeout:
            value, timed_out = None, True
        except Exception:
            value = []
        parses[answer] = value
        if len(parses) > _PARSE_CACHE_ENTRIES:
            parses.popitem(last=False)
        return value, timed_out

    def compare(gold: str, pred: str) -> dict:
        (gold_parse, gold_timed_out), (pred_parse, pred_timed_out) = parsed(gold), parsed(pred)
        if gold_parse is None or pred_parse is None:
            return {"eq": False, "timeout": gold_timed_out or pred_timed_out}
        try:
            return {"eq": bool(bounded(verify, gold_parse, pred_parse, timeout_seconds=None))}
        except _Timeout:
            return {"eq": False, "timeout": True}
        except Exception:
            return {"eq": False}

    # The first parse and comparison load most of sympy and the LaTeX grammar (over a second): pay it
    # here, once per worker, rather than in the first batch of answers.
    for gold, pred in ((r"\frac{1}{2}", "0.5"), (r"2\sqrt{3}", r"\sqrt{12}"), (r"(1, \pi]", r"\{1, 2\}")):
        compare(gold, pred)
    parses.clear()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        message = json.loads(line)
        seconds_left = message["budgets"]
        started = time.perf_counter()
        for n, (gold, pred, tag) in enumerate(message["pairs"]):
            if n and time.perf_counter() - started >= message["slice"]:  # the first pair always runs
                reply = {"eq": False, "deferred": True, "s": 0.0}
            elif tag >= 0 and seconds_left[tag] <= 0:
                reply = {"eq": False, "skipped": True, "s": 0.0}
            else:
                began = time.process_time()
                reply = compare(gold, pred)
                reply["s"] = time.process_time() - began
                if tag >= 0:
                    seconds_left[tag] -= reply["s"]
            out.write(json.dumps(reply) + "\n")
            out.flush()


if __name__ == "__main__":
    _serve(float(sys.argv[1]))
