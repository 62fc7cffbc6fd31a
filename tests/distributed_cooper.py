"""Two ``cooper`` steps with scripted rollouts in 1 or 2 processes (run by test_cooper_runs.py).

    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_cooper.py MODEL_DIR OUT 2 [both]

The global batch keeps its size (the per-device batch halves). With ``both``, negatives come from the
rollouts and the offline stand-in assistant (written on the main process, broadcast), and the update
has a pointwise term. Every process writes what its reward model replica ended with (its weights) to
OUT.<rank>.pt, and rank 0 the logged metrics to OUT.json.
"""

import json
import sys

import torch
from test_cooper_runs import scripted_rollouts
from transformers import AutoModelForCausalLM, AutoTokenizer

from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.config import CoRewardingConfig
from corewarding.training.run import training_dataset
from corewarding.training.trainer import CoRewardingTrainer


class ScriptedTrainer(CoRewardingTrainer):
    _generate_single_turn = scripted_rollouts


def main(model_dir: str, out: str, processes: int, negative_source: str = "rollouts") -> None:
    assistant = {"assistant_model": "stand-in", "pointwise_weight": 0.5}
    if negative_source == "rollouts":
        assistant = {}
    config = CoRewardingConfig(
        negative_source=negative_source,
        **assistant,
        method="cooper",
        output_dir=f"{out}.run",
        max_steps=2,
        num_generations=4,
        per_device_train_batch_size=16 // processes,
        max_completion_length=16,
        report_to=[],
        heldout_dataset=None,
        disable_tqdm=True,
        seed=0,
        reward_model_path=model_dir,
        reward_model_learning_rate=1e-3,
        reward_model_batch_size=4,
    )
    trainer = ScriptedTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=config,
        train_dataset=training_dataset(
            synthetic_problems(model_dir, 32, "train", seed=0), "cooper", config.system_prompt
        ),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    trainer.train()
    torch.save(
        trainer.cooper.reward_model.model.state_dict(), f"{out}.{trainer.accelerator.process_index}.pt"
    )
    if trainer.accelerator.is_main_process:
        with open(f"{out}.json", "w") as f:
            json.dump([r for r in trainer.state.log_history if "rm/pairs" in r], f)
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()  # leave the process group before exit (see distributed_rewards.py)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
