"""Cooper's assistant negatives: the offline stand-in, the cache and budget of the writer, and the HTTP
path against the local stub server."""

from __future__ import annotations

import json
import random
import re

import pytest
from stub_openai_server import Reply, StubServer, question

from corewarding.cooper.negatives import (
    NEGATIVE_SYSTEM,
    BackendAssistant,
    NegativeRequest,
    NegativeWriter,
    StandInAssistant,
    corrupt_solution,
    make_assistant,
)
from corewarding.core.answers import extract_answer
from corewarding.core.equivalence import answers_match
from corewarding.data.synthetic import TaskConfig, chain_of, generate_problems, worked_solution
from corewarding.inference.generation import BackendError, Completion, OpenAIBackend


def solutions(config: TaskConfig, count: int) -> list[tuple[str, str]]:
    """(reference, a verified solution) of ``count`` synthetic problems: the worked solution, bare and
    among other words."""
    out = []
    for problem in generate_problems(count, "train", seed=7, config=config):
        chain = chain_of(problem)
        out.append((problem.answer, worked_solution(chain)))
        out.append((problem.answer, f"Let me check each step. {worked_solution(chain)} Done."))
    return out


@pytest.mark.parametrize(
    "config, count",
    [(TaskConfig(), 250), (TaskConfig(steps=4), 250), (TaskConfig(steps=1, operations=("*",)), 50)],
)
def test_the_stand_in_never_writes_an_answer_the_verifier_accepts(config, count):
    rng = random.Random(0)
    cases = solutions(config, count)
    negatives = [corrupt_solution(solution, reference, rng) for reference, solution in cases]
    assert all(n is not None for n in negatives)
    verdicts = answers_match([(reference, extract_answer(n)) for (reference, _), n in zip(cases, negatives)])
    assert not any(verdicts)
    # one changed number or operation: the text keeps its shape (the same number of equations)
    equation = re.compile(r"-?\d+[-+*]\d+=-?\d+")
    assert all(
        len(equation.findall(n)) == len(equation.findall(s)) for (_, s), n in zip(cases, negatives)
    )


def test_the_stand_in_changes_the_answer_of_a_solution_without_equations():
    rng = random.Random(1)
    boxed = corrupt_solution("The total is twelve, so \\boxed{12}.", "12", rng)
    assert boxed.startswith("The total is twelve, so \\boxed{") and extract_answer(boxed) not in ("12", None)
    gsm = corrupt_solution("She has 12 apples.\n#### 12", "12", rng)
    assert gsm.startswith("She has 12 apples.\n#### ") and extract_answer(gsm) != "12"
    fraction = corrupt_solution("\\boxed{\\frac{3}{4}}", "3/4", rng)
    assert not answers_match([("3/4", extract_answer(fraction))])[0]
    assert corrupt_solution("\\boxed{x}", "x", rng) is None  # nothing numeric to change


def test_the_stand_in_is_deterministic_per_positive_and_counts_what_it_cannot_corrupt():
    requests = [NegativeRequest("q", "Start with 3. Add 4.", "7", "3+4=7. \\boxed{7}"),
                NegativeRequest("r", "Name it.", "x", "\\boxed{x}")]
    seen = [[], []]
    for run in seen:
        StandInAssistant(seed=0).write(requests, lambda i, completion, run=run: run.append(completion))
    assert seen[0] == seen[1]
    assert seen[0][0].text is not None and seen[0][1] == Completion(
        None, error="the stand-in found no number to change"
    )


class ScriptedAssistant:
    """Answers each question id with a fixed completion; records what it was asked."""

    description = "scripted"

    def __init__(self, replies: dict[str, Completion]):
        self.replies = replies
        self.asked: list[str] = []

    def write(self, requests, on_result):
        for i, request in enumerate(requests):
            self.asked.append(request.question_id)
            on_result(i, self.replies[request.question_id])


def request(question_id: str, positive: str = "2+3=5. \\boxed{5}") -> NegativeRequest:
    return NegativeRequest(question_id, f"What is 2+3? ({question_id})", "5", positive)


REPLIES = {
    "wrong": Completion("2+3=6. \\boxed{6}"),
    "right": Completion("2+3 is five. \\boxed{5}"),  # the assistant failed to be wrong
    "blank": Completion("  "),
    "failed": Completion(None, error="HTTP 500 Internal Server Error"),
    "late": Completion("2+3=7. \\boxed{7}"),
}


def counts(written) -> tuple[int, ...]:
    return written.calls, written.cached, written.failed, written.invalid, written.over_budget


def test_invalid_failed_and_unasked_negatives_are_masked_and_counted(tmp_path):
    assistant = ScriptedAssistant(REPLIES)
    writer = NegativeWriter(assistant, tmp_path / "negatives.jsonl", calls_per_step=4)
    requests = [request(q) for q in ("wrong", "right", "blank", "failed", "late")]
    written = writer.write(requests + [request("wrong")])  # the same positive twice: asked once
    assert written.texts == ["2+3=6. \\boxed{6}", None, None, None, None, "2+3=6. \\boxed{6}"]
    assert counts(written) == (4, 0, 1, 2, 1)
    assert written.failures == {"HTTP 500 Internal Server Error": 1}
    assert written.metrics()["rm/assistant_invalid"] == 2
    assert assistant.asked == ["wrong", "right", "blank", "failed"]

    # A resumed run (a new writer on the same cache) asks only for what did not come back; invalid
    # negatives are cached and stay invalid, unasked. Another positive of the same question is asked.
    assistant = ScriptedAssistant(REPLIES)
    again = NegativeWriter(assistant, tmp_path / "negatives.jsonl", calls_per_step=4)
    written = again.write(requests + [request("wrong", "5 \\boxed{5}")])
    assert assistant.asked == ["failed", "late", "wrong"]
    assert counts(written) == (3, 3, 1, 2, 0)
    assert written.texts[4] == "2+3=7. \\boxed{7}"
    lines = [json.loads(line) for line in (tmp_path / "negatives.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["wrong", "right", "blank", "late", "wrong"]
    assert lines[0]["fingerprint"] == request("wrong").key and lines[0]["backend"] == "scripted"


def negative_key(body: dict) -> str:
    """The stub's key of a request for a negative: the question's ``Q-<id>``."""
    return re.search(r"Q-\w+", body["messages"][-1]["content"])[0]


def test_negatives_from_an_openai_compatible_endpoint(tmp_path):
    replies = {
        "Q-0": Reply(content="7+3=11, so \\boxed{11}"),
        "Q-1": Reply(content="He has \\boxed{10} apples."),  # right: invalid
        "Q-2": Reply(status=500),
    }
    requests = [NegativeRequest(str(i), question(str(i)), "10", "7+3=10. \\boxed{10}") for i in range(3)]
    with StubServer(lambda key, attempt: replies[key], key=negative_key) as server:
        backend = OpenAIBackend(server.url, "stub-model", api_key_env=None, max_attempts=1, timeout_s=10.0)
        writer = NegativeWriter(BackendAssistant(backend, max_new_tokens=300), tmp_path / "n.jsonl", 8)
        written = writer.write(requests)
        assert written.texts == ["7+3=11, so \\boxed{11}", None, None]
        assert (written.calls, written.failed, written.invalid) == (3, 1, 1)
        assert written.failures == {"HTTP 500 Internal Server Error": 1}
        body = next(b for b in server.bodies if question("0") in b["messages"][1]["content"])
        assert body["messages"][0] == {"role": "system", "content": NEGATIVE_SYSTEM}
        assert "Correct solution:\n7+3=10. \\boxed{10}" in body["messages"][1]["content"]
        assert (body["temperature"], body["max_tokens"], body["model"]) == (0.7, 300, "stub-model")
        again = NegativeWriter(BackendAssistant(backend), tmp_path / "n.jsonl", 8).write(requests)
        assert again.cached == 2 and server.received == {"Q-0": 1, "Q-1": 1, "Q-2": 2}


def test_a_wrong_key_or_url_stops_the_writer_with_one_line(tmp_path):
    with StubServer(lambda key, attempt: Reply(status=401), key=negative_key) as server:
        backend = OpenAIBackend(server.url, "stub-model", api_key_env=None, max_attempts=1)
        writer = NegativeWriter(BackendAssistant(backend), tmp_path / "n.jsonl", 8)
        with pytest.raises(BackendError, match="check the API key"):
            writer.write([NegativeRequest("0", question("0"), "10", "\\boxed{10}")])


def test_make_assistant_names_the_stand_in_or_a_backend():
    assert isinstance(make_assistant("stand-in", "vllm"), StandInAssistant)
    assistant = make_assistant("m", "openai", base_url="http://localhost:1/v1", api_key_env=None)
    assert assistant.description == "openai:m@http://localhost:1/v1"
    with pytest.raises(ValueError, match="base URL"):
        make_assistant("m", "openai")
    with pytest.raises(ValueError, match="backend must be one of"):
        make_assistant("m", "llama")
