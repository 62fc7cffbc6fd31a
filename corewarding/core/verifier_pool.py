"""The math-verify worker processes: a small pool that answers "are these pairs equivalent?" under a
time bound per comparison, per time slice and per group.

math-verify's own timeout uses ``signal.alarm``, which raises outside the main thread. Parsing and
comparison therefore run in worker processes (started on first use), in *their* main thread, under a
memory cap (2 GiB) and an interval timer of CPU time: each parse and each verification gets
``timeout_s`` of the worker's CPU time, so a verdict does not depend on how busy the machine is. A parse
that runs out of time is remembered, so a hostile answer costs one timeout per worker, not one per
comparison. A worker silent for ``hard_timeout_s`` is killed and restarted, and that comparison is False.

A worker is lent to one caller at a time, first come first served, for a time slice (0.5 s, then the
comparison under way is finished and the rest deferred), so a call waits for a worker behind at most one
slice of each caller that was waiting before it. A worker keeps at most 4,096 parsed answers.

Who owns the processes: a :class:`VerifierPool` is owned by one
:class:`~corewarding.core.equivalence.EquivalenceChecker` (or handed to it), starts its workers on the
first comparison that needs them, and stops them in :meth:`VerifierPool.close`, at interpreter exit, and
(for a forked child, which must not talk to its parent's workers) by forgetting them after a fork.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["VerifierPool"]

# Comparisons per message to a worker, the unit of parallel work.
_CHUNK = 8
# Seconds after which a worker defers the rest of a message: a caller holds a worker for one slice at a
# time, then waits for one again behind the callers already waiting.
_SLICE_S = 0.5
# Parsed answers a worker keeps.
_PARSE_CACHE_ENTRIES = 4096


class _Worker:
    """A math-verify process answering one JSON line per comparison, killed on a hard timeout."""

    def __init__(self, timeout_s: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corewarding.core.verifier_pool", str(timeout_s)],
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


class VerifierPool:
    """Worker processes comparing pairs of canonical answers with math-verify, thread-safe.

    Args:
        timeout_s: bound on each parse and each verification inside a worker (CPU time).
        hard_timeout_s: bound after which a silent worker is killed and restarted.
        workers: worker processes comparing in parallel (default: 2, or 1 on a single core).

    Attributes:
        timeouts: comparisons that timed out (each counts as not equivalent).
        comparisons: comparisons made (skipped ones excluded).
    """

    def __init__(self, timeout_s: float = 1.0, hard_timeout_s: float = 5.0, workers: int | None = None):
        self.timeout_s = timeout_s
        self.hard_timeout_s = hard_timeout_s
        self._workers: list[_Worker | None] = [None] * (workers or min(2, os.cpu_count() or 1))
        self.timeouts = 0
        self.comparisons = 0
        self._new_locks()
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.close)

    @property
    def workers(self) -> int:
        """How many worker processes compare in parallel."""
        return len(self._workers)

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

    def compare(
        self,
        todo: list[tuple[str, str]],
        tags: list[int] | None = None,
        seconds_left: list[float] | None = None,
    ) -> list[bool | None]:
        """math-verify's verdict on each (gold, answer) pair of canonical answers.

        With ``tags``, pair i is charged to ``seconds_left[tags[i]]`` (updated in place as the workers
        report their time), and a pair whose budget is spent is not compared: its verdict is None.
        """
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
        """Stop the worker processes (they are restarted if the pool is used again)."""
        with self._every_worker():
            for slot, worker in enumerate(self._workers):
                if worker is not None:
                    worker.kill()
                self._workers[slot] = None


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

    # A stop signal is the training process's to act on (core/stop_signals.py), yet Ctrl-C reaches the
    # whole process group and Slurm signals every process of a job: a worker it killed mid-comparison
    # would turn that comparison into a timeout in the step the run is finishing. The pool ends its workers
    # with SIGKILL, and a worker ends when its owner's pipe closes.
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(stop, signal.SIG_IGN)
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
