"""Evaluation: metrics computed exactly from known answers, a stub sampler, and the HF sampler."""

import pytest
import torch
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer

from corewarding.answers import extract_answer
from corewarding.data.records import Problem
from corewarding.data.synthetic import generate_problems
from corewarding.evaluate import (
    EvaluationResult,
    HFSampler,
    SamplingSettings,
    evaluate,
    pass_at_k,
    results_table,
    score_answers,
)
from corewarding.prompts import SYSTEM_PROMPT, chat_messages
from corewarding.tiny_model import TINY_MODEL_DIR, TinyModelConfig, build_model, build_tokenizer

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


class StubSampler:
    """Known completions per question; records what it was asked."""

    def __init__(self):
        self.calls = []

    def sample(self, conversations, settings):
        self.calls.append((conversations, settings))
        by_question = {p.question: p.id for p in PROBLEMS}
        ids = [by_question[c[-1]["content"]] for c in conversations]
        if settings.temperature == 0:
            return [[GREEDY[i]] * settings.n for i in ids]
        return [SAMPLED[i][: settings.n] for i in ids]


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


def test_evaluate_on_a_stub_sampler_gives_hand_computed_metrics():
    sampler = StubSampler()
    result = evaluate(PROBLEMS, sampler, k=4, temperature=0.7, max_new_tokens=32)
    s = result.scores
    assert (s.num_questions, s.k) == (3, 4)
    assert s.greedy_accuracy == pytest.approx(2 / 3)  # a and b (0.5 is equivalent to 1/2)
    assert s.avg_at_k == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    assert s.pass_at_k == pytest.approx({1: 0.25, 2: (5 / 6 + 1 / 2 + 0) / 3, 4: 2 / 3})
    assert s.maj_at_k == pytest.approx(1 / 3)  # only a's majority (4, with 4.0) is right
    assert s.no_answer_rate == pytest.approx(2 / 12)

    (greedy_conversations, greedy_settings), (_, sampled_settings) = sampler.calls
    assert greedy_settings == SamplingSettings(n=1, temperature=0.0, max_new_tokens=32)
    assert sampled_settings == SamplingSettings(n=4, temperature=0.7, max_new_tokens=32)
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
    greedy_only = evaluate(PROBLEMS, StubSampler(), k=0)
    assert greedy_only.scores.avg_at_k is None and greedy_only.temperature is None
    sampled_only = evaluate(
        PROBLEMS, StubSampler(), k=2, greedy=False
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
        (lambda: evaluate(PROBLEMS, StubSampler(), k=0, greedy=False), "nothing to evaluate"),
        (lambda: SamplingSettings(n=4, temperature=0.0), "greedy decoding"),
        (lambda: SamplingSettings(top_p=0.0), "top_p"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_result_json_round_trip_and_table():
    result = evaluate(PROBLEMS, StubSampler(), k=4)
    again = EvaluationResult.from_json(result.to_json())
    assert again == result
    console = Console(record=True, width=200)
    console.print(results_table({"stub": result}))
    text = console.export_text()
    assert "avg@4" in text and "pass@4" in text and "maj@4" in text
    assert "66.7" in text and "25.0" in text and "33.3" in text


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


def test_hf_sampler_gives_n_completions_reproducibly(tiny_lm):
    model, tokenizer = tiny_lm
    conversations = [[{"role": "user", "content": q}] for q in ("Start with 7. Add 5.", "What is 3?", "Hi")]
    sampler = HFSampler(model, tokenizer, batch_size=4, seed=1, progress=False)
    settings = SamplingSettings(n=3, temperature=1.0, max_new_tokens=6)
    state = torch.random.get_rng_state()
    first = sampler.sample(conversations, settings)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    assert [len(group) for group in first] == [3, 3, 3]
    assert all(isinstance(c, str) for group in first for c in group)
    assert sampler.sample(conversations, settings) == first
    assert (
        HFSampler(model, tokenizer, batch_size=4, seed=2, progress=False).sample(conversations, settings)
        != first
    )


def test_left_padded_batches_decode_like_single_prompts_on_the_shipped_model():
    model = AutoModelForCausalLM.from_pretrained(TINY_MODEL_DIR).eval()
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    problems = generate_problems(6, "test", seed=2)  # prompts of different lengths share a batch
    conversations = [chat_messages(p.question) for p in problems]
    settings = SamplingSettings(max_new_tokens=30)
    batched = HFSampler(model, tokenizer, batch_size=6, progress=False).sample(conversations, settings)
    alone = HFSampler(model, tokenizer, batch_size=1, progress=False).sample(conversations, settings)
    assert batched == alone
    assert all(extract_answer(group[0]) is not None for group in batched)
