"""Co-rewarding-II on your own unlabelled questions, from Python, the way TRL scripts are written.

    python examples/train_your_questions.py questions.jsonl [MODEL] [STEPS]

questions.jsonl holds one {"question": "..."} per line, no answers. MODEL is a folder, a hub id, a
.gguf file or ``tiny`` (the default: the shipped tiny model, which only knows small arithmetic).
"""

import sys

from corewarding.core.rewards import Rollouts, majority_vote_rewards
from corewarding.data.loaders import load_problems
from corewarding.inference.models import load_model
from corewarding.training import CoRewardingConfig, CoRewardingTrainer, training_dataset

questions, model_name = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "tiny"
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 100

problems = load_problems(questions, "question=question")  # no answer column needed
model, tokenizer = load_model(model_name)
config = CoRewardingConfig(
    method="co_rewarding_ii", output_dir="runs/my-questions", overwrite_output_dir=True, max_steps=steps,
    num_generations=8, per_device_train_batch_size=16, max_completion_length=256, learning_rate=1e-5,
    teacher_rate_start=0.01, teacher_rate_end=1e-5, heldout_dataset=None, eval_strategy="no",
    report_to="none",
)
dataset = training_dataset(problems, config.method, config.system_prompt)
trainer = CoRewardingTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
trainer.train()
trainer.save_model(config.output_dir)

# The rewards are plain functions of extracted answers, usable on their own: one group of four rollouts.
print(majority_vote_rewards(Rollouts(answers=["4", "4", "5", None], question_ids=[0] * 4)).rewards)
