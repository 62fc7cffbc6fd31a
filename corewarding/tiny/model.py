"""A tiny model for the synthetic task that travels the exact code path of a real one.

**Tokenizer.** A byte-level BPE (:class:`transformers.PreTrainedTokenizerFast`) whose merges are
learnt from the task's own prompts — the system prompt and synthetic questions rendered by the chat
template — and its worked solutions, with two rules:

* *Digits are always single tokens* (as in Qwen2 and the first Llamas), so numbers are composed digit
  by digit: 47 and 74 share their pieces, and arithmetic is learnt on ten symbols.
* *Merges may cross spaces* (as SentencePiece can), so the fixed phrases of the task become single
  tokens: the whole system prompt is one token, ``". Decrease it by "`` another. A chat prompt of the
  task takes about 18 tokens and a worked solution about 18; word-level tokens need about 55 and 22,
  characters about 235 and 27. Sequence length is what training and sampling pay for on a CPU: this
  halves the time of a pretraining step against word-level tokens, and the model learns faster per
  step too (measured: loss 0.73 against 0.92 after 100 steps).

The base alphabet is the 256 bytes, so there is no unknown token: any text — the task's, the system
prompt, whatever a model samples — encodes and decodes back to itself (just in more tokens when it
is not the task's). It has a ChatML chat template (``<|im_start|>role\\ncontent<|im_end|>\\n``) with
``add_generation_prompt``, ``<|im_end|>`` as end of sequence and ``<|pad|>`` as padding.

**Model.** A Llama decoder (:class:`transformers.LlamaForCausalLM`, the architecture of SmolLM2) from
a small config, so ``save_pretrained`` / ``AutoModelForCausalLM.from_pretrained`` and TRL treat it as
any Llama model. Not Qwen2: for a checkpoint whose config says ``qwen2``, transformers 5's
``AutoTokenizer`` loads ``Qwen2Tokenizer`` whatever ``tokenizer_config.json`` declares, and that class
replaces the saved pre-tokenizer with Qwen2's own, so this tokenizer would not survive a reload.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from corewarding.core.errors import UserError
from corewarding.data.synthetic import TaskConfig, generate_problems, surface_forms
from corewarding.inference.models import render_prompts

__all__ = [
    "PAD_TOKEN",
    "EOS_TOKEN",
    "CHAT_TEMPLATE",
    "VOCAB_SIZE",
    "TinyModelConfig",
    "build_tokenizer",
    "build_model",
]

PAD_TOKEN = "<|pad|>"
START_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Size of the tokenizer's vocabulary: 256 bytes, 3 special tokens and 509 merges, enough for every
#: frequent phrase of the task to be one token (1024 would shorten prompts by only 5%).
VOCAB_SIZE = 768
# Problems whose four surface forms and solution the merges are learnt from.
_CORPUS_PROBLEMS = 500
_SPECIAL_TOKEN_RE = re.compile("|".join(re.escape(t) for t in (PAD_TOKEN, START_TOKEN, EOS_TOKEN)))


def _corpus(task: TaskConfig) -> list[str]:
    """The texts the tokenizer will meet: chat prompts of the task's problems, cut at special tokens as
    encoding cuts them, and worked solutions."""
    renderer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), chat_template=CHAT_TEMPLATE)
    texts = []
    for problem in generate_problems(_CORPUS_PROBLEMS, "train", seed=0, config=task):
        for prompt in render_prompts(renderer, surface_forms(problem, task)):
            texts += [piece for piece in _SPECIAL_TOKEN_RE.split(prompt) if piece]
        texts.append(problem.meta["solution"])
    return texts


def build_tokenizer(task: TaskConfig = TaskConfig()) -> PreTrainedTokenizerFast:
    """The tiny model's tokenizer for a synthetic task (deterministic: the same vocabulary and ids on
    every call). The task's irrelevant sentences, when it has them, get merges of their own."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD_TOKEN, START_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(task), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=TinyModelConfig.max_position_embeddings,
    )


@dataclass(frozen=True)
class TinyModelConfig:
    """Size of the tiny Llama decoder.

    The defaults give 0.95 M parameters (3.8 MB in float32): enough to learn the default synthetic
    task partly in a few CPU minutes, small enough to sample 150 to 270 completions a second on two
    CPU cores (batches of 64, temperature 1).

    Attributes:
        hidden_size: width of the residual stream (default 128).
        num_hidden_layers: transformer blocks (default 4).
        num_attention_heads: query heads (default 4, so 32 dimensions per head).
        num_key_value_heads: key/value heads (default 4: plain multi-head attention).
        intermediate_size: width of the SwiGLU feed-forward layer (default 384, 3x hidden).
        max_position_embeddings: longest sequence in tokens (default 256; prompt and solution of the
            default task take about 37).
    """

    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 384
    max_position_embeddings: int = 256

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError("num_attention_heads must be a multiple of num_key_value_heads")


def build_model(
    tokenizer: PreTrainedTokenizerFast, config: TinyModelConfig = TinyModelConfig(), seed: int = 0
) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama for ``tokenizer``; the same seed gives the same weights."""
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,  # ChatML needs no beginning-of-sequence token (as Qwen2)
        eos_token_id=tokenizer.eos_token_id,
        **asdict(config),
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
