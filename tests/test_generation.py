"""Rephrasing backends: the HTTP one against a local stub server (answers, retries, timeouts, limits),
the transformers one on a tiny random model, and vLLM's absence."""

from __future__ import annotations

import email.utils
import random
import time

import pytest
from stub_openai_server import Reply, StubServer, good, question, rephrasing

from corewarding.data.rephrasing_backends import (
    BackendError,
    Completion,
    GenerationSettings,
    OpenAIBackend,
    RetryPolicy,
    TransformersBackend,
    VLLMBackend,
)

FAST_RETRIES = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)


def http_backend(server: StubServer, **options) -> tuple[OpenAIBackend, list[float]]:
    """A backend on the stub whose waits are recorded instead of slept."""
    waits: list[float] = []
    options = {
        "retry": FAST_RETRIES,
        "timeout_s": 10.0,
        "api_key_env": None,
        "sleep": waits.append,
        **options,
    }
    return OpenAIBackend(server.url, "stub-model", **options), waits


def generate(
    backend, pairs: list[str], settings: GenerationSettings = GenerationSettings()
) -> dict[str, Completion]:
    results: dict[int, Completion] = {}
    conversations = [[{"role": "user", "content": question(p)}] for p in pairs]
    backend.generate(conversations, settings, lambda i, completion: results.__setitem__(i, completion))
    assert sorted(results) == list(range(len(pairs)))
    return {pairs[i]: completion for i, completion in results.items()}


def scripted(replies: dict[tuple[str, int], Reply]):
    """Scripted replies by (pair id, attempt); a good rephrasing otherwise."""
    return lambda pair, attempt: replies.get((pair, attempt)) or good(pair, attempt)


def test_success_and_the_request_sent(monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test")
    with StubServer() as server:
        backend, waits = http_backend(server, api_key_env="STUB_KEY", extra_body={"seed": 3})
        results = generate(backend, ["a", "b", "c"], GenerationSettings(max_new_tokens=99))
    assert results["b"] == Completion(f"[REPHRASED]\n{rephrasing('b')}\n[/REPHRASED]")
    assert server.received == {"a": 1, "b": 1, "c": 1} and waits == []
    body = server.bodies[0]
    assert {k: body[k] for k in ("model", "temperature", "top_p", "max_tokens", "seed")} == {
        "model": "stub-model",
        "temperature": 0.7,
        "top_p": 0.8,
        "max_tokens": 99,
        "seed": 3,
    }
    assert body["messages"][0]["role"] == "user"
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_no_key_when_the_variable_is_unset(monkeypatch):
    monkeypatch.delenv("STUB_KEY", raising=False)
    with StubServer() as server:
        generate(http_backend(server, api_key_env="STUB_KEY")[0], ["a"])
    assert "Authorization" not in server.headers[0]


def test_base_url_forms():
    for url in ("http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/chat/completions"):
        assert OpenAIBackend(url, "m").url == "http://h:1/v1/chat/completions"
    with pytest.raises(ValueError, match="must be an http"):
        OpenAIBackend("localhost:8000/v1", "m")


def test_malformed_answers():
    replies = {
        ("none", 1): Reply(content="Ana owns 7 pens and gets 3 more."),  # no markers: an answer all the same
        ("empty", 1): Reply(content=""),
        ("null", 1): Reply(content=None),
        ("cut", 1): Reply(content="[REPHRASED]\nAna owns", finish_reason="length"),
        ("json", 1): Reply(body=b"<html>proxy error</html>"),  # not a chat completion: retried
        ("shape", 1): Reply(body=b'{"choices": []}'),
        ("broken", 1): Reply(body=b"{"),
        ("broken", 2): Reply(body=b"{"),
        ("broken", 3): Reply(body=b"{"),
    }
    with StubServer(scripted(replies)) as server:
        results = generate(
            http_backend(server)[0], ["none", "empty", "null", "cut", "json", "shape", "broken"]
        )
    assert results["none"] == Completion("Ana owns 7 pens and gets 3 more.")
    assert results["empty"] == results["null"] == Completion("")
    assert results["cut"] == Completion("[REPHRASED]\nAna owns", truncated=True)
    assert results["json"].text.startswith("[REPHRASED]") and server.received["json"] == 2
    assert results["shape"].text.startswith("[REPHRASED]") and server.received["shape"] == 2
    assert results["broken"].text is None
    assert results["broken"].error == "the answer is not a chat completion: b'{' (after 3 attempts)"


def test_a_timeout_is_retried():
    replies = {("slow", 1): Reply(delay_s=3.0)}
    with StubServer(scripted(replies)) as server:
        backend, waits = http_backend(server, timeout_s=0.5)
        results = generate(backend, ["slow"])
    assert results["slow"] == Completion(f"[REPHRASED]\n{rephrasing('slow')}\n[/REPHRASED]")
    assert server.received["slow"] == 2 and len(waits) == 1


def test_a_row_that_always_times_out_fails():
    with StubServer(lambda pair, attempt: Reply(delay_s=3.0)) as server:
        backend, _ = http_backend(server, timeout_s=0.3, retry=RetryPolicy(max_attempts=2, base_delay_s=0))
        results = generate(backend, ["slow"])
    assert results["slow"] == Completion(None, error="no answer within 0.3 s (after 2 attempts)")


def test_429_honours_retry_after():
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    replies = {
        ("seconds", 1): Reply(status=429, headers={"Retry-After": "7"}),
        ("date", 1): Reply(status=429, headers={"Retry-After": later}),
        ("backoff", 1): Reply(status=503),
        ("backoff", 2): Reply(status=502),
    }
    policy = RetryPolicy(max_attempts=3, base_delay_s=2.0, max_delay_s=30.0)
    for pair, expected in (("seconds", [7.0]), ("date", [30.0])):
        with StubServer(scripted(replies)) as server:
            backend, waits = http_backend(server, retry=policy)
            assert generate(backend, [pair])[pair].text is not None
        assert waits == expected and server.received[pair] == 2
    with StubServer(scripted(replies)) as server:
        backend, waits = http_backend(server, retry=policy)
        assert generate(backend, ["backoff"])["backoff"].text is not None
    assert len(waits) == 2 and 1.0 <= waits[0] <= 2.0 and 2.0 <= waits[1] <= 4.0  # base·2^(n-1)·U(0.5, 1)


def test_retry_delay_formula():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=10.0)
    rng = random.Random(0)
    delays = [policy.delay(attempt, None, rng) for attempt in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        cap = min(10.0, 2 ** (attempt - 1))
        assert cap / 2 <= delay <= cap
    assert (
        policy.delay(1, 3.5, rng) == 3.5
        and policy.delay(1, 99, rng) == 10.0
        and policy.delay(1, -5, rng) == 0.0
    )


def test_client_errors_fail_the_row_without_retrying():
    with StubServer(scripted({("long", 1): Reply(status=400)})) as server:
        results = generate(http_backend(server)[0], ["long", "fine"])
    assert results["long"] == Completion(None, error="HTTP 400 Bad Request")
    assert results["fine"].text is not None
    assert server.received["long"] == 1


@pytest.mark.parametrize(
    "status, hint", [(401, "check the API key"), (404, "check the base URL and the model name")]
)
def test_a_wrong_key_or_url_stops_the_run(status, hint):
    with StubServer(lambda pair, attempt: Reply(status=status)) as server:
        backend, _ = http_backend(server, concurrency=1)
        with pytest.raises(BackendError) as excinfo:
            generate(backend, [str(i) for i in range(20)])
    message = str(excinfo.value)
    assert hint in message and "\n" not in message and f"HTTP {status}" in message
    assert sum(server.received.values()) < 20  # the rest was never sent


def test_a_dead_server_stops_the_run():
    with StubServer(lambda pair, attempt: Reply(status=503)) as server:
        backend, _ = http_backend(server, concurrency=1, max_consecutive_failures=3)
        with pytest.raises(BackendError, match="3 rows failed in a row, stopping; last: HTTP 503"):
            generate(backend, [str(i) for i in range(20)])
    assert sum(server.received.values()) == 3 * FAST_RETRIES.max_attempts


def test_a_refused_connection_is_retried_then_fails_the_row():
    with StubServer() as server:
        url = server.url
    backend = OpenAIBackend(url, "m", retry=RetryPolicy(max_attempts=2, base_delay_s=0), sleep=lambda s: None)
    results = generate(backend, ["a"])
    assert results["a"].text is None and results["a"].error.startswith("cannot connect")


def test_concurrency_limit():
    with StubServer(
        lambda pair, attempt: Reply(content="[REPHRASED]\nx\n[/REPHRASED]", delay_s=0.05)
    ) as server:
        generate(http_backend(server, concurrency=3)[0], [str(i) for i in range(15)])
    assert 1 <= server.max_in_flight <= 3
    assert sum(server.received.values()) == 15


def test_transformers_backend_on_a_tiny_model(tmp_path):
    from test_models import save_tiny_model

    backend = TransformersBackend.load(save_tiny_model(tmp_path / "tiny"), batch_size=2)
    conversations = [[{"role": "user", "content": question(str(i))}] for i in range(3)]
    conversations.append(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question("3")}]
    )
    results: dict[int, Completion] = {}
    backend.generate(conversations, GenerationSettings(max_new_tokens=4), results.__setitem__)
    assert sorted(results) == [0, 1, 2, 3]
    assert all(isinstance(c.text, str) and c.error is None for c in results.values())
    assert backend.description.startswith("transformers:")


def test_vllm_missing_is_a_one_line_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match=r"needs vLLM: pip install 'corewarding\[vllm\]'"):
            VLLMBackend("some/model")
    else:
        pytest.skip("vLLM is installed")
