"""Evaluation: metrics computed exactly from known answers and a stub backend; the eval command."""

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.core.prompts import SYSTEM_PROMPT
from corewarding.data.records import Problem
from corewarding.data.synthetic import generate_problems
from corewarding.inference.evaluate import (
    SAMPLING_TEMPERATURE,
    EvaluationResult,
    evaluate,
    extracted_answers,
    pass_at_k,
    results_table,
    score_answers,
)
from corewarding.inference.generation import Completion, GenerationSettings, TransformersBackend
from corewarding.inference.model_names import tiny_model_dir
from corewarding.tiny.regimes import synthetic_problems

TINY_MODEL_DIR = tiny_model_dir("tiny")

PROBLEMS = [
    Problem(id="a", question="What is 2+2?", answer="4"),
    Problem(id="b", question="What is half of 1?", answer="\\frac{1}{2}"),
    Problem(id="c", question="What is 5+5?", answer="10"),
]
GREEDY = {"a": "2+2=4. \\boxed{4}", "b": "\\boxed{0.5}", "c": "\\boxed{12}"}
SAMPLED = {
    "a": ["\\boxed{4}", "\\boxed{5}", "no box here", "so \\boxed{4.0}"],  # 2 of 4 correct; majority 4
    "b": ["\\boxed{1/3}", "\\boxed{0.5}", "\\boxed{1/3}", "\\boxed{1/3}"],  # 1 of 4 (0.5 = 1/2); majority 1/3
    "c": ["\\boxed{12}", "", "\\boxed{11}", "\\boxed{12}"],  # 0 of 4; majority 12
}


class StubBackend:
    """Known completions per question (None: a failed request); records what it was asked."""

    description = "stub"

    def __init__(self, failed: frozenset[tuple[str, int]] = frozenset()):
        self.calls = []
        self.failed = failed

    def generate(self, conversations, settings, on_result=None):
        self.calls.append((conversations, settings))
        by_question = {p.question: p.id for p in PROBLEMS}
        ids = [by_question[c[-1]["content"]] for c in conversations]
        groups = []
        for i in ids:
            texts = [GREEDY[i]] if settings.greedy else SAMPLED[i][: settings.n]
            groups.append([self.completion(i, j, text) for j, text in enumerate(texts)])
        for index, group in enumerate(groups):
            if on_result is not None:
                on_result(index, group)
        return groups

    def completion(self, question_id: str, sample: int, text: str) -> Completion:
        return (
            Completion(None, error="HTTP 500") if (question_id, sample) in self.failed else Completion(text)
        )


def test_pass_at_k_estimator_by_hand():
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)  # pass@1 is the plain accuracy
    assert pass_at_k(10, 2, 5) == pytest.approx(1 - 56 / 252)  # 1 - C(8,5)/C(10,5)
    assert pass_at_k(5, 0, 5) == 0.0 and pass_at_k(5, 1, 5) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 2)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_evaluate_on_a_stub_backend_gives_hand_computed_metrics():
    backend = StubBackend()
    result = evaluate(PROBLEMS, backend, k=4, temperature=0.7, max_new_tokens=32)
    s = result.scores
    assert (s.num_questions, s.k) == (3, 4)
    assert s.greedy_accuracy == pytest.approx(2 / 3)  # a and b (0.5 is equivalent to 1/2)
    assert s.avg_at_k == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    assert s.pass_at_k == pytest.approx({1: 0.25, 2: (5 / 6 + 1 / 2 + 0) / 3, 4: 2 / 3})
    assert s.maj_at_k == pytest.approx(1 / 3)  # only a's majority (4, with 4.0) is right
    assert s.no_answer_rate == pytest.approx(2 / 12)

    (greedy_conversations, greedy_settings), (_, sampled_settings) = backend.calls
    assert greedy_settings == GenerationSettings(n=1, temperature=0.0, max_new_tokens=32)
    assert sampled_settings == GenerationSettings(n=4, temperature=0.7, max_new_tokens=32)
    assert greedy_conversations[0] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert (result.temperature, result.top_p, result.max_new_tokens) == (0.7, 1.0, 32)


def test_pure_scoring_matches_and_exact_matching_splits_equivalent_forms():
    refs = [p.answer for p in PROBLEMS]
    sampled = [["4", "5", None, "4"], ["1/3", "0.5", "1/3", "1/3"], ["12", None, "11", "12"]]
    equivalence = score_answers(refs, sampled, ["4", "0.5", "12"], pass_ks=[1, 3])
    assert equivalence.greedy_accuracy == pytest.approx(2 / 3)
    assert equivalence.pass_at_k == pytest.approx({1: 0.25, 3: (1 + 3 / 4 + 0) / 3})
    exact = score_answers(refs, sampled, ["4", "0.5", "12"], matching="exact")
    assert exact.greedy_accuracy == pytest.approx(1 / 3)  # "0.5" is not the string "\frac{1}{2}"
    assert exact.avg_at_k == pytest.approx((2 / 4) / 3)


def test_greedy_only_and_sampled_only():
    greedy_only = evaluate(PROBLEMS, StubBackend(), k=0)
    assert greedy_only.scores.avg_at_k is None and greedy_only.temperature is None
    sampled_only = evaluate(
        PROBLEMS, StubBackend(), k=2, greedy=False
    )  # the first two samples: 1, 1, 0 right
    assert sampled_only.scores.greedy_accuracy is None
    assert sampled_only.scores.pass_at_k == pytest.approx({1: 1 / 3, 2: 2 / 3})


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: score_answers(["1"], [["1"], ["2"]]), "given for 2 questions"),
        (lambda: score_answers(["1", "2"], [["1"], ["2", "3"]]), "same, non-zero number"),
        (lambda: score_answers([None], greedy=["1"]), "needs a reference"),
        (lambda: score_answers(["1"], [["1", "2"]], pass_ks=[3]), "1 <= k <= 2"),
        (lambda: evaluate(PROBLEMS, StubBackend(), k=0, greedy=False), "nothing to evaluate"),
        (lambda: evaluate(PROBLEMS, StubBackend(), k=4, temperature=0.0), "all alike"),
        (lambda: GenerationSettings(n=4, temperature=0.0), "greedy decoding"),
        (lambda: GenerationSettings(top_p=0.0), "top_p"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_question_over_the_length_limit_is_refused_before_generation():
    backend = StubBackend()
    too_long = [*PROBLEMS, Problem(id="d", question="x" * 40_000, answer="1")]
    with pytest.raises(ValueError, match="1 question\\(s\\) longer than 32,768 characters"):
        evaluate(too_long, backend, k=2)
    assert backend.calls == []


def test_result_json_round_trip_and_table():
    result = evaluate(PROBLEMS, StubBackend(), k=4)
    again = EvaluationResult.from_json(result.to_json())
    assert again == result
    console = Console(record=True, width=200)
    console.print(results_table({"stub": result}))
    text = console.export_text()
    assert "avg@4" in text and "pass@4" in text and "maj@4" in text
    assert "66.7" in text and "25.0" in text and "33.3" in text


def test_a_failed_completion_is_counted_and_scored_as_no_answer():
    result = evaluate(PROBLEMS, StubBackend(failed=frozenset({("a", 0), ("a", 3)})), k=4, greedy=False)
    assert result.failed == 2
    assert result.scores.avg_at_k == pytest.approx((0 / 4 + 1 / 4 + 0) / 3)  # a's two right answers failed
    assert result.scores.no_answer_rate == pytest.approx(4 / 12)
    assert EvaluationResult.from_json(result.to_json()) == result


# --- the eval command: the real command on the shipped tiny model, with a tiny budget ----------------


def run_eval(*args: str):
    return CliRunner().invoke(app, ["eval", *args])


def test_eval_command_on_the_synthetic_test_split(tmp_path):
    out = tmp_path / "tiny.json"
    result = run_eval(
        "tiny", "synthetic", "--limit", "8", "-k", "2", "--max-new-tokens", "48", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert all(header in result.output for header in ("greedy", "avg@2", "pass@2", "maj@2"))
    assert "8 questions in" in result.output
    record = json.loads(out.read_text())
    assert (record["model"], record["dataset"], record["seed"]) == ("tiny", "synthetic", 0)
    evaluation = EvaluationResult.from_json(json.dumps(record["evaluation"]))
    assert (evaluation.scores.num_questions, evaluation.scores.k) == (8, 2)
    assert (evaluation.temperature, evaluation.max_new_tokens, evaluation.failed) == (SAMPLING_TEMPERATURE, 48, 0)
    # The same as the library on the same questions, model and seed: the command adds nothing of its own.
    again = evaluate(
        synthetic_problems("tiny", 8, "test"),
        TransformersBackend.load(TINY_MODEL_DIR),
        k=2,
        max_new_tokens=48,
    )
    assert again == evaluation


def test_eval_command_on_a_gsm8k_file(tmp_path):
    problems = generate_problems(3, "test", seed=1)
    rows = [{"question": p.question, "answer": f"{p.meta['solution']}\n#### {p.answer}"} for p in problems]
    rows.append({"question": "A question without a reference answer?", "answer": None})
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "result.json"
    result = run_eval(
        "tiny", str(path), "--columns", "question=question,answer=answer", "--max-new-tokens", "48",
        "--answer-extraction", "boxed_or_last_number", "-o", str(out),
    )
    assert result.exit_code == 0, result.output
    assert "1 of 4 questions have no reference answer and are left out" in result.output
    record = json.loads(out.read_text())
    assert record["evaluation"]["scores"]["num_questions"] == 3 and record["evaluation"]["scores"]["k"] == 0
    assert record["answer_extraction"] == "boxed_or_last_number"
    assert record["evaluation"]["completions"] == {}  # kept only when asked


def test_eval_command_keeps_the_completions_when_asked(tmp_path):
    out = tmp_path / "tiny.json"
    result = run_eval("tiny", "synthetic", "--limit", "3", "-k", "2", "--max-new-tokens", "24",
                      "--completions", "-o", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    evaluation = EvaluationResult.from_json(json.dumps(record["evaluation"]))
    greedy, sampled = evaluation.completions["greedy"], evaluation.completions["sampled"]
    assert [len(g) for g in greedy] == [1, 1, 1] and [len(g) for g in sampled] == [2, 2, 2]
    # The scores are those of these very completions.
    answers = extracted_answers(evaluation.completions, record["answer_extraction"])
    references = [p.answer for p in synthetic_problems("tiny", 3, "test")]
    rescored = score_answers(references, sampled=answers["sampled"], greedy=[g[0] for g in answers["greedy"]])
    assert (rescored.avg_at_k, rescored.greedy_accuracy) == (
        evaluation.scores.avg_at_k, evaluation.scores.greedy_accuracy
    )


def test_eval_command_on_an_http_endpoint(tmp_path):
    from stub_openai_server import Reply, StubServer, question

    path = tmp_path / "questions.jsonl"
    rows = [{"problem": question(str(i)), "answer": "10"} for i in range(3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def script(key: str, attempt: int) -> Reply:
        return Reply(status=400) if (key, attempt) == ("Q-1", 3) else Reply(content="so \\boxed{10}")

    with StubServer(script) as server:
        result = run_eval(
            "stub-model", str(path), "--backend", "openai", "--base-url", server.url, "--api-key-env", "",
            "-k", "2",
        )
    assert result.exit_code == 0, result.output
    assert server.received == {"Q-0": 3, "Q-1": 3, "Q-2": 3}  # one greedy request and two samples each
    assert "note: 1 completions failed and were scored as no answer" in result.output
    assert "100.0" in result.output and "83.3" in result.output  # greedy; avg@2 with one sample lost


@pytest.mark.parametrize(
    "args, message",
    [
        (["{file}", "--columns", "question=problem,answer=answer"], "has no column 'problem'; columns"),
        (["{file}", "--columns", "question"], "unknown preset 'question'"),
        (["{file}", "--columns", "question=question,solution=answer"], "cannot read 'solution=answer'"),
        (["{missing}"], "no such dataset file or folder"),
        (["synthetic", "-k", "4", "--temperature", "0"], "at temperature 0 are all alike"),
        (["synthetic", "--completions"], "--completions keeps a math evaluation's completions in its"),
    ],
)
def test_eval_command_user_errors_are_one_line(tmp_path, args, message):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps({"question": "What is 2+3?", "answer": "#### 5"}) + "\n")
    args = [a.format(file=path, missing=tmp_path / "missing.jsonl") for a in args]
    result = run_eval("tiny", *args, "--max-new-tokens", "4")
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert message in result.output


def test_eval_command_on_a_model_that_is_not_there(tmp_path):
    result = run_eval(str(tmp_path / "model.gguf"), "--limit", "1")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: no such model file or folder: {tmp_path}/model.gguf"


@pytest.mark.slow
def test_eval_command_agrees_with_the_shipped_checkpoints_recorded_measurement(tmp_path):
    """`corewarding eval` with pretraining's settings gives the question view's scores in pretrain.json,
    within sampling noise (the record sampled every surface form in one batch, this samples one)."""
    recorded = json.loads((TINY_MODEL_DIR / "pretrain.json").read_text())
    settings = recorded["config"]
    assert settings["seed"] == settings["eval_seed"]  # --seed seeds both the questions and the sampling
    out = tmp_path / "tiny.json"
    result = run_eval(
        "tiny", "synthetic", "--limit", str(settings["eval_problems"]), "-k", str(settings["eval_samples"]),
        "--max-new-tokens", str(settings["max_new_tokens"]), "--seed", str(settings["seed"]), "-o", str(out),
        "--temperature", "1",  # pretraining's evaluation samples at 1.0
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())["evaluation"]["scores"]
    expected = recorded["evaluation"]["test"]["question"]
    assert scores["num_questions"] == expected["num_questions"]
    # 500 questions x 8 samples: about 3 standard errors of each figure.
    assert scores["greedy_accuracy"] == pytest.approx(expected["greedy_accuracy"], abs=0.02)
    assert scores["avg_at_k"] == pytest.approx(expected["avg_at_k"], abs=0.04)
    assert scores["maj_at_k"] == pytest.approx(expected["maj_at_k"], abs=0.07)

def test_eval_views_measures_every_form_and_the_pairs(tmp_path):
    out = tmp_path / "views.json"
    result = run_eval("tiny", "synthetic", "--views", "--limit", "6", "-k", "2", "--max-new-tokens", "48",
                      "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "other view right, own wrong" in result.output
    figures = json.loads(out.read_text())["views"]["test"]
    assert figures["question"]["num_questions"] == 6 and figures["question"]["k"] == 2
    assert sum(figures["forms"][name]["num_questions"] for name in figures["forms"]) == 24  # 4 forms each
    pairs = figures["pairs"]
    # Each pair is one of: both right, both wrong, or one right: the four shares add up.
    both_right = 1 - pairs["both_wrong"] - sum(pairs["other_right_own_wrong"].values())
    assert both_right == pytest.approx(
        pairs["majority_right"]["question"] - pairs["other_right_own_wrong"]["rephrasing"], abs=1e-9
    )
    refused = run_eval("tiny", "synthetic", "--views", "--limit", "2")
    assert refused.exit_code == 2 and "use it with synthetic and -k" in refused.output
