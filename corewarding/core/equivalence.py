"""Answer equivalence: are two final answers the same mathematical object?

The reference implementation compares raw ``\\boxed{}`` strings, so ``\\frac{1}{2}``, ``\\dfrac12`` and
``0.5`` split a vote three ways. Here answers are compared with math-verify, under these guarantees:

* **Bounded input.** An answer longer than :data:`MAX_ANSWER_CHARS` characters, nested deeper than
  :data:`MAX_NESTING` brackets, or shaped like a magnitude bomb (a numeric power tower such as
  ``9^{9^{9}}``, an exponent of six or more digits, the factorial of a huge number) is never parsed:
  it equals only an answer with the same canonical string.
* **Bounded time per comparison, from any thread or process.** Parsing and comparison run in the
  math-verify worker processes of a :class:`~corewarding.core.verifier_pool.VerifierPool` (in their own
  main thread, under a memory cap, ``timeout_s`` (default 1 s) of CPU time per parse and per
  verification; a worker silent for ``hard_timeout_s`` (default 5 s) is killed, and that comparison is
  False).
* **Bounded work per group.** :meth:`EquivalenceChecker.cluster_groups` compares at most
  ``max_compared`` distinct answers of a group with math-verify (default
  :data:`MAX_COMPARED_ANSWERS`, the most frequent first); the others are grouped by canonical string
  only. That bound is deterministic: clusters depend on the group alone. It caps a group at
  ``max_compared`` parses and ``max_compared * (max_compared - 1) / 2`` verifications, each bounded
  as above. A time cap, ``max_seconds`` of worker CPU time per group (default
  :data:`MAX_COMPARISON_SECONDS`), is only a safety net on top: it depends on timing, and honest
  groups never reach it.
* **No global lock.** Cache look-ups and in-process decisions wait on nothing but the cache's own
  short lock; the pool lends a worker to one caller at a time, for a time slice, first come first
  served.
* **Bounded memory.** Results are cached on canonical strings up to ``cache_bytes`` (default
  :data:`CACHE_BYTES`, counted by :class:`~corewarding.core.lru.ByteLRU`); a worker keeps at most
  4,096 parsed answers, each at most :data:`MAX_ANSWER_CHARS` characters, under its 2 GiB cap.
* **Who starts processes.** Each :class:`EquivalenceChecker` owns one pool (or is handed one), whose
  workers start on the first comparison that needs them. The module-level functions, and so the reward
  functions of :mod:`corewarding.core.rewards` and the votes of :mod:`corewarding.core.voting`, use the
  process's shared checker, :func:`default_checker`, unless a ``checker`` is passed: a reward computed
  on answers that need math-verify starts that checker's two worker processes (once per process; they
  stop at exit). :func:`set_default_checker` replaces it, e.g. with other time bounds.
* **Model text is never executed.** Only LaTeX extraction is used: math-verify's plain-expression
  extraction goes through sympy's ``parse_expr``, which calls ``eval``, so it is not enabled.
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

import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from corewarding.core.answers import canonical_answer
from corewarding.core.lru import ByteLRU
from corewarding.core.verifier_pool import VerifierPool

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



class _GroupClustering:
    """The clustering of one group's answers (steps 1-4 of :meth:`EquivalenceChecker.cluster_groups`):
    which forms are compared, the comparisons each round asks for, and where each verdict places a form.
    """

    def __init__(self, answers: Sequence[str | None], max_compared: int | None):
        keys = [None if a is None else canonical_answer(a) for a in answers]
        counts = Counter(k for k in keys if k is not None)  # in order of first appearance
        self.forms = list(counts)
        position = {form: f for f, form in enumerate(self.forms)}
        self.form_of_answer = [None if k is None else position[k] for k in keys]
        ranked = sorted(range(len(self.forms)), key=lambda f: -counts[self.forms[f]])  # stable
        #: The forms compared with math-verify, in order of first appearance; round r places the r-th.
        self.compared = sorted(ranked[:max_compared])
        #: cluster_of[f]: the representative of form f's cluster; a form that founds a cluster, or is
        #: never compared, is its own.
        self.cluster_of = list(range(len(self.forms)))
        self.representatives = self.compared[:1]
        self.out_of_time = False

    @property
    def rounds(self) -> int:
        return len(self.compared)

    def comparisons(self, r: int) -> list[tuple[str, str]]:
        """Round r: the r-th compared form against each representative found so far."""
        form = self.forms[self.compared[r]]
        return [(self.forms[rep], form) for rep in self.representatives]

    def place(self, r: int, verdicts: Sequence[bool | None]) -> None:
        """Round r's verdicts: the form joins the first representative it equals, else founds a cluster;
        a skipped comparison (None: out of time) leaves it a cluster of its own."""
        form = self.compared[r]
        for rep, verdict in zip(self.representatives, verdicts):
            if verdict is None:
                self.out_of_time = True
                return
            if verdict:
                self.cluster_of[form] = rep
                return
        self.representatives.append(form)

    def cluster_ids(self) -> list[int | None]:
        """Each answer's cluster, numbered 0, 1, … by first appearance; None stays None."""
        ids: dict[int, int] = {}
        return [
            None if f is None else ids.setdefault(self.cluster_of[f], len(ids)) for f in self.form_of_answer
        ]


class EquivalenceChecker:
    """Math-verify answer equivalence, bounded in input size, time and memory, cached, thread-safe.

    ``equivalent(reference, answer)`` treats its first argument as math-verify's gold (the order
    matters only for equations such as ``x=5`` against ``5``).

    Args:
        timeout_s: bound on each parse and each verification inside a worker (CPU time; default 1 s).
        hard_timeout_s: bound after which a silent worker is killed and restarted (default 5 s).
        workers: worker processes comparing in parallel (default: 2, or 1 on a single core).
        cache_bytes: bytes of results kept, least recently used dropped first (default
            :data:`CACHE_BYTES`).
        pool: the worker processes to use (default: a new :class:`VerifierPool` with the bounds above,
            owned by this checker).

    Attributes:
        pool: the worker processes; :attr:`timeouts` and :attr:`comparisons` are its counts.
        groups_out_of_time: groups of :meth:`cluster_groups` whose time cap cut their comparisons short.
    """

    def __init__(
        self,
        timeout_s: float = 1.0,
        hard_timeout_s: float = 5.0,
        workers: int | None = None,
        cache_bytes: int = CACHE_BYTES,
        pool: VerifierPool | None = None,
    ):
        self.pool = pool if pool is not None else VerifierPool(timeout_s, hard_timeout_s, workers)
        self._cache = ByteLRU(cache_bytes)
        self.groups_out_of_time = 0
        self._stats_lock = threading.Lock()
        # A lock held by one of the parent's threads at a fork stays held in the child.
        os.register_at_fork(after_in_child=lambda: setattr(self, "_stats_lock", threading.Lock()))

    @property
    def timeouts(self) -> int:
        """Comparisons that timed out (each counts as not equivalent)."""
        return self.pool.timeouts

    @property
    def comparisons(self) -> int:
        """Comparisons made by math-verify in the workers (cache hits and in-process decisions excluded)."""
        return self.pool.comparisons

    def start(self) -> None:
        """Start the worker processes now rather than on the first comparison that needs them."""
        self.pool.start()

    def close(self) -> None:
        """Stop the worker processes (they are restarted if the checker is used again)."""
        self.pool.close()

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
        clusterings = [_GroupClustering(answers, max_compared) for answers in groups]
        seconds_left = [max_seconds] * len(groups) if max_seconds is not None else None
        for r in range(1, max((c.rounds for c in clusterings), default=0)):
            asked: list[tuple[_GroupClustering, int]] = []  # (group, its comparisons this round)
            pairs: list[tuple[str, str]] = []
            tags: list[int] = []  # pair i is charged to seconds_left[tags[i]]
            for g, clustering in enumerate(clusterings):
                if r >= clustering.rounds or clustering.out_of_time:
                    continue
                if seconds_left is not None and seconds_left[g] <= 0:
                    clustering.out_of_time = True
                    continue
                comparisons = clustering.comparisons(r)
                asked.append((clustering, len(comparisons)))
                pairs += comparisons
                tags += [g] * len(comparisons)
            verdicts = iter(self._verdicts(pairs, tags if seconds_left is not None else None, seconds_left))
            for clustering, n in asked:
                clustering.place(r, [next(verdicts) for _ in range(n)])
        with self._stats_lock:
            self.groups_out_of_time += sum(c.out_of_time for c in clusterings)
        return [c.cluster_ids() for c in clusterings]

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
            for key, verdict in zip(todo, self.pool.compare(todo, todo_tags, seconds_left)):
                if verdict is not None:
                    self._cache.put(key, verdict)
                for i in pending[key]:
                    results[i] = verdict
        return results


_DEFAULT: EquivalenceChecker | None = None
_DEFAULT_LOCK = threading.Lock()


def default_checker() -> EquivalenceChecker:
    """The process's shared checker, which the module-level functions use unless given one: created on
    first use, its worker processes started on the first comparison that needs them."""
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
    pairs: Sequence[tuple[str | None, str | None]],
    *,
    mode: str = "equivalence",
    checker: EquivalenceChecker | None = None,
) -> list[bool]:
    """For each (reference, answer) pair: does the answer match? A None on either side never matches.
    Equivalence uses ``checker`` (default: :func:`default_checker`)."""
    known = [i for i, (a, b) in enumerate(pairs) if a is not None and b is not None]
    if mode == "exact":
        verdicts = [canonical_answer(pairs[i][0]) == canonical_answer(pairs[i][1]) for i in known]
    elif mode == "equivalence":
        verdicts = (checker or default_checker()).equivalent_many([pairs[i] for i in known])
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
    checker: EquivalenceChecker | None = None,
) -> list[list[int | None]]:
    """:func:`cluster_answers` of many groups (one batch of worker rounds in equivalence mode), with
    ``checker`` (default: :func:`default_checker`)."""
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
    return (checker or default_checker()).cluster_groups(
        groups, max_compared=max_compared, max_seconds=max_seconds
    )
