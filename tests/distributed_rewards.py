"""One training step per method with scripted completions, in 1 or 2 processes (run by test_distributed.py).

    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_rewards.py MODEL_DIR OUT.json 2

Completions are a function of the prompt, the rollout's position in its group and whether the policy
or the teacher samples, so a 1-process and a 2-process run see the same completions; the global
batch keeps its size (the per-device batch halves), so groups and pairs get split across processes.
Rank 0 writes what the reward saw and gave to OUT.json, and what TRL received: every process's share of
the rewards, gathered (a wrong slice shows there, not in the reward computed on the gathered batch).
"""

import json
import sys
import zlib

from transformers import AutoModelForCausalLM, AutoTokenizer

from corewarding.data.synthetic import generate_problems
from corewarding.training import trainer as trainer_module
from corewarding.training.config import CoRewardingConfig
from corewarding.training.run import training_dataset
from corewarding.training.trainer import CoRewardingTrainer

ANSWER_FORMS = ["1", "1.0", r"\frac{2}{2}", "2", "3", None]


class ScriptedTrainer(CoRewardingTrainer):
    """The policy's completions (TRL's generation) and the teacher's (``_sample``) are scripted apart: the
    teacher's answer forms are shifted by 3, so a mix-up of the two changes what the reward sees."""

    def scripted(self, prompt_ids, teacher: bool):
        tokenizer = self.processing_class
        completions = []
        for i, ids in enumerate(prompt_ids):
            row = self.accelerator.process_index * len(prompt_ids) + i  # position in the global batch
            seed = zlib.crc32(tokenizer.decode(ids).encode())
            form = seed + (row % self.num_generations) ** 2 + 3 * teacher
            answer = ANSWER_FORMS[form % len(ANSWER_FORMS)]
            text = "no idea" if answer is None else f"so the answer is \\boxed{{{answer}}}"
            completions.append(tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id])
        return completions

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        return self.scripted(prompt_ids, teacher=False), None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's gathered rewards: each process's share, as this trainer sliced it, in rank order."""
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.trl_rewards = rewards_per_func[:, 0].tolist()  # column 0: the method's reward
        return rewards_per_func

    def _sample(self, model, prompt_ids):
        unwrap = self.accelerator.unwrap_model
        return self.scripted(prompt_ids, teacher=unwrap(model) is unwrap(self.teacher.module))


def main(model_dir: str, out: str, processes: int) -> None:
    captured = {}
    method_rewards = trainer_module.method_rewards

    def capture(method, rollouts, inputs):
        result = method_rewards(method, rollouts, inputs)
        captured[method] = {
            "question_ids": list(rollouts.question_ids), "views": list(rollouts.views),
            "answers": list(rollouts.answers), "rewards": result.rewards, "labels": result.labels,
            "teacher_answers": list(inputs.teacher.answers) if inputs.teacher else None,
        }
        return result

    trainer_module.method_rewards = capture
    problems = generate_problems(12, "train", seed=0)
    for method, batch in (
        ("majority_vote", 12), ("co_rewarding_i", 8), ("co_rewarding_ii", 12), ("self_certainty", 12)
    ):
        config = CoRewardingConfig(
            method=method, output_dir=f"{out}.{method}", max_steps=1, num_generations=4,
            per_device_train_batch_size=batch // processes, max_completion_length=16, report_to=[],
            heldout_dataset=None, disable_tqdm=True, seed=0,
        )
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        trainer = ScriptedTrainer(
            model=model, args=config, train_dataset=training_dataset(problems, method, config.system_prompt),
            processing_class=tokenizer,
        )
        trainer.train()
        captured[method]["trl_rewards"] = trainer.trl_rewards
    if trainer.accelerator.is_main_process:
        with open(out, "w") as f:
            json.dump(captured, f)
    # Leave the process group before the interpreter exits: exiting with gloo's threads alive aborted
    # a rank once ("terminate called without an active exception").
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
