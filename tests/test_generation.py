"""Generation backends: the HTTP one against a local stub server (answers, retries, timeouts, limits,
n samples, connection errors), the transformers one on tiny models (n samples, batches, seeding,
stops), vLLM's absence."""

from __future__ import annotations

import threading

import pytest
import torch
from stub_openai_server import Reply, StubServer, good, question, rephrasing
from transformers import AutoModelForCausalLM, AutoTokenizer

from corewarding.core.answers import extract_answer
from corewarding.core.optional_packages import MissingPackageError
from corewarding.core.prompts import chat_messages
from corewarding.data.synthetic import generate_problems
from corewarding.inference.generation import (
    BackendError,
    Completion,
    GenerationSettings,
    OpenAIBackend,
    TransformersBackend,
    VLLMBackend,
)
from corewarding.inference.model_names import tiny_model_dir
from corewarding.tiny.model import TinyModelConfig, build_model, build_tokenizer

TINY_MODEL_DIR = tiny_model_dir("tiny")

def http_backend(server: StubServer, **options) -> OpenAIBackend:
    """A backend on the stub: 3 attempts per request (the client's waits are short: 0.5 s, then 1 s)."""
    return OpenAIBackend(
        server.url, "stub-model", **{"max_attempts": 3, "timeout_s": 10.0, "api_key_env": None, **options}
    )


def generate(
    backend, pairs: list[str], settings: GenerationSettings = GenerationSettings(temperature=0.7, top_p=0.8)
) -> dict[str, Completion]:
    """One completion per pair, checking that the callback saw what ``generate`` returns."""
    results: dict[int, list[Completion]] = {}
    conversations = [[{"role": "user", "content": question(p)}] for p in pairs]
    returned = backend.generate(conversations, settings, results.__setitem__)
    assert sorted(results) == list(range(len(pairs)))
    assert returned == [results[i] for i in range(len(pairs))]
    return {pairs[i]: completion for i, [completion] in results.items()}


def scripted(replies: dict[tuple[str, int], Reply]):
    """Scripted replies by (pair id, attempt); a good rephrasing otherwise."""
    return lambda pair, attempt: replies.get((pair, attempt)) or good(pair, attempt)


def gaps(server: StubServer, pair: str) -> list[float]:
    """Seconds between the attempts of a request, as the server saw them."""
    times = server.arrived[pair]
    return [later - earlier for earlier, later in zip(times, times[1:])]


def test_success_and_the_request_sent(monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test")
    with StubServer() as server:
        backend = http_backend(server, api_key_env="STUB_KEY", extra_body={"seed": 3})
        settings = GenerationSettings(temperature=0.7, top_p=0.8, max_new_tokens=99)
        results = generate(backend, ["a", "b", "c"], settings)
    assert results["b"] == Completion(f"[REPHRASED]\n{rephrasing('b')}\n[/REPHRASED]")
    assert server.received == {"a": 1, "b": 1, "c": 1}
    body = server.bodies[0]
    assert {k: body[k] for k in ("model", "temperature", "top_p", "max_tokens", "seed")} == {
        "model": "stub-model",
        "temperature": 0.7,
        "top_p": 0.8,
        "max_tokens": 99,
        "seed": 3,
    }
    assert body["messages"][0]["role"] == "user"
    headers = {name.lower(): value for name, value in server.headers[0].items()}
    assert headers["authorization"] == "Bearer sk-test"


def test_no_key_when_the_variable_is_unset(monkeypatch):
    monkeypatch.delenv("STUB_KEY", raising=False)
    with StubServer() as server:
        generate(http_backend(server, api_key_env="STUB_KEY"), ["a"])
    assert "authorization" not in {name.lower() for name in server.headers[0]}


def test_base_url_forms():
    for url in ("http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/chat/completions"):
        assert OpenAIBackend(url, "m").url == "http://h:1/v1/chat/completions"
    with pytest.raises(ValueError, match="must be an http"):
        OpenAIBackend("localhost:8000/v1", "m")
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        OpenAIBackend("http://h:1/v1", "m", max_attempts=0)


def test_malformed_answers():
    replies = {
        ("none", 1): Reply(content="Ana owns 7 pens and gets 3 more."),  # no markers: an answer all the same
        ("empty", 1): Reply(content=""),
        ("null", 1): Reply(content=None),
        ("cut", 1): Reply(content="[REPHRASED]\nAna owns", finish_reason="length"),
        ("html", 1): Reply(body=b"<html>proxy error</html>"),  # not a chat completion: fails at once
        ("shape", 1): Reply(body=b'{"choices": []}'),
        ("broken", 1): Reply(body=b"{"),
    }
    with StubServer(scripted(replies)) as server:
        results = generate(http_backend(server), ["none", "empty", "null", "cut", "html", "shape", "broken"])
    assert results["none"] == Completion("Ana owns 7 pens and gets 3 more.")
    assert results["empty"] == results["null"] == Completion("")
    assert results["cut"] == Completion("[REPHRASED]\nAna owns", truncated=True)
    not_one = "the answer is not a chat completion: "
    assert results["html"] == Completion(None, error=not_one + "b'<html>proxy error</html>'")
    assert results["shape"] == Completion(None, error=not_one + "b'{\"choices\": []}'")
    assert results["broken"] == Completion(None, error=not_one + "b'{'")
    assert server.received["html"] == server.received["shape"] == server.received["broken"] == 1


def test_a_timeout_is_retried():
    replies = {("slow", 1): Reply(delay_s=3.0)}
    with StubServer(scripted(replies)) as server:
        results = generate(http_backend(server, timeout_s=0.5), ["slow"])
    assert results["slow"] == Completion(f"[REPHRASED]\n{rephrasing('slow')}\n[/REPHRASED]")
    assert server.received["slow"] == 2


def test_a_row_that_always_times_out_fails():
    with StubServer(lambda pair, attempt: Reply(delay_s=3.0)) as server:
        results = generate(http_backend(server, timeout_s=0.3, max_attempts=2), ["slow"])
    assert results["slow"] == Completion(None, error="no answer within 0.3 s (after 2 attempts)")


def test_retries_honour_retry_after_and_back_off():
    replies = {
        ("seconds", 1): Reply(status=429, headers={"Retry-After": "1.5"}),
        ("hour", 1): Reply(status=429, headers={"Retry-After": "3600"}),
        ("backoff", 1): Reply(status=503),
        ("backoff", 2): Reply(status=502),
    }
    with StubServer(scripted(replies)) as server:
        results = generate(http_backend(server), ["seconds", "hour", "backoff"])
    assert results["seconds"].text is not None and server.received["seconds"] == 2
    assert gaps(server, "seconds")[0] >= 1.5  # the client's own first wait would be at most 0.5 s
    # A server asking to wait for an hour is not retried: the request fails, a later run sends it again.
    assert results["hour"] == Completion(None, error="HTTP 429 Too Many Requests")
    assert server.received["hour"] == 1
    assert results["backoff"].text is not None and server.received["backoff"] == 3
    first, second = gaps(server, "backoff")
    # Exponential backoff: 0.5 s then 1 s, less up to 25 %. Lower bounds only: a busy machine can only
    # lengthen a gap, and the second's least (0.75 s) is above the first's most (0.5 s).
    assert first > 0.3 and second > 0.7


def test_client_errors_fail_the_row_without_retrying():
    # vLLM's error body; the line break in its message becomes a space
    too_long = b'{"object": "error", "message": "The context length is 4096 tokens.\\n(5000 asked)"}'
    replies = {("long", 1): Reply(status=400), ("longer", 1): Reply(status=400, body=too_long)}
    with StubServer(scripted(replies)) as server:
        results = generate(http_backend(server), ["long", "longer", "fine"])
    assert results["long"] == Completion(None, error="HTTP 400 Bad Request")
    assert results["longer"].error == (
        "HTTP 400 Bad Request: The context length is 4096 tokens. (5000 asked)"
    )
    assert results["fine"].text is not None
    assert server.received["long"] == server.received["longer"] == 1


@pytest.mark.parametrize(
    "status, hint", [(401, "check the API key"), (404, "check the base URL and the model name")]
)
def test_a_wrong_key_or_url_stops_the_run(status, hint):
    with StubServer(lambda pair, attempt: Reply(status=status)) as server:
        backend = http_backend(server, concurrency=1)
        with pytest.raises(BackendError) as excinfo:
            generate(backend, [str(i) for i in range(20)])
    message = str(excinfo.value)
    assert hint in message and "\n" not in message and f"HTTP {status}" in message
    assert sum(server.received.values()) < 20  # the rest was never sent


def test_a_dead_server_stops_the_run():
    with StubServer(lambda pair, attempt: Reply(status=503)) as server:
        backend = http_backend(server, concurrency=1, max_attempts=2, max_consecutive_failures=3)
        with pytest.raises(BackendError) as excinfo:
            generate(backend, [str(i) for i in range(20)])
    assert str(excinfo.value) == (
        f"{backend.url}: 3 requests failed in a row, stopping; "
        "last: HTTP 503 Service Unavailable (after 2 attempts)"
    )
    assert sum(server.received.values()) == 3 * 2


def test_a_connection_refused_during_a_run_is_retried_then_fails_the_row(monkeypatch):
    with StubServer() as server:
        url = server.url
    backend = OpenAIBackend(url, "m", api_key_env=None, max_attempts=2)
    # The server was there when the run started (nothing listening at the start is refused at once:
    # tests/test_rephrase.py) and has gone since.
    monkeypatch.setattr(backend, "_check_listening", lambda: None)
    results = generate(backend, ["a"])
    assert results["a"].error == f"cannot connect to {url}: connection refused (after 2 attempts)"


def test_a_dropped_connection_is_retried():
    replies = {("a", 1): Reply(drop=True), ("b", 1): Reply(drop=True), ("b", 2): Reply(drop=True)}
    with StubServer(scripted(replies)) as server:
        results = generate(http_backend(server, max_attempts=2), ["a", "b"])
    assert results["a"].text is not None and server.received["a"] == 2
    assert results["b"].text is None and results["b"].error.startswith(f"connection to {server.url} lost: ")
    assert results["b"].error.endswith("(after 2 attempts)")


def test_concurrency_limit():
    # Every request waits until three are in flight together, then is held half a second more: a client
    # that keeps three in flight is answered in three waves; one that allowed a fourth has sent it by
    # then (counted), and one that kept fewer would never make three.
    three_in_flight = threading.Barrier(3)

    def three_at_a_time(pair, attempt):
        try:
            three_in_flight.wait(timeout=10)
        except threading.BrokenBarrierError:
            three_in_flight.reset()
        return Reply(content="[REPHRASED]\nx\n[/REPHRASED]", delay_s=0.5)

    with StubServer(three_at_a_time) as server:
        generate(http_backend(server, concurrency=3), [str(i) for i in range(9)])
    assert server.max_in_flight == 3 and sum(server.received.values()) == 9


def test_n_samples_are_n_requests_and_one_callback_per_conversation():
    with StubServer(scripted({("b", 2): Reply(status=400)})) as server:
        backend = http_backend(server, concurrency=4)
        conversations = [[{"role": "user", "content": question(p)}] for p in ("a", "b")]
        calls: list[tuple[int, list[Completion]]] = []
        returned = backend.generate(
            conversations, GenerationSettings(n=3, temperature=1.0), lambda i, c: calls.append((i, c))
        )
    assert server.received == {"a": 3, "b": 3} and all("n" not in body for body in server.bodies)
    assert sorted(i for i, _ in calls) == [0, 1] and [dict(calls)[i] for i in (0, 1)] == returned
    assert all(c.text.startswith("[REPHRASED]") for c in returned[0])
    assert sorted(c.error or "" for c in returned[1]) == ["", "", "HTTP 400 Bad Request"]  # one failed


# --- transformers --------------------------------------------------------------------------------------


def test_transformers_backend_on_a_tiny_model(tmp_path):
    from test_models import save_tiny_model

    backend = TransformersBackend.load(save_tiny_model(tmp_path / "tiny"), batch_size=2)
    conversations = [[{"role": "user", "content": question(str(i))}] for i in range(3)]
    conversations.append(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question("3")}]
    )
    results: dict[int, list[Completion]] = {}
    backend.generate(conversations, GenerationSettings(max_new_tokens=4), results.__setitem__)
    assert sorted(results) == [0, 1, 2, 3]
    assert backend.description.startswith("transformers:")
    # Batched and left-padded (two per call), each greedy completion is what the model writes alone.
    import torch

    from corewarding.inference.models import render_conversation

    for i, conversation in enumerate(conversations):
        ids = backend.tokenizer(render_conversation(backend.tokenizer, conversation), return_tensors="pt",
                                add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            alone = backend.model.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1]:]
        [completion] = results[i]
        assert completion.error is None
        assert completion.text == backend.tokenizer.decode(alone, skip_special_tokens=True), i


@pytest.fixture(scope="module")
def tiny_lm():
    tokenizer = build_tokenizer()
    config = TinyModelConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
    )
    return build_model(tokenizer, config, seed=0).eval(), tokenizer


@pytest.fixture(scope="module")
def shipped_lm():
    model = AutoModelForCausalLM.from_pretrained(TINY_MODEL_DIR).eval()
    return model, AutoTokenizer.from_pretrained(TINY_MODEL_DIR)


CONVERSATIONS = [[{"role": "user", "content": q}] for q in ("Start with 7. Add 5.", "What is 3?", "Hi")]


def test_n_samples_reproducibly_leaving_the_callers_random_state_alone(tiny_lm):
    model, tokenizer = tiny_lm
    backend = TransformersBackend(model, tokenizer, batch_size=4, seed=1)
    settings = GenerationSettings(n=3, temperature=1.0, max_new_tokens=6)
    state = torch.random.get_rng_state()
    calls: list[tuple[int, list[Completion]]] = []
    first = backend.generate(CONVERSATIONS, settings, lambda i, c: calls.append((i, c)))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert calls == list(enumerate(first))  # one call per conversation, as its batch finishes
    assert [len(group) for group in first] == [3, 3, 3]
    assert all(isinstance(c.text, str) for group in first for c in group)
    assert backend.generate(CONVERSATIONS, settings) == first
    other_seed = TransformersBackend(model, tokenizer, batch_size=4, seed=2)
    assert other_seed.generate(CONVERSATIONS, settings) != first


@pytest.mark.parametrize("batch_size, sequences", [(4, [3, 3, 3]), (7, [6, 3]), (2, [3, 3, 3])])
def test_a_batch_holds_whole_conversations(tiny_lm, monkeypatch, batch_size, sequences):
    model, tokenizer = tiny_lm
    seen = []
    generate = model.generate

    def spy(**inputs):
        seen.append(len(inputs["input_ids"]))
        return generate(**inputs)

    monkeypatch.setattr(model, "generate", spy)
    backend = TransformersBackend(model, tokenizer, batch_size=batch_size)
    backend.generate(CONVERSATIONS, GenerationSettings(n=3, temperature=1.0, max_new_tokens=2))
    assert seen == sequences


def test_left_padded_batches_decode_like_single_prompts_on_the_shipped_model(shipped_lm):
    model, tokenizer = shipped_lm
    problems = generate_problems(6, "test", seed=2)  # prompts of different lengths share a batch
    conversations = [chat_messages(p.question) for p in problems]
    settings = GenerationSettings(max_new_tokens=30)
    batched = TransformersBackend(model, tokenizer, batch_size=6).generate(conversations, settings)
    alone = TransformersBackend(model, tokenizer, batch_size=1).generate(conversations, settings)
    assert batched == alone
    assert all(extract_answer(group[0].text) is not None for group in batched)


def test_a_completion_without_a_stop_token_is_truncated(shipped_lm):
    model, tokenizer = shipped_lm
    conversations = [chat_messages(p.question) for p in generate_problems(4, "test", seed=3)]
    backend = TransformersBackend(model, tokenizer)
    cut = backend.generate(conversations, GenerationSettings(max_new_tokens=3))
    whole = backend.generate(conversations, GenerationSettings(max_new_tokens=48))
    assert all(c.truncated for [c] in cut)
    assert not any(c.truncated for [c] in whole)
    assert all(c.text.startswith(d.text) and "<|im_end|>" not in c.text for [c], [d] in zip(whole, cut))


def test_vllm_missing_is_a_one_line_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        # the user's to install (exit 2), not a failing backend (exit 1)
        missing = (
            r"^the vllm backend needs the vllm package, which is not installed: pip install "
            r"'corewarding\[vllm\]'$"
        )
        with pytest.raises(MissingPackageError, match=missing):
            VLLMBackend("some/model")
    else:
        pytest.skip("vLLM is installed")
