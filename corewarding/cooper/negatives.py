r"""Negatives written by an assistant: Cooper's second source of reward-model pairs.

Cooper pairs a rollout the rule-based verifier accepts (the positive) with a negative. Besides the
policy's own wrong rollouts (:func:`~corewarding.cooper.co_training.select_pairs`), the paper asks an
assistant LLM, through an OpenAI-compatible API, for a completely incorrect response of about the
positive's length. Such negatives do not share the policy's blind spots, and a group whose rollouts
are all right still gives a pair. This module writes them::

    selected positives ──cache (JSONL) hit?──► cached text
        └─ miss, within the step's budget of calls ──► assistant ──► text (cached) or failure
    text ──verifier: ans(text) ≡ reference? or blank──► invalid (masked) │ else the negative

**The assistant** (:class:`Assistant`) is one of the generation backends of
:mod:`corewarding.inference.generation` (OpenAI-compatible endpoint, transformers, vLLM) asked with
:data:`NEGATIVE_SYSTEM` and :data:`NEGATIVE_REQUEST` at temperature 0.7 (the paper's code), or, for the
offline tiny task, :class:`StandInAssistant`: **a stand-in, not an LLM**. It takes the verified
solution and changes one operand or one operation of one of its equations ``a op b = c``, recomputes
that equation and every later one that continues from it, and boxes the new final value; a solution
without such equations gets its final answer's number changed. It writes no reasoning of its own, so
its negatives are closer to the policy's slips than an LLM's would be; it is there to run the pipeline
end to end without a second model, and is deterministic per positive.

**Masked, and counted.** A negative is *invalid* when the verifier accepts its final answer (the
assistant failed to be wrong) or it is blank; a call that failed for good (the backend's retries spent)
gives no negative. Either way the group's assistant pair is dropped. The paper retries an invalid
negative up to three times; here it is masked, which keeps the calls of a step bounded.

**Bounded and resumable.** At most ``calls_per_step`` calls per step (the rest of the positives get no
assistant negative that step: ``over_budget``), each bounded by the backend's timeout and retries. Every
negative that comes back is appended at once to a JSONL cache in the run folder
(:class:`~corewarding.inference.rephrase.CompletionCache`, the rephrasing pipeline's), keyed by the question
id and a hash of the question, the reference and the positive (:attr:`NegativeRequest.key`): a resumed
run, or a later step that selects the same positive, does not pay for it again (whichever assistant
wrote it: each line names it); a failed call is not cached and is asked again when that positive comes
back.

Worked example (the stand-in on a synthetic solution; the verifier rejects the result)::

    >>> solution = "7+5=12. 12*2=24. \\boxed{24}"
    >>> request = NegativeRequest("q1", "Start with 7. Add 5. Multiply by 2.", "24", solution)
    >>> negatives = []
    >>> StandInAssistant().write([request], lambda i, completion: negatives.append(completion.text))
    >>> negatives
    ['7+8=15. 15*2=30. \\boxed{30}']
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from corewarding.core.answers import extract_answer
from corewarding.core.equivalence import answers_match
from corewarding.inference.generation import Completion, GenerationBackend, GenerationSettings
from corewarding.inference.rephrase import CachedCompletion, CompletionCache

__all__ = [
    "NEGATIVE_SOURCES",
    "ASSISTANT_BACKENDS",
    "STAND_IN",
    "NEGATIVE_SYSTEM",
    "NEGATIVE_REQUEST",
    "NegativeRequest",
    "Assistant",
    "BackendAssistant",
    "StandInAssistant",
    "corrupt_solution",
    "AssistantNegatives",
    "NegativeWriter",
    "make_assistant",
]

#: Where Cooper's negatives come from: the policy's wrong rollouts, an assistant, or both.
NEGATIVE_SOURCES = ("rollouts", "assistant", "both")
#: The generation backends an assistant can run on.
ASSISTANT_BACKENDS = ("openai", "transformers", "vllm")
#: The ``assistant_model`` that names the offline :class:`StandInAssistant`.
STAND_IN = "stand-in"

#: What the assistant is told it is for (the paper's instruction, in this project's words).
NEGATIVE_SYSTEM = (
    "You write wrong solutions to math problems; they teach a grader to tell right from wrong. Given a "
    "problem and a correct solution, write a solution that is completely incorrect: its reasoning goes "
    "wrong and it reaches a wrong final answer, yet it reads like a genuine attempt at the problem. Make "
    "it about as long as the correct solution and give its final answer in \\boxed{}."
)
#: The request for one negative; ``{question}`` and ``{positive}`` are filled in.
NEGATIVE_REQUEST = (
    "Problem:\n{question}\n\nCorrect solution:\n{positive}\n\n"
    "Reply with the incorrect solution only, nothing before or after it."
)
#: The paper's sampling temperature for negatives.
ASSISTANT_TEMPERATURE = 0.7


@dataclass(frozen=True)
class NegativeRequest:
    """A positive to write a negative for: a rollout of ``question`` the verifier accepts."""

    question_id: str
    question: str
    reference: str
    positive: str

    @property
    def key(self) -> str:
        """The cache key beside the question id: a hash of the question, the reference and the positive."""
        text = f"{self.question}\0{self.reference}\0{self.positive}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: ``on_result(i, completion)``: request i's negative (or failure), as soon as it exists; may run in a thread.
OnNegative = Callable[[int, Completion], None]


class Assistant(Protocol):
    """Writes one negative per request. ``description`` names it in the cache."""

    description: str

    def write(self, requests: Sequence[NegativeRequest], on_result: OnNegative) -> None: ...


class BackendAssistant:
    """An LLM on a generation backend, asked with :data:`NEGATIVE_SYSTEM` and :data:`NEGATIVE_REQUEST`.

    Args:
        backend: an OpenAI-compatible, transformers or vLLM backend.
        max_new_tokens: longest negative in tokens.
    """

    def __init__(self, backend: GenerationBackend, max_new_tokens: int = 1024):
        self.backend = backend
        self.settings = GenerationSettings(temperature=ASSISTANT_TEMPERATURE, max_new_tokens=max_new_tokens)
        self.description = backend.description

    def write(self, requests: Sequence[NegativeRequest], on_result: OnNegative) -> None:
        asks = [NEGATIVE_REQUEST.format(question=r.question, positive=r.positive) for r in requests]
        conversations = [
            [{"role": "system", "content": NEGATIVE_SYSTEM}, {"role": "user", "content": ask}] for ask in asks
        ]
        if conversations:
            self.backend.generate(conversations, self.settings, lambda i, group: on_result(i, group[0]))


class StandInAssistant:
    """The offline stand-in for an assistant LLM: :func:`corrupt_solution` of each positive (module
    docstring), drawn from a generator seeded with ``seed`` and the request's key."""

    description = STAND_IN

    def __init__(self, seed: int = 0):
        self.seed = seed

    def write(self, requests: Sequence[NegativeRequest], on_result: OnNegative) -> None:
        for i, request in enumerate(requests):
            rng = random.Random(f"{self.seed}:{request.key}")
            text = corrupt_solution(request.positive, request.reference, rng)
            on_result(i, Completion(text, error=None if text else "the stand-in found no number to change"))


# An equation a op b = c of integers, as the synthetic task's solutions write each step ("12*2=24").
_EQUATION = re.compile(r"(-?\d+)\s*([-+*])\s*(\d+)\s*=\s*(-?\d+)")
_INTEGER = re.compile(r"-?\d+")
_OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
# Attempts at an equation corruption before falling back to changing the final answer.
_ATTEMPTS = 8


def corrupt_solution(solution: str, reference: str, rng: random.Random) -> str | None:
    r"""A wrong version of a correct ``solution``: one operand or operation changed (module docstring).

    Tries up to 8 corruptions of its equations; when none gives an answer the verifier rejects (or
    there are no equations), changes the last integer of the final answer by 1 to 3 instead. Returns
    None only when the final answer holds no integer, or the verifier still accepts every candidate.
    Never returns a solution whose final answer the verifier accepts.

    >>> corrupt_solution("3+4=7. \\boxed{7}", "7", random.Random(0))
    '3+5=8. \\boxed{8}'
    """
    equations = list(_EQUATION.finditer(solution))
    candidates = [_changed_equation(solution, equations, rng) for _ in range(_ATTEMPTS if equations else 0)]
    candidates.append(_changed_answer(solution, rng))
    candidates = [c for c in candidates if c is not None]
    accepted = answers_match([(reference, extract_answer(c)) for c in candidates])
    return next((c for c, right in zip(candidates, accepted) if not right), None)


def _changed_equation(solution: str, equations: list[re.Match], rng: random.Random) -> str | None:
    """One equation's operand or operation changed, it and the equations continuing from it recomputed,
    and the new final value boxed."""
    values = [(int(m[1]), m[2], int(m[3]), int(m[4])) for m in equations]
    first = rng.randrange(len(values))
    a, op, b, _ = values[first]
    if rng.random() < 0.5:
        op = rng.choice([o for o in _OPERATIONS if o != op])
    else:
        b = max(0, b + rng.choice([-3, -2, -1, 1, 2, 3]))
    new = list(values)
    new[first] = (a, op, b, _OPERATIONS[op](a, b))
    for i in range(first + 1, len(values)):
        a, op, b, _ = values[i]
        if a != values[i - 1][3]:  # this step does not continue from the previous one's result
            break
        a = new[i - 1][3]
        new[i] = (a, op, b, _OPERATIONS[op](a, b))
    pieces, end = [], 0
    for match, (a, op, b, c) in zip(equations, new):
        pieces += [solution[end : match.start()], f"{a}{op}{b}={c}"]
        end = match.end()
    text = "".join(pieces) + solution[end:]
    if values[-1][3] == new[-1][3]:
        return None
    return _reboxed(text, str(new[-1][3]))


def _changed_answer(solution: str, rng: random.Random) -> str | None:
    """The final answer's last integer moved by 1 to 3."""
    answer = extract_answer(solution)
    numbers = list(_INTEGER.finditer(answer or ""))
    if not numbers:
        return None
    last = numbers[-1]
    moved = int(last[0]) + rng.choice([-3, -2, -1, 1, 2, 3])
    return _reboxed(solution, answer[: last.start()] + str(moved) + answer[last.end() :])


def _reboxed(solution: str, answer: str) -> str | None:
    r"""``solution`` with its last ``\boxed{…}``'s content (or its ``####`` line) replaced by ``answer``."""
    start = solution.rfind("\\boxed{")
    if start >= 0:
        depth = 0
        for j in range(start + len("\\boxed"), len(solution)):
            depth += {"{": 1, "}": -1}.get(solution[j], 0)
            if depth == 0:
                return solution[: start + len("\\boxed{")] + answer + "}" + solution[j + 1 :]
    line = list(re.finditer(r"####[ \t]*[^\n]*", solution))
    if line:
        return solution[: line[-1].start()] + f"#### {answer}" + solution[line[-1].end() :]
    return None


@dataclass(frozen=True)
class AssistantNegatives:
    """What :meth:`NegativeWriter.write` made of one step's requests.

    Attributes:
        texts: the valid negative of each request, None where it is masked.
        calls: calls made to the assistant (one per distinct request not in the cache, within budget).
        cached: requests answered from the cache.
        failed: requests whose call failed.
        invalid: requests whose negative the verifier accepts, or that is blank.
        over_budget: requests not asked: the step's budget of calls was spent.
        failures: each distinct error of a failed call → how many failed with it.
    """

    texts: list[str | None]
    calls: int = 0
    cached: int = 0
    failed: int = 0
    invalid: int = 0
    over_budget: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The counts, as the trainer logs them (``rm/assistant_…``)."""
        return {
            "rm/assistant_calls": self.calls,
            "rm/assistant_cached": self.cached,
            "rm/assistant_failed": self.failed,
            "rm/assistant_invalid": self.invalid,
            "rm/assistant_over_budget": self.over_budget,
        }


class NegativeWriter:
    """An assistant behind a cache and a per-step budget of calls (module docstring).

    Args:
        assistant: what writes the negatives.
        cache_path: the JSONL cache (``<run folder>/assistant_negatives.jsonl`` in training).
        calls_per_step: the most calls one :meth:`write` makes.
    """

    def __init__(self, assistant: Assistant, cache_path: str | os.PathLike, calls_per_step: int):
        if calls_per_step < 1:
            raise ValueError(f"calls_per_step must be at least 1, got {calls_per_step}")
        self.assistant = assistant
        self.cache = CompletionCache(cache_path)
        self.calls_per_step = calls_per_step

    def write(self, requests: Sequence[NegativeRequest]) -> AssistantNegatives:
        """A negative for each request, or None where it is masked; the counts of why.

        A :class:`~corewarding.inference.generation.BackendError` (a wrong URL, key or model; a server
        that is down) propagates, after what came back is cached.
        """
        cached = [self.cache.get(r.question_id, r.key) is not None for r in requests]
        distinct = {(r.question_id, r.key): r for r, hit in zip(requests, cached) if not hit}
        pending = list(distinct.values())
        asked = pending[: self.calls_per_step]
        errors: Counter[str] = Counter()
        lock = threading.Lock()  # results may arrive in the backend's worker threads

        def on_result(i: int, completion: Completion) -> None:
            request = asked[i]
            if completion.text is None:
                with lock:
                    errors[completion.error or "no completion"] += 1
                return
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.cache.add(
                CachedCompletion(
                    request.question_id, request.key, completion.text, completion.truncated,
                    self.assistant.description, created,
                )
            )

        self.assistant.write(asked, on_result)
        unasked = {(r.question_id, r.key) for r in pending[self.calls_per_step :]}
        entries = [self.cache.get(r.question_id, r.key) for r in requests]
        accepted = answers_match(
            [(r.reference, extract_answer(e.text) if e else None) for r, e in zip(requests, entries)]
        )
        texts, failed, invalid, over_budget = [], 0, 0, 0
        for request, entry, right in zip(requests, entries, accepted):
            usable = entry is not None and not right and entry.text.strip() != ""
            texts.append(entry.text if usable else None)
            if entry is None and (request.question_id, request.key) in unasked:
                over_budget += 1
            elif entry is None:
                failed += 1
            elif not usable:
                invalid += 1
        return AssistantNegatives(
            texts, calls=len(asked), cached=sum(cached), failed=failed, invalid=invalid,
            over_budget=over_budget, failures=dict(errors.most_common()),
        )


def make_assistant(
    model: str,
    backend: str = "openai",
    *,
    base_url: str | None = None,
    api_key_env: str | None = "OPENAI_API_KEY",
    timeout_s: float = 60.0,
    max_new_tokens: int = 1024,
    seed: int = 0,
) -> Assistant:
    """The assistant a run's settings name: :data:`STAND_IN`, or ``model`` on ``backend``.

    ``openai``: ``model`` is a name the endpoint at ``base_url`` knows, the key in ``api_key_env``, each
    request bounded by ``timeout_s``; ``transformers``: a folder or hub id, sampled with ``seed``;
    ``vllm``: a model vLLM loads.
    """
    if model == STAND_IN:
        return StandInAssistant(seed)
    if backend == "openai":
        from corewarding.inference.generation import OpenAIBackend

        if base_url is None:
            raise ValueError("an assistant on the openai backend needs its base URL (assistant_base_url)")
        generation = OpenAIBackend(base_url, model, api_key_env=api_key_env, timeout_s=timeout_s)
    elif backend == "transformers":
        from corewarding.inference.generation import TransformersBackend

        generation = TransformersBackend.load(model, seed=seed)
    elif backend == "vllm":
        from corewarding.inference.generation import VLLMBackend

        generation = VLLMBackend(model, seed=seed)
    else:
        raise ValueError(f"assistant backend must be one of {', '.join(ASSISTANT_BACKENDS)}, got {backend!r}")
    return BackendAssistant(generation, max_new_tokens)

