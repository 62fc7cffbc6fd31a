"""The per-rollout confidence the trainer rewards equals a forward pass over each rollout on its own."""

import pytest
import torch

from corewarding.tiny.model import TinyModelConfig, build_model, build_tokenizer
from corewarding.training.token_statistics import STATISTICS, rollout_statistic


@pytest.mark.parametrize("name", ["self_certainty", "entropy"])
def test_batched_padded_statistic_equals_each_rollout_alone(name):
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, TinyModelConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                   num_key_value_heads=2, intermediate_size=64),
                        seed=3).eval()
    prompts = [
        tokenizer.encode(t) for t in ("Start with 7. Add 5.", "A jar holds 3 pens. 4 more are added. How")
    ]
    completions = [tokenizer.encode(t) for t in ("7+5=12. \\boxed{12}", "3+4=7", "")]
    prompt_ids = [prompts[0], prompts[1], prompts[0]]
    values = rollout_statistic(model, prompt_ids, completions, name, pad_token_id=tokenizer.pad_token_id,
                               temperature=0.7, chunk=2)  # two chunks, different padding in each
    for value, p, c in zip(values, prompt_ids, completions):
        if not c:
            assert value == 0.0  # no response token
            continue
        with torch.no_grad():
            logits = model(torch.tensor([p + c])).logits[0, len(p) - 1 : len(p) + len(c) - 1] / 0.7
        alone = STATISTICS[name](logits[None], torch.ones(1, len(c))).item()
        assert value == pytest.approx(alone, rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="unknown statistic"):
        rollout_statistic(model, prompt_ids, completions, "perplexity", pad_token_id=tokenizer.pad_token_id)
