"""The rephrasing pipeline end to end against a local stub server: resuming after an interrupt or an
outage without sending anything twice, the cache, the pair dataset through the loaders, and the CLI."""

from __future__ import annotations

import json
import signal
import threading

import pytest
from stub_openai_server import Reply, StubServer, good, problems, question, rephrasing
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.data.loaders import load_problems
from corewarding.data.records import Problem
from corewarding.data.rephrasing_checks import validate_pairs
from corewarding.data.rephrasing_prompt import DEFAULT_INSTRUCTION, Instruction
from corewarding.inference.generation import GenerationSettings, OpenAIBackend
from corewarding.inference.rephrase import (
    CachedCompletion,
    CompletionCache,
    backend_solver,
    pair_rows,
    rephrase_problems,
    write_pair_dataset,
)


def backend(server: StubServer, **options) -> OpenAIBackend:
    """A backend on the stub: 2 attempts per request (the client waits 0.5 s before the second)."""
    return OpenAIBackend(
        server.url, "stub-model", **{"api_key_env": None, "max_attempts": 2, "timeout_s": 10.0, **options}
    )


def cache_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_run_rephrases_caches_and_parses(tmp_path):
    replies = {"3": Reply(content="Sorry, I cannot do that."), "4": Reply(status=500)}
    with StubServer(lambda pair, attempt: replies.get(pair) or good(pair, attempt)) as server:
        run = rephrase_problems(problems(6), backend(server), tmp_path / "cache.jsonl", progress=False)
    assert [p.rephrasing for p in run.problems] == [
        rephrasing("0"),
        rephrasing("1"),
        rephrasing("2"),
        None,
        None,
        rephrasing("5"),
    ]
    assert run.output_problems == {
        "3": "no start marker [REPHRASED]",
        "4": "request failed: HTTP 500 Internal Server Error (after 2 attempts)",
    }
    assert (run.sent, run.failed, run.cached, run.other_backends) == (6, 1, 0, 0)
    lines = cache_lines(tmp_path / "cache.jsonl")
    assert sorted(line["id"] for line in lines) == [
        "0",
        "1",
        "2",
        "3",
        "5",
    ]  # the failed request is not cached
    assert lines[0]["fingerprint"] == DEFAULT_INSTRUCTION.fingerprint(question(lines[0]["id"]))
    assert lines[0]["backend"] == f"openai:stub-model@{server.url}"


def test_an_interrupted_run_resumes_without_sending_anything_twice(tmp_path):
    """Ctrl-C after 4 answers; requests in flight are still answered and cached; the rerun sends the rest.

    The server holds every answer after the fourth until the interrupt has reached the main thread, so
    the run cannot finish first however slow the machine is (no timing in this test)."""
    main = threading.main_thread().ident
    interrupted = threading.Event()

    def on_interrupt(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    def script(pair: str, attempt: int) -> Reply:
        if sum(server.answered.values()) >= 4:
            interrupted.wait(timeout=120)
        return good(pair, attempt)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with StubServer(script) as server:
            server.after_answer = lambda answered: answered == 4 and signal.pthread_kill(main, signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):
                rephrase_problems(
                    problems(30), backend(server, concurrency=3), tmp_path / "cache.jsonl", progress=False
                )
            first = sum(server.received.values())
            assert 4 <= len(cache_lines(tmp_path / "cache.jsonl")) == first < 30

            server.after_answer = None
            run = rephrase_problems(
                problems(30), backend(server, concurrency=3), tmp_path / "cache.jsonl", progress=False
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert server.received == {str(i): 1 for i in range(30)}  # every pair id exactly once overall
    assert (run.sent, run.cached, run.failed) == (30 - first, first, 0)
    assert all(p.rephrasing == rephrasing(p.id) for p in run.problems)


def test_an_outage_then_a_rerun_sends_only_what_failed(tmp_path):
    down = threading.Event()

    def script(pair: str, attempt: int) -> Reply:
        return Reply(status=503) if down.is_set() else good(pair, attempt)

    with StubServer(script) as server:
        server.after_answer = lambda answered: answered == 5 and down.set()
        once = backend(server, concurrency=1, max_attempts=1)
        first = rephrase_problems(problems(12), once, tmp_path / "cache.jsonl", progress=False)
        assert first.failures == {"HTTP 503 Service Unavailable": 7} and len(first.output_problems) == 7
        down.clear()
        second = rephrase_problems(
            problems(12), backend(server, concurrency=1), tmp_path / "cache.jsonl", progress=False
        )
    assert server.answered == {str(i): 1 for i in range(12)}
    assert all(server.received[str(i)] == 1 for i in range(5))
    assert (second.sent, second.cached, second.failed, second.output_problems) == (7, 5, 0, {})


def test_what_is_resent(tmp_path):
    cache = tmp_path / "cache.jsonl"
    with StubServer() as server:
        rephrase_problems(problems(3), backend(server), cache, progress=False)
        edited = [problems(3)[0], Problem("1", question("1") + " Explain.", "10"), problems(3)[2]]
        run = rephrase_problems(edited, backend(server), cache, progress=False)
        assert run.sent == 1 and server.received["1"] == 2  # an edited question is sent again

        other = Instruction(DEFAULT_INSTRUCTION.template + "\nBe concise.")
        run = rephrase_problems(problems(3), backend(server), cache, instruction=other, progress=False)
        assert run.sent == 3  # so is everything under another instruction


def test_the_cache_skips_a_line_cut_by_a_killed_run(tmp_path):
    path = tmp_path / "cache.jsonl"
    entry = CachedCompletion(
        "0", "f", "[REPHRASED]\nx\n[/REPHRASED]", False, "openai:m@u", "2026-01-01T00:00:00+00:00"
    )
    path.write_text(json.dumps(entry.__dict__) + "\n" + '{"id": "1", "fingerpr', encoding="utf-8")
    cache = CompletionCache(path)
    assert len(cache) == 1 and len(cache.skipped_lines) == 1 and cache.get("0", "f") == entry
    cache.add(CachedCompletion("2", "f", "y", True, "b", "t"))
    assert CompletionCache(path).get("2", "f").truncated is True


def cached_line(pair: str, text: str) -> bytes:
    fingerprint = DEFAULT_INSTRUCTION.fingerprint(question(pair))
    entry = CachedCompletion(pair, fingerprint, text, False, "openai:m@u", "2026-01-01T00:00:00+00:00")
    return (json.dumps(entry.__dict__, ensure_ascii=False) + "\n").encode("utf-8")


def test_undecodable_cache_lines_are_skipped_and_reported(tmp_path):
    """A junk byte in one line, and a last line cut inside a multibyte character: the other lines are
    read, the two questions are sent again, the run names the file and the lines it skipped."""
    path = tmp_path / "cache.jsonl"
    good_line = cached_line("0", f"[REPHRASED]\n{rephrasing('0')}\n[/REPHRASED]")
    junk = cached_line("1", "[REPHRASED]\nx\n[/REPHRASED]").replace(b"x", b"\xe6", 1)
    cut = cached_line("2", "[REPHRASED]\n两个苹果\n[/REPHRASED]")
    cut = cut[: cut.index("个".encode()) + 1]  # in the middle of a three-byte character
    path.write_bytes(good_line + junk + cut)
    with StubServer() as server:
        run = rephrase_problems(problems(3), backend(server), path, progress=False)
    assert server.received == {"1": 1, "2": 1} and (run.cached, run.sent, run.failed) == (1, 2, 0)
    assert all(p.rephrasing == rephrasing(p.id) for p in run.problems)
    assert [(line.number, line.reason, line.last) for line in run.skipped_cache_lines] == [
        (2, "not UTF-8", False),
        (3, "not UTF-8", True),
    ]
    assert run.cache_summary() == (
        f"skipped 2 unreadable lines of {path} (line 2: not UTF-8; line 3: not UTF-8, cut off)"
    )
    again = CompletionCache(path)  # the answers were appended on lines of their own
    assert len(again) == 3 and len(again.skipped_lines) == 2


def test_cached_rows_from_another_backend_are_counted(tmp_path):
    with StubServer() as server:
        rephrase_problems(problems(2), backend(server), tmp_path / "cache.jsonl", progress=False)
        other = OpenAIBackend(server.url, "another-model", api_key_env=None)
        run = rephrase_problems(problems(2), other, tmp_path / "cache.jsonl", progress=False)
    assert (run.sent, run.cached, run.other_backends) == (0, 2, 2)


def test_backend_solver_asks_each_question_k_times():
    def script(key: str, attempt: int) -> Reply:
        return Reply(status=400) if key == "Q-x" and attempt == 2 else Reply(content=f"so \\boxed{{{key}}}")

    with StubServer(script) as server:
        solve = backend_solver(backend(server), GenerationSettings(temperature=1.0))
        completions = solve([question("x"), question("y")], 3)
    assert completions[1] == ["so \\boxed{Q-y}"] * 3
    failed_once = ["", "so \\boxed{Q-x}", "so \\boxed{Q-x}"]  # a failed request answers nothing
    assert sorted(completions[0]) == failed_once
    assert server.bodies[0]["messages"][0]["role"] == "system"


def test_a_greedy_backend_solver_asks_each_question_once():
    with StubServer(lambda key, attempt: Reply(content=f"so \\boxed{{{key}}}")) as server:
        completions = backend_solver(backend(server), GenerationSettings())([question("x")], 4)
    assert completions == [["so \\boxed{Q-x}"] * 4] and server.received == {"Q-x": 1}


# --- the pair dataset ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_the_pair_dataset_reads_back_through_the_loaders(tmp_path, suffix):
    pairs = [
        Problem("a", question("a"), "10", rephrasing("a"), meta={"level": "Level 1", "type": "Algebra"}),
        Problem(
            "b", question("b"), "10", "<rewritten question>", meta={"level": "Level 2", "type": "Algebra"}
        ),
        Problem("c", question("c"), None, None, meta={"level": "Level 3", "type": "Geometry"}),
    ]
    reports = validate_pairs(pairs, output_problems={"c": "request failed: HTTP 500"})
    path = write_pair_dataset(tmp_path / f"pairs{suffix}", pair_rows(pairs, reports))
    loaded = load_problems(path)
    assert [(p.id, p.question, p.answer, p.rephrasing, p.rephrasing_valid) for p in loaded] == [
        ("a", question("a"), "10", rephrasing("a"), True),
        ("b", question("b"), "10", "<rewritten question>", False),
        ("c", question("c"), None, None, False),
    ]
    assert loaded[2].meta == {"level": "Level 3", "type": "Geometry"}
    row = pair_rows(pairs, reports)[1]
    assert row["rejected_by"] == ["placeholder", "length"] and row["flagged_by"] == ["numbers"]
    assert row["checks"]["placeholder"] == {
        "passed": False,
        "detail": "echoes the placeholder '<rewritten question>'",
    }
    assert not list(tmp_path.glob("*.partial"))


def test_unknown_output_format(tmp_path):
    with pytest.raises(ValueError, match="use .jsonl or .parquet"):
        write_pair_dataset(tmp_path / "pairs.csv", [])


@pytest.mark.parametrize("cell, verdict", [("true", True), ("False", False), ("1", True), ("", None)])
def test_the_loaders_read_a_verdict_written_as_text(tmp_path, cell, verdict):
    path = tmp_path / "pairs.csv"
    path.write_text(f"idx,original_question,rephrased_question,solution,rephrasing_valid\n0,Q?,R?,1,{cell}\n")
    assert load_problems(path)[0].rephrasing_valid is verdict


def test_the_loaders_refuse_a_verdict_that_is_not_one(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("idx,original_question,rephrased_question,solution,rephrasing_valid\n0,Q?,R?,1,maybe\n")
    with pytest.raises(
        ValueError, match="row 0 has 'maybe' in column 'rephrasing_valid', expected true or false"
    ):
        load_problems(path)


# --- the command line ----------------------------------------------------------------------------


def write_questions(path, count: int) -> None:
    path.write_text(
        "".join(
            json.dumps({"question": question(str(i)), "answer": "10", "id": str(i)}) + "\n"
            for i in range(count)
        )
    )


def test_rephrase_command_is_resumable(tmp_path):
    write_questions(tmp_path / "questions.jsonl", 4)
    out = tmp_path / "pairs.parquet"
    replies = {"2": Reply(content="[REPHRASED]\n<rewritten problem>\n[/REPHRASED]")}
    runner = CliRunner()
    args = [
        "rephrase",
        str(tmp_path / "questions.jsonl"),
        "-o",
        str(out),
        "-o",
        str(tmp_path / "pairs.jsonl"),
        "--model",
        "stub-model",
        "--max-attempts",
        "1",
    ]
    with StubServer(lambda pair, attempt: replies.get(pair) or good(pair, attempt)) as server:
        result = runner.invoke(app, [*args, "--base-url", server.url])
        assert result.exit_code == 0, result.output
        assert "placeholder" in result.output and "3 of 4" in result.output
        cache = tmp_path / "pairs.parquet.cache.jsonl"
        with cache.open("ab") as file:
            file.write(b'{"id": "\xff"}\n')
        again = runner.invoke(app, [*args, "--base-url", server.url, "--only-valid"])
    assert again.exit_code == 0 and "4 cached, 0 rephrased now" in again.output
    assert f"note: skipped 1 unreadable line of {cache} (line 5: not UTF-8)" in again.output
    assert server.received == {str(i): 1 for i in range(4)}
    assert [p.id for p in load_problems(out)] == ["0", "1", "3"]  # --only-valid


def test_rephrase_command_checks_answers(tmp_path):
    write_questions(tmp_path / "questions.jsonl", 3)

    def script(key: str, attempt: int) -> Reply:
        if key[0] not in "QR":
            return good(key, attempt)
        return Reply(content="\\boxed{11}" if key == "R-1" else "It is \\boxed{10}.")

    with StubServer(script) as server:
        result = CliRunner().invoke(
            app,
            [
                "rephrase",
                str(tmp_path / "questions.jsonl"),
                "-o",
                str(tmp_path / "p.jsonl"),
                "--model",
                "m",
                "--base-url",
                server.url,
                "--check-answers",
                "2",
            ],
        )
    assert result.exit_code == 0, result.output
    assert server.received["Q-0"] == server.received["R-2"] == 2
    reports = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["rejected_by"] for r in reports] == [[], ["answers"], []]
    assert reports[1]["checks"]["answers"]["detail"] == "original 10 (2/2), rephrasing 11 (2/2)"


def test_rephrase_command_reports_failed_requests(tmp_path):
    write_questions(tmp_path / "questions.jsonl", 2)
    with StubServer(
        lambda pair, attempt: Reply(status=503) if pair == "1" else good(pair, attempt)
    ) as server:
        result = CliRunner().invoke(
            app,
            [
                "rephrase",
                str(tmp_path / "questions.jsonl"),
                "-o",
                str(tmp_path / "p.jsonl"),
                "--model",
                "m",
                "--base-url",
                server.url,
                "--max-attempts",
                "1",
            ],
        )
    assert result.exit_code == 1
    assert "1 request failed: HTTP 503 Service Unavailable; run the same command" in result.output
    assert [p.rephrasing_valid for p in load_problems(tmp_path / "p.jsonl")] == [True, False]


def test_an_endpoint_where_nothing_listens_is_one_line_at_once_and_nothing_is_written(tmp_path):
    # It used to be retried for 58 s, then "wrote 30 pairs", all of them rejected.
    write_questions(tmp_path / "questions.jsonl", 3)
    with StubServer() as server:
        url = server.url  # closed: nothing listens there any more
    args = ["-o", str(tmp_path / "p.jsonl"), "--model", "m", "--base-url", url]
    result = CliRunner().invoke(app, ["rephrase", str(tmp_path / "questions.jsonl"), *args])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"error: cannot connect to {url}: connection refused (nothing listens there): start the server, or "
        "check the URL"
    )
    assert "wrote" not in result.output and not (tmp_path / "p.jsonl").exists()


def test_a_run_counts_each_cause_of_failure(tmp_path):
    replies = {"1": Reply(status=400), "2": Reply(status=503), "3": Reply(status=503)}
    with StubServer(lambda pair, attempt: replies.get(pair) or good(pair, attempt)) as server:
        run = rephrase_problems(
            problems(4), backend(server, max_attempts=1), tmp_path / "cache.jsonl", progress=False
        )
    assert run.failures == {"HTTP 503 Service Unavailable": 2, "HTTP 400 Bad Request": 1}
    summary = "3 requests failed: 2x HTTP 503 Service Unavailable"
    assert run.failure_summary() == f"{summary}; 1x HTTP 400 Bad Request"
    assert run.failure_summary(shown=1) == f"{summary}; 1 other causes"


def test_rephrase_command_stops_on_a_wrong_key(tmp_path):
    write_questions(tmp_path / "questions.jsonl", 2)
    with StubServer(lambda pair, attempt: Reply(status=401)) as server:
        result = CliRunner().invoke(
            app,
            [
                "rephrase",
                str(tmp_path / "questions.jsonl"),
                "-o",
                str(tmp_path / "p.jsonl"),
                "--model",
                "m",
                "--base-url",
                server.url,
            ],
        )
    assert result.exit_code == 1
    assert (
        result.output.strip().splitlines()[-1].startswith("error: ") and "check the API key" in result.output
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give the rephrasing model with --model"),
        (["--model", "m", "--backend", "carrier-pigeon"], "unknown --backend 'carrier-pigeon'"),
        (["--model", "m", "--extra-body", "{oops"], "--extra-body is not JSON"),
        (["--model", "m", "--instruction", "missing.txt"], "cannot read the instruction file missing.txt"),
    ],
)
def test_rephrase_command_user_errors(tmp_path, extra, message):
    write_questions(tmp_path / "questions.jsonl", 1)
    result = CliRunner().invoke(
        app, ["rephrase", str(tmp_path / "questions.jsonl"), "-o", str(tmp_path / "p.jsonl"), *extra]
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {result.output.strip().removeprefix('error: ')}"
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_validate_pairs_command(tmp_path):
    rows = [
        {
            "idx": "a",
            "original_question": question("a"),
            "rephrased_question": rephrasing("a"),
            "solution": "10",
        },
        {
            "idx": "b",
            "original_question": question("b"),
            "rephrased_question": question("b"),
            "solution": "10",
        },
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(
        app,
        [
            "validate-pairs",
            str(tmp_path / "pairs.jsonl"),
            "-o",
            str(tmp_path / "out.parquet"),
            "--max-similarity",
            "0.95",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 of 2" in result.output
    assert [p.rephrasing_valid for p in load_problems(tmp_path / "out.parquet")] == [True, False]


def test_validate_pairs_command_user_errors(tmp_path):
    write_questions(tmp_path / "questions.jsonl", 2)
    runner = CliRunner()
    no_pairs = runner.invoke(app, ["validate-pairs", str(tmp_path / "questions.jsonl")])
    assert (
        no_pairs.exit_code == 2
        and "has no rephrasing column: name it with --dataset-columns question=COL,rephrasing=COL" in no_pairs.output
    )
    write_questions(tmp_path / "three.jsonl", 3)
    misaligned = runner.invoke(
        app, ["validate-pairs", str(tmp_path / "questions.jsonl"), str(tmp_path / "three.jsonl")]
    )
    assert misaligned.exit_code == 2 and "are not row-aligned: 2 rows vs 3" in misaligned.output


def test_validate_pairs_command_on_the_released_math_rephrasings(shared_data, tmp_path):
    math = shared_data / "corewarding-math"
    result = CliRunner().invoke(
        app,
        [
            "validate-pairs",
            str(math / "train.parquet"),
            str(math / "train_rewrite_Qwen3-32B.parquet"),
            "-o",
            str(tmp_path / "m.parquet"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "7,478 of 7,500" in result.output
    loaded = load_problems(tmp_path / "m.parquet")
    assert sum(p.rephrasing_valid is False for p in loaded) == 22
