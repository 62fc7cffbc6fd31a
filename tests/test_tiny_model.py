"""The tiny model's tokenizer and decoder: the task's text, the chat template, save/load round trips."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from corewarding.core.prompts import SYSTEM_PROMPT, chat_messages
from corewarding.data.synthetic import chain_of, generate_problems, surface_forms, worked_solution
from corewarding.tiny.model import EOS_TOKEN, PAD_TOKEN, TinyModelConfig, build_model, build_tokenizer
from corewarding.tiny.regimes import REGIMES


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def task_texts():
    hard = REGIMES["hard"].pretraining.task
    problems = generate_problems(30, "test", seed=1) + generate_problems(30, "test", seed=1, config=hard)
    return (
        [SYSTEM_PROMPT]
        + [f for p in problems for f in surface_forms(p)]
        + [p.meta["solution"] for p in problems]
    )


def test_every_task_text_round_trips_without_unknown_tokens(tokenizer):
    assert tokenizer.unk_token is None
    for text in task_texts() + ["Any other text: ünïcödé, tabs\tand 1234567890 #!"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_digits_are_single_tokens_and_task_prompts_are_short(tokenizer):
    tokens = tokenizer.tokenize("He has 1234 coins.")
    assert [t for t in tokens if any(c.isdigit() for c in t)] == ["1", "2", "3", "4"]
    prompt = tokenizer.apply_chat_template(
        chat_messages(generate_problems(1, "test")[0].question), add_generation_prompt=True, tokenize=False
    )
    assert len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) < 30


def test_the_hard_tasks_solutions_fit_the_recipes_completion_cap(tokenizer):
    """Three steps of worked solution, a slipped step's value included, stay well inside the 48 new
    tokens the tiny recipes allow (``max_completion_length``)."""
    hard = REGIMES["hard"].pretraining.task
    for problem in generate_problems(200, "train", seed=2, config=hard):
        chain = chain_of(problem)
        for slip in (None, (0, 3), (2, -3)):
            solution = worked_solution(chain, slip=slip) + EOS_TOKEN
            assert len(tokenizer(solution, add_special_tokens=False)["input_ids"]) <= 40


def test_special_tokens_and_chat_template(tokenizer):
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    messages = chat_messages("Start with 7. Add 5. What is the result?")
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nStart with 7. Add 5. What is the result?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    without = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert prompt.startswith(without) and not without.endswith("assistant\n")
    full = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": "7+5=12. \\boxed{12}"}], tokenize=False
    )
    assert full == prompt + "7+5=12. \\boxed{12}<|im_end|>\n"


def test_tokenizer_is_deterministic(tokenizer):
    assert build_tokenizer().get_vocab() == tokenizer.get_vocab()


def test_tokenizer_and_model_save_load_round_trip(tokenizer, tmp_path):
    model = build_model(
        tokenizer,
        TinyModelConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
        ),
        seed=3,
    )
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    loaded_model = AutoModelForCausalLM.from_pretrained(tmp_path)

    prompts = [
        tokenizer.apply_chat_template(chat_messages(t), add_generation_prompt=True, tokenize=False)
        for t in task_texts()[:8]
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    loaded_batch = loaded_tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert torch.equal(batch["input_ids"], loaded_batch["input_ids"])
    assert loaded_tokenizer.padding_side == "left"
    assert loaded_tokenizer.apply_chat_template(
        chat_messages("x"), tokenize=False
    ) == tokenizer.apply_chat_template(chat_messages("x"), tokenize=False)
    assert (loaded_tokenizer.eos_token_id, loaded_tokenizer.pad_token_id) == (
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )

    assert type(loaded_model).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded_model(**loaded_batch).logits)


def test_same_seed_same_initial_weights(tokenizer):
    small = TinyModelConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_key_value_heads=2,
    )
    a, b, c = (build_model(tokenizer, small, seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_bad_model_config_is_a_clear_value_error():
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        TinyModelConfig(hidden_size=100, num_attention_heads=3)
