r"""Completions for chat conversations: a local transformers model, vLLM, or an OpenAI-compatible endpoint.

One protocol, :class:`GenerationBackend`, serves evaluation, the rephrasing pipeline and its answer
check. ``generate(conversations, settings, on_result=None)`` returns ``settings.n``
:class:`Completion` s for each conversation, in order, and, when ``on_result`` is given, calls
``on_result(i, completions)`` once per conversation as soon as all of its ``n`` exist, in any order.
The rephrasing pipeline writes each result to its cache there (an interrupted run loses only what
was still being generated); evaluation advances its progress bar. The callback may run in worker
threads: it must be thread-safe.

A :class:`Completion` has its text, or an ``error`` saying why it has none (a request that failed
for good), and ``truncated`` when it stopped at ``max_new_tokens``. Only the HTTP backend reports
errors per completion; the local backends raise.

* :class:`TransformersBackend` — ``generate`` of a transformers causal LM (a folder, a GGUF file, a
  hub id: :meth:`TransformersBackend.load`). Conversations are rendered by
  :func:`corewarding.inference.models.render_conversation`, the one renderer of the project (training's chat
  template, with its fallbacks). A batch holds at most ``batch_size`` sequences, a conversation's
  ``n`` copies always in one batch, left-padded. Sampling draws from torch's generators forked and
  seeded with ``seed`` on every call: a call is reproducible, and the caller's random state is the same
  after it as before. ``top_k=0``: nucleus sampling alone, as in the paper (transformers would
  otherwise cut to the 50 likeliest tokens). A completion is truncated when none of its tokens is a
  stop token (the tokenizer's end of sequence or one of the generation config's).
* :class:`VLLMBackend` — ``vllm.LLM.chat`` in chunks, ``n`` through ``SamplingParams``; vLLM is
  imported only when this backend is made; tested against the CPU build of vLLM (`.ci/vllm`).
* :class:`OpenAIBackend` — ``POST {base_url}/chat/completions`` through the official ``openai``
  client, from a pool of at most ``concurrency`` threads. ``n`` completions are ``n`` requests, not
  one request with the API's ``n`` field: every OpenAI-compatible server answers them (llama.cpp's
  server ignores ``n``), each sample is retried or fails on its own, and servers with prefix caching
  (vLLM, SGLang) can reuse the shared prompt. A conversation's requests are queued one after another.

**Retry policy of the HTTP backend.** The ``openai`` client retries a request up to
``max_attempts − 1`` times, on HTTP 408, 409, 429 and every 5xx, on a timeout and on a dropped or
refused connection — except where nothing listens when a call starts: that stops it at once with a
one-line :class:`BackendError`, before any request. Its waits (openai 3.x) double from 0.5 s up to
8 s, shortened by a random 0–25 % to spread out the retries of concurrent requests, or follow the
server's ``Retry-After`` (seconds or an HTTP date) when it asks for at most 2 minutes; a server asking
for longer is not retried. After the last attempt the request fails: its completion has an error (the
rephrasing pipeline does not cache it, so the next run sends it again; evaluation counts it as a
completion without an answer).
A 200 answer whose body is not the JSON of a chat completion (a proxy's page) fails the request at
once. Other 4xx answers are not retried: 400, 413 and 422 fail the request (a prompt the model
refuses, e.g. too long for its context; the server's message is in the error); 401, 403 and 404 stop
the run with a one-line :class:`BackendError` (a wrong key, URL or model name fails every request
alike). So does a run of ``max_consecutive_failures`` failed requests in a row: a server that is
down would otherwise be retried request after request for hours.

Worked example (no network needed to make one)::

    >>> settings = GenerationSettings(n=4, temperature=1.0, max_new_tokens=256)
    >>> settings.top_p, GenerationSettings().temperature   # the defaults: nucleus off, greedy
    (1.0, 0.0)
    >>> backend = OpenAIBackend("http://localhost:8000/v1", "Qwen/Qwen3-32B", api_key_env=None)
    >>> backend.url, backend.description
    ('http://localhost:8000/v1/chat/completions', 'openai:Qwen/Qwen3-32B@http://localhost:8000/v1')
    >>> completion_texts([[Completion("\\boxed{4}"), Completion(None, error="HTTP 400 Bad Request")]])
    [['\\boxed{4}', '']]

Over 500 lines because the three backends are one idea, the protocol above, and they share its
settings, result type and error rules; splitting them would scatter those rules over four modules.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from corewarding.core.errors import UserError
from corewarding.core.optional_packages import require

if TYPE_CHECKING:
    import openai

__all__ = [
    "BackendError",
    "Completion",
    "Conversation",
    "GenerationBackend",
    "GenerationSettings",
    "OnResult",
    "OpenAIBackend",
    "TransformersBackend",
    "VLLMBackend",
    "completion_texts",
]

#: Chat messages, ``[{"role": "system" | "user" | "assistant", "content": "…"}, …]``.
Conversation = list[dict[str, str]]


class BackendError(RuntimeError):
    """A backend that cannot work at all (wrong URL, key or model; server down); the message is one line."""


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are drawn. The defaults are one greedy completion of at most 1,024 tokens.

    Attributes:
        n: completions per conversation (default 1).
        temperature: softmax temperature; 0 means greedy decoding, and then ``n`` must be 1
            (default 0).
        top_p: nucleus sampling threshold; 1.0 samples from the whole distribution, as the paper's
            training and evaluation runs do (default 1.0). Its rephrasings used 0.7 and 0.8.
        max_new_tokens: longest completion in tokens, a thinking model's reasoning included (default 1024).
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"n must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise UserError(f"temperature must be non-negative, got {self.temperature}")
        if self.temperature == 0 and self.n > 1:
            raise UserError("greedy decoding (temperature 0) gives identical completions: use n=1")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    """One generated answer.

    Attributes:
        text: the completion (possibly empty: the model said nothing), or None when there is none.
        error: why there is no completion (a failed request); None when ``text`` is set.
        truncated: the completion stopped at ``max_new_tokens``.
    """

    text: str | None
    error: str | None = None
    truncated: bool = False


#: ``on_result(i, completions)``: conversation i's ``n`` completions, as soon as they all exist.
OnResult = Callable[[int, list[Completion]], None]


class GenerationBackend(Protocol):
    """A source of completions. ``description`` names it in caches and logs (``openai:<model>@<url>``)."""

    description: str

    def generate(
        self,
        conversations: Sequence[Conversation],
        settings: GenerationSettings,
        on_result: OnResult | None = None,
    ) -> list[list[Completion]]:
        """``settings.n`` completions per conversation, in order; ``on_result`` as in the module docstring."""
        ...


def completion_texts(groups: Sequence[Sequence[Completion]]) -> list[list[str]]:
    """The texts of grouped completions; a completion without text (a failed request) is ``""``."""
    return [[completion.text or "" for completion in group] for group in groups]


class TransformersBackend:
    """Batched ``generate`` of a transformers causal LM (batching, randomness and stops: module docstring).

    Args:
        model, tokenizer: the model and its tokenizer; the tokenizer needs a pad token
            (:func:`corewarding.inference.models.load_model` sees to it).
        batch_size: sequences per ``generate`` call; a conversation's ``n`` copies are never split,
            so a batch holds ``max(1, batch_size // n)`` conversations.
        seed: seeds every call's sampling.
        description: the backend's name (:meth:`load` puts the model's location in it).
    """

    def __init__(
        self, model, tokenizer, *, batch_size: int = 64, seed: int = 0, description: str = "transformers"
    ):
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        if tokenizer.pad_token_id is None:
            raise UserError("the tokenizer has no pad token; batched generation needs one")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.seed = seed
        self.description = description

    @classmethod
    def load(cls, location: str | os.PathLike, **options) -> TransformersBackend:
        """The model at ``location`` (folder, GGUF file, hub id), by
        :func:`corewarding.inference.models.load_model`."""
        from corewarding.inference.models import load_model

        model, tokenizer = load_model(location)
        return cls(model, tokenizer, description=f"transformers:{location}", **options)

    def generate(
        self,
        conversations: Sequence[Conversation],
        settings: GenerationSettings,
        on_result: OnResult | None = None,
    ) -> list[list[Completion]]:
        import torch

        from corewarding.inference.models import render_conversation

        prompts = [render_conversation(self.tokenizer, c) for c in conversations]
        stop_ids = sorted(_stop_token_ids(self.model, self.tokenizer))
        options = dict(
            max_new_tokens=settings.max_new_tokens,
            do_sample=not settings.greedy,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=stop_ids,
        )
        if not settings.greedy:
            options.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        stops = torch.tensor(stop_ids, device=self.model.device)
        per_batch = max(1, self.batch_size // settings.n)
        results: list[list[Completion]] = []
        with _seeded_sampling(self.seed, self.model.device), torch.inference_mode():
            for start in range(0, len(prompts), per_batch):
                batch = self.tokenizer(
                    [p for p in prompts[start : start + per_batch] for _ in range(settings.n)],
                    return_tensors="pt",
                    padding=True,
                    padding_side="left",
                    add_special_tokens=False,
                ).to(self.model.device)
                new_tokens = self.model.generate(**batch, **options)[:, batch["input_ids"].shape[1] :]
                texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                stopped = torch.isin(new_tokens, stops).any(dim=1).tolist()
                completions = [Completion(t, truncated=not s) for t, s in zip(texts, stopped)]
                for offset in range(0, len(completions), settings.n):
                    results.append(completions[offset : offset + settings.n])
                    if on_result is not None:
                        on_result(len(results) - 1, results[-1])
        return results


@contextmanager
def _seeded_sampling(seed: int, device) -> Iterator[None]:
    """Seed the generators that sampling on ``device`` draws from; restore them afterwards.

    Only the CPU's and the model's GPU's: ``torch.manual_seed`` would reseed every GPU, and forking
    them all warns on a machine with several.
    """
    import torch

    gpus = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.random.default_generator.manual_seed(seed)
        for gpu in gpus:
            with torch.cuda.device(gpu):
                torch.cuda.manual_seed(seed)
        yield


def _stop_token_ids(model, tokenizer) -> set[int]:
    """Tokens that end generation: the tokenizer's end of sequence and the generation config's (a list
    for Qwen)."""
    configured = model.generation_config.eos_token_id
    configured = configured if isinstance(configured, list) else [configured]
    return {i for i in [tokenizer.eos_token_id, *configured] if i is not None}


class VLLMBackend:
    """vLLM's offline engine; ``engine_options`` go to ``vllm.LLM`` (``tensor_parallel_size=4``, ``seed=0``).

    ``model`` is any location the transformers backend accepts (a ``tiny`` name, a folder, a hub id, a
    GGUF file, dequantised once into ``gguf_cache``: :func:`~corewarding.inference.models.engine_location`).
    Conversations are sent ``chunk_size`` at a time, so ``on_result`` hears of results as the run goes.
    """

    def __init__(
        self,
        model: str,
        *,
        chunk_size: int = 512,
        gguf_cache: str | os.PathLike = "runs/gguf",
        **engine_options,
    ):
        from corewarding.inference.models import engine_location

        require("vllm", "the vllm backend")
        from vllm import LLM

        self.llm = LLM(model=engine_location(model, gguf_cache), **engine_options)
        self.chunk_size = chunk_size
        self.description = f"vllm:{model}"

    def generate(
        self,
        conversations: Sequence[Conversation],
        settings: GenerationSettings,
        on_result: OnResult | None = None,
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=settings.n,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=settings.max_new_tokens,
        )
        results: list[list[Completion]] = []
        for start in range(0, len(conversations), self.chunk_size):
            chunk = list(conversations[start : start + self.chunk_size])
            outputs = self.llm.chat(chunk, params, use_tqdm=False)
            for output in outputs:
                results.append(
                    [Completion(s.text, truncated=s.finish_reason == "length") for s in output.outputs]
                )
                if on_result is not None:
                    on_result(len(results) - 1, results[-1])
        return results


_FATAL_STATUSES = {
    401: "check the API key",
    403: "check the API key",
    404: "check the base URL and the model name",
}


@dataclass
class _RunState:
    """What the requests of one ``generate`` call share: the run of failures, why the run is stopping,
    and how many completions each conversation still waits for."""

    waiting: list[int]
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
        api_key_env: the environment variable holding the API key, read when the backend is made and
            sent as a bearer token; None, or a variable that is not set, sends no key (local servers
            need none).
        concurrency: requests in flight at once, at most.
        timeout_s: per-request timeout for connecting and for each read (not for the whole answer).
        max_attempts: attempts per request, the first included, before it fails (retry policy in the
            module docstring).
        max_consecutive_failures: failed requests in a row that stop the run.
        extra_body: more fields for every request body, e.g.
            ``{"chat_template_kwargs": {"enable_thinking": False}}`` (vLLM, Qwen3: no thinking).
    """

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 300.0
    max_attempts: int = 6
    max_consecutive_failures: int = 32
    extra_body: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        root = self.base_url.rstrip("/").removesuffix("/chat/completions")
        if (
            urllib.parse.urlsplit(root).scheme not in ("http", "https")
            or not urllib.parse.urlsplit(root).netloc
        ):
            raise UserError(
                f"the base URL must be an http(s) URL such as http://localhost:8000/v1, got {self.base_url!r}"
            )
        if self.concurrency < 1:
            raise UserError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.timeout_s <= 0:
            raise UserError(f"the timeout must be positive, got {self.timeout_s}")
        if self.max_attempts < 1:
            raise UserError(f"max_attempts must be at least 1, got {self.max_attempts}")
        self.base_url = root
        self.url = root + "/chat/completions"
        self.description = f"openai:{self.model}@{root}"

        import openai  # here, not at the top: 0.4 s that the local backends' users need not wait

        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        # The client refuses to be made without a key; without one, every request omits the header
        # instead of sending a made-up key (a local server started with --api-key would reject it).
        self._headers = {} if key else {"Authorization": openai.omit}
        # Its default connection pool (100 kept alive) exceeds any sensible concurrency.
        self._client = openai.OpenAI(
            base_url=root, api_key=key or "none", timeout=self.timeout_s, max_retries=self.max_attempts - 1
        )

    def generate(
        self,
        conversations: Sequence[Conversation],
        settings: GenerationSettings,
        on_result: OnResult | None = None,
    ) -> list[list[Completion]]:
        """Send ``n`` requests per conversation; on an exception (here or in ``on_result``) stop sending
        and re-raise.

        Requests already in flight when the run stops are awaited and, for the conversations they
        complete, handed to ``on_result`` (at most ``concurrency`` of them, each bounded by the retry
        policy), so an interrupted run does not pay twice for what it had already asked.
        """
        # The synchronous client in a pool of threads rather than AsyncOpenAI under asyncio.run: a
        # Ctrl-C lands in the main thread while the workers' requests go on, so the pool can wait for
        # those in flight (asyncio.run would cancel them: paid for, and lost), and on_result runs in
        # worker threads as the module docstring promises.
        request = {
            "model": self.model,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_new_tokens,
        }
        self._check_listening()
        n = settings.n
        results: list[list[Completion | None]] = [[None] * n for _ in conversations]
        state = _RunState(waiting=[n] * len(conversations))

        def work(index: int, sample: int) -> None:
            if state.stopping is not None:  # another request stopped the run: send nothing more
                return
            try:
                completion = self._complete({**request, "messages": conversations[index]}, state)
            except BackendError as error:
                state.stopping = error
                raise
            with state.lock:
                results[index][sample] = completion
                state.waiting[index] -= 1
                complete = state.waiting[index] == 0
            if complete and on_result is not None:
                on_result(index, results[index])

        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai-backend")
        futures = []
        try:
            # Submitting inside the try: an interrupt that lands while requests are still being queued
            # (workers answer before the main thread is done queueing) must also wait for those in flight.
            futures += [
                pool.submit(work, i, sample) for i in range(len(conversations)) for sample in range(n)
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _check_listening(self) -> None:
        """Refuse at once an endpoint where nothing listens: a refused connection is not worth the
        client's retries (58 s for 30 questions), and nothing is written. Other trouble (a name that
        does not resolve, a slow network, a proxy in between) is left to the requests and their retries."""
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname):
            return  # the client connects to the proxy, not to the server
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=self.timeout_s).close()
        except ConnectionRefusedError:
            raise BackendError(
                f"cannot connect to {self.base_url}: connection refused (nothing listens there): start the "
                "server, or check the URL"
            ) from None
        except OSError:
            return

    def _complete(self, request: dict, state: _RunState) -> Completion:
        """One request, retried by the client; a failure is a :class:`Completion` without text."""
        import openai

        try:
            # The raw response: the body is read here, so one that is not a chat completion (a proxy's
            # page) fails this request with its first bytes as the error.
            response = self._client.chat.completions.with_raw_response.create(
                **request, extra_body=dict(self.extra_body), extra_headers=self._headers
            )
        except openai.APIStatusError as error:
            message = _status_message(error)
            if error.status_code in _FATAL_STATUSES:
                hint = _FATAL_STATUSES[error.status_code]
                raise BackendError(f"{self.url} answered {message}: {hint}") from None
            return self._failed(message + _attempts(error), state)
        except openai.APITimeoutError as error:
            return self._failed(f"no answer within {self.timeout_s:g} s{_attempts(error)}", state)
        except openai.APIConnectionError as error:
            return self._failed(self._connection_message(error) + _attempts(error), state)
        completion = _completion_from_body(response.http_response.content)
        if completion.text is None:
            return self._failed(completion.error, state)
        with state.lock:
            state.consecutive_failures = 0
        return completion

    def _failed(self, error: str, state: _RunState) -> Completion:
        with state.lock:
            state.consecutive_failures += 1
            stop = state.consecutive_failures >= self.max_consecutive_failures
        if stop:
            raise BackendError(
                f"{self.url}: {self.max_consecutive_failures} requests failed in a row, stopping; "
                f"last: {error}"
            )
        return Completion(None, error=error)

    def _connection_message(self, error: openai.APIConnectionError) -> str:
        """``cannot connect to <root>: connection refused``, or ``connection to <root> lost: …``."""
        import httpx2

        cause = error
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause).rstrip(".")
        detail = detail or type(cause).__name__
        if detail[1:2].islower():  # "Connection refused" reads "connection refused"; "SSL: …" stays
            detail = detail[0].lower() + detail[1:]
        if isinstance(error.__cause__, httpx2.ConnectError):
            return f"cannot connect to {self.base_url}: {detail}"
        return f"connection to {self.base_url} lost: {detail}"


def _status_message(error: openai.APIStatusError) -> str:
    """``HTTP 400 Bad Request``, and the server's error message when its body has one (one line)."""
    message = f"HTTP {error.status_code} {error.response.reason_phrase}".rstrip()
    body = error.body.get("error", error.body) if isinstance(error.body, dict) else None
    said = body.get("message") if isinstance(body, dict) else None
    if isinstance(said, str) and said.strip():
        said = " ".join(said.split())
        message += f": {said[:200]}{'…' if len(said) > 200 else ''}"
    return message


def _attempts(error: openai.APIError) -> str:
    """`` (after n attempts)`` when the client retried the request, from the retry count it sends."""
    attempts = int(error.request.headers.get("x-stainless-retry-count", "0")) + 1
    return f" (after {attempts} attempts)" if attempts > 1 else ""


def _completion_from_body(raw: bytes) -> Completion:
    """The completion of a chat-completions response body; one without text when the body is not one."""
    try:
        choice = json.loads(raw)["choices"][0]
        content = choice["message"]["content"]
        if not isinstance(content, (str, type(None))):
            raise TypeError("content is not text")
    except (ValueError, KeyError, IndexError, TypeError):
        return Completion(None, error=f"the answer is not a chat completion: {raw[:80]!r}")
    return Completion(content or "", truncated=choice.get("finish_reason") == "length")
