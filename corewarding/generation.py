r"""Where rephrasings come from: a local transformers model, vLLM, or an OpenAI-compatible HTTP endpoint.

Every backend has one method, :meth:`RephrasingBackend.generate`: one completion per chat
conversation, handed to a callback as soon as it exists (the pipeline writes it to its cache there,
so an interrupted run loses at most the completions still being generated). The callback may be
called from worker threads; it must be thread-safe.

* :class:`TransformersBackend` — batched ``generate`` on a model loaded by
  :func:`corewarding.models.load_model` (a folder, a GGUF file, a hub id).
* :class:`VLLMBackend` — ``vllm.LLM.chat`` in chunks; vLLM is imported only when this backend is made.
* :class:`OpenAIBackend` — ``POST {base_url}/chat/completions`` from a pool of at most
  ``concurrency`` threads (standard library only).

**Retry policy of the HTTP backend** (:class:`RetryPolicy`). A request is retried on HTTP 408, 409,
425, 429 and every 5xx, on a timeout, on a dropped or refused connection, and on a 200 answer whose
body is not the JSON of a chat completion (a proxy's error page, a cut-off body). Attempt n (n = 1, 2,
…) that fails waits

    d_n = min(max_delay_s, base_delay_s · 2^(n−1)) · U(0.5, 1)

seconds before the next (exponential backoff; the random factor spreads out the retries of
concurrent requests), or the server's ``Retry-After`` (seconds or an HTTP date) when it sends one,
capped at ``max_delay_s``. After ``max_attempts`` attempts the row fails: it is reported as a failed
row, not cached, and sent again by the next run. A timeout is handled like a 503: retried, and the
row fails when every attempt timed out. Other 4xx answers are not retried: 400, 413 and 422 fail the
row (a prompt the model refuses, e.g. too long for its context); 401, 403 and 404 stop the run with
a one-line :class:`BackendError` (a wrong key, URL or model name fails every row alike). So does a
run of ``max_consecutive_failures`` failed rows in a row: a server that is down would otherwise be
retried row after row for hours.

Worked example (no network needed to make one)::

    >>> backend = OpenAIBackend("http://localhost:8000/v1", "Qwen/Qwen3-32B", api_key_env=None)
    >>> backend.url, backend.description
    ('http://localhost:8000/v1/chat/completions', 'openai:Qwen/Qwen3-32B@http://localhost:8000/v1')
    >>> RetryPolicy().delay(attempt=3, retry_after=None, rng=random.Random(0)) <= 4.0
    True
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "BackendError",
    "Completion",
    "Conversation",
    "GenerationSettings",
    "OnResult",
    "OpenAIBackend",
    "RephrasingBackend",
    "RetryPolicy",
    "TransformersBackend",
    "VLLMBackend",
]

Conversation = list[dict[str, str]]


class BackendError(RuntimeError):
    """A backend that cannot work at all (wrong URL, key or model; server down); the message is one line."""


@dataclass(frozen=True)
class GenerationSettings:
    """How a completion is sampled; the defaults are the paper's rephrasing settings.

    Attributes:
        temperature: softmax temperature (0: greedy).
        top_p: nucleus sampling threshold.
        max_new_tokens: longest completion in tokens; room for a thinking model's reasoning too.
    """

    temperature: float = 0.7
    top_p: float = 0.8
    max_new_tokens: int = 4096

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Completion:
    """One conversation's outcome.

    Attributes:
        text: the completion (possibly empty: the model said nothing), or None when there is none.
        error: why there is no completion (a failed request); None when ``text`` is set.
        truncated: the completion stopped at ``max_new_tokens``.
    """

    text: str | None
    error: str | None = None
    truncated: bool = False


OnResult = Callable[[int, Completion], None]


class RephrasingBackend(Protocol):
    """A source of completions. ``description`` names it in the cache (``openai:<model>@<url>``)."""

    description: str

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings, on_result: OnResult
    ) -> None:
        """Call ``on_result(i, completion)`` once for each conversation i, in any order, as each is ready."""
        ...


class TransformersBackend:
    """Batched sampling with a transformers causal LM, ``batch_size`` conversations at a time.

    Conversations are rendered by :func:`corewarding.models.render_prompts` (the chat template, or
    plain text for a model without one), so a template that refuses a system turn still works.
    """

    def __init__(
        self, model, tokenizer, *, batch_size: int = 8, seed: int = 0, description: str = "transformers"
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.seed = seed
        self.description = description

    @classmethod
    def load(cls, location: str | os.PathLike, **options) -> TransformersBackend:
        """The model at ``location`` (folder, GGUF file, hub id), by :func:`corewarding.models.load_model`."""
        from corewarding.models import load_model

        model, tokenizer = load_model(location)
        return cls(model, tokenizer, description=f"transformers:{location}", **options)

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings, on_result: OnResult
    ) -> None:
        import torch

        from corewarding.models import render_prompts

        prompts = [
            render_prompts(self.tokenizer, [c[-1]["content"]], _system_prompt(c))[0] for c in conversations
        ]
        sampling = settings.temperature > 0
        options = dict(
            max_new_tokens=settings.max_new_tokens,
            do_sample=sampling,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if sampling:
            # top_k=0: no top-k cut-off (transformers would otherwise apply its default of 50).
            options.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        stop_ids = torch.tensor(sorted(_stop_token_ids(self.model, self.tokenizer)), device=self.model.device)
        with torch.random.fork_rng(), torch.inference_mode():
            torch.manual_seed(self.seed)
            for start in range(0, len(prompts), self.batch_size):
                batch = self.tokenizer(
                    prompts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                ).to(self.model.device)
                new_tokens = self.model.generate(**batch, **options)[:, batch["input_ids"].shape[1] :]
                for offset, tokens in enumerate(new_tokens):
                    stopped = bool(torch.isin(tokens, stop_ids).any())
                    text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                    on_result(start + offset, Completion(text, truncated=not stopped))


def _system_prompt(conversation: Conversation) -> str | None:
    return conversation[0]["content"] if conversation[0]["role"] == "system" else None


def _stop_token_ids(model, tokenizer) -> set[int]:
    """Tokens that end generation: tokenizer's end of sequence and the generation config's (Qwen: a list)."""
    configured = model.generation_config.eos_token_id
    configured = configured if isinstance(configured, list) else [configured]
    return {i for i in [tokenizer.eos_token_id, *configured] if i is not None}


class VLLMBackend:
    """vLLM's offline engine; ``engine_options`` go to ``vllm.LLM`` (e.g. ``tensor_parallel_size=4``).

    Conversations are sent ``chunk_size`` at a time, so a long run writes its cache as it goes.
    Untested here (no vLLM in CI): keep it this thin.
    """

    def __init__(self, model: str, *, chunk_size: int = 512, **engine_options):
        try:
            from vllm import LLM
        except ImportError:
            raise BackendError("the vllm backend needs vLLM: pip install 'corewarding[vllm]'") from None
        self.llm = LLM(model=model, **engine_options)
        self.chunk_size = chunk_size
        self.description = f"vllm:{model}"

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings, on_result: OnResult
    ) -> None:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_new_tokens
        )
        for start in range(0, len(conversations), self.chunk_size):
            outputs = self.llm.chat(
                list(conversations[start : start + self.chunk_size]), params, use_tqdm=False
            )
            for offset, output in enumerate(outputs):
                sample = output.outputs[0]
                on_result(start + offset, Completion(sample.text, truncated=sample.finish_reason == "length"))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request is retried (formula in the module docstring)."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("retry delays must be non-negative")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s)
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)


_RETRIED_STATUSES = {408, 409, 425, 429}
_FATAL_STATUSES = {
    401: "check the API key",
    403: "check the API key",
    404: "check the base URL and the model name",
}


class _RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _RowError(Exception):
    """A request the server refuses for this row only: the row fails, the run goes on."""


@dataclass
class _RunState:
    """What the rows of one ``generate`` call share: the run of failed rows, and why the run is stopping."""

    consecutive_failures: int = 0
    stopping: BackendError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(eq=False)
class OpenAIBackend:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM ``serve``, SGLang, llama.cpp …).

    Attributes:
        base_url: the API root, ``/v1`` included (``http://localhost:8000/v1``); a URL ending in
            ``/chat/completions`` is accepted too.
        model: the model name the endpoint knows.
        api_key_env: the environment variable holding the API key, sent as a bearer token; None, or
            a variable that is not set, sends no key (local servers need none).
        concurrency: requests in flight at once, at most.
        timeout_s: per-request socket timeout, for connecting and for each read.
        retry: the :class:`RetryPolicy`.
        max_consecutive_failures: failed rows in a row that stop the run.
        extra_body: more fields for every request body, e.g.
            ``{"chat_template_kwargs": {"enable_thinking": False}}`` (vLLM, Qwen3: no thinking).
        sleep, rng: how to wait and where the jitter comes from (tests record the waits).
    """

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_consecutive_failures: int = 32
    extra_body: Mapping = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        root = self.base_url.rstrip("/").removesuffix("/chat/completions")
        if (
            urllib.parse.urlsplit(root).scheme not in ("http", "https")
            or not urllib.parse.urlsplit(root).netloc
        ):
            raise ValueError(
                f"the base URL must be an http(s) URL such as http://localhost:8000/v1, got {self.base_url!r}"
            )
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.timeout_s <= 0:
            raise ValueError(f"the timeout must be positive, got {self.timeout_s}")
        self.base_url = root
        self.url = root + "/chat/completions"
        self.description = f"openai:{self.model}@{root}"

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings, on_result: OnResult
    ) -> None:
        """Send every conversation; on an exception (here or in ``on_result``) stop sending and re-raise.

        Requests already in flight when the run stops are awaited and their answers handed to
        ``on_result`` (at most ``concurrency`` of them, each bounded by the retry policy), so an
        interrupted run does not pay twice for what it had already asked.
        """
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = {
            "model": self.model,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_new_tokens,
            **self.extra_body,
        }

        state = _RunState()

        def work(index: int) -> None:
            if state.stopping is not None:  # another row stopped the run: send nothing more
                return
            try:
                completion = self._complete({**body, "messages": conversations[index]}, headers, state)
            except BackendError as error:
                state.stopping = error
                raise
            on_result(index, completion)

        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="rephrase-http")
        futures = [pool.submit(work, i) for i in range(len(conversations))]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _complete(self, body: dict, headers: dict, state: _RunState) -> Completion:
        """One row: retried per the policy; a failure is a :class:`Completion` without text."""
        data = json.dumps(body).encode("utf-8")
        attempt = 1
        while True:
            try:
                completion = self._post(data, headers)
            except _RowError as error:
                return self._failed(str(error), state)
            except _RetryableError as error:
                if attempt == self.retry.max_attempts:
                    return self._failed(f"{error} (after {attempt} attempts)", state)
                self.sleep(self.retry.delay(attempt, error.retry_after, self.rng))
                attempt += 1
            else:
                with state.lock:
                    state.consecutive_failures = 0
                return completion

    def _failed(self, error: str, state: _RunState) -> Completion:
        with state.lock:
            state.consecutive_failures += 1
            stop = state.consecutive_failures >= self.max_consecutive_failures
        if stop:
            raise BackendError(
                f"{self.url}: {self.max_consecutive_failures} rows failed in a row, stopping; last: {error}"
            )
        return Completion(None, error=error)

    def _post(self, data: bytes, headers: dict) -> Completion:
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise self._status_error(error) from None
        except TimeoutError:
            raise _RetryableError(f"no answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise _RetryableError(f"no answer within {self.timeout_s:g} s") from None
            raise _RetryableError(f"cannot connect: {error.reason}") from None
        except (ConnectionError, http.client.HTTPException) as error:
            raise _RetryableError(f"connection lost: {type(error).__name__}: {error}") from None
        return _completion_from_body(raw)

    def _status_error(self, error: urllib.error.HTTPError) -> Exception:
        status = error.code
        message = f"HTTP {status} {error.reason}"
        if status in _FATAL_STATUSES:
            return BackendError(f"{self.url} answered {message}: {_FATAL_STATUSES[status]}")
        if status in _RETRIED_STATUSES or status >= 500:
            return _RetryableError(message, _retry_after(error.headers.get("Retry-After")))
        return _RowError(message)


def _completion_from_body(raw: bytes) -> Completion:
    """The completion of a chat-completions response body; a body that is not one is worth a retry."""
    try:
        choice = json.loads(raw)["choices"][0]
        content = choice["message"]["content"]
        if not isinstance(content, (str, type(None))):
            raise TypeError("content is not text")
    except (ValueError, KeyError, IndexError, TypeError):
        raise _RetryableError(f"the answer is not a chat completion: {raw[:80]!r}") from None
    return Completion(content or "", truncated=choice.get("finish_reason") == "length")


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() - time.time()
