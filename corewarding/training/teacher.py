"""Co-rewarding-II's EMA teacher as a plug-in of the trainer: update, save, load (the shape of Cooper's
:class:`~corewarding.cooper.co_training.CooperRewardModel`).

The teacher starts as a copy of the initial policy and, before it samples at training step s, moves
toward the policy by θ_T ← (1 − a_s)·θ_T + a_s·θ_policy, with a_s from
:class:`~corewarding.core.teacher_schedule.TeacherSchedule`. It samples through the trainer's own
generation path (the trainer swaps it in), and it is the KL reference when ``beta`` > 0.
Its weights and last update step are part of every checkpoint, so a resumed run continues with the
teacher it had (the reference code restarts it from the initial model).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from corewarding.core.teacher_schedule import TeacherSchedule

__all__ = ["ema_update_", "EMATeacher", "TEACHER_WEIGHTS", "TEACHER_STATE"]

TEACHER_WEIGHTS = "teacher.safetensors"
TEACHER_STATE = "teacher_state.json"


@torch.no_grad()
def ema_update_(teacher: torch.nn.Module, policy: torch.nn.Module, rate: float) -> None:
    """θ_T ← (1 − rate)·θ_T + rate·θ_policy, in place, parameter by parameter.

    Both modules must have the same architecture (parameters matched in order). Buffers are not
    averaged: the decoders used here keep none that training changes.
    """
    teacher_params = list(teacher.parameters())
    policy_params = list(policy.parameters())
    if len(teacher_params) != len(policy_params):
        raise ValueError("teacher and policy have different numbers of parameters")
    for t, p in zip(teacher_params, policy_params):
        t.lerp_(p.to(t.dtype), rate)


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict safetensors can write: tensors sharing storage (tied embeddings) are copied."""
    seen, out = set(), {}
    for key, tensor in state.items():
        storage = tensor.untyped_storage().data_ptr()
        out[key] = tensor.clone() if storage in seen else tensor.contiguous()
        seen.add(storage)
    return out


class EMATeacher:
    """The teacher module (placed as the trainer places its reference model), its schedule, and the
    last step it was updated for.

    Args:
        module: the teacher, a copy of the initial policy (possibly wrapped by DeepSpeed / FSDP).
        schedule: a_s and the update interval.
        accelerator: the trainer's, to unwrap, gather and save under DeepSpeed ZeRO-3.
    """

    def __init__(self, module: torch.nn.Module, schedule: TeacherSchedule, accelerator):
        self.module = module
        self.schedule = schedule
        self.accelerator = accelerator
        self.last_update_step = 0

    def update(self, policy: torch.nn.Module, step: int, total_steps: int) -> float | None:
        """Move toward ``policy`` for training step ``step`` (1-based) of ``total_steps``.

        Returns the rate used (0.0 at a step the schedule skips), or None when the teacher was already
        updated for this step (a step may generate several batches).
        """
        if step == self.last_update_step:
            return None
        self.last_update_step = step
        rate = self.schedule.rate(step, max(1, total_steps))
        if rate is None:
            return 0.0
        policy = self.accelerator.unwrap_model(policy)
        teacher = self.accelerator.unwrap_model(self.module)
        plugin = self.accelerator.state.deepspeed_plugin
        if plugin is not None and plugin.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(
                list(policy.parameters()) + list(teacher.parameters()), modifier_rank=0
            ):
                if self.accelerator.is_main_process:
                    ema_update_(teacher, policy, rate)
        else:
            ema_update_(teacher, policy, rate)
        return rate

    def save(self, folder: str | Path, write: bool = True) -> None:
        """Write the weights and the last update step into a checkpoint folder. Every process must call
        it (the weights are gathered under ZeRO-3); only those with ``write`` write."""
        state = self.accelerator.get_state_dict(self.module)
        if write:
            folder = Path(folder)
            save_file(_unshared(state), folder / TEACHER_WEIGHTS)
            (folder / TEACHER_STATE).write_text(json.dumps({"last_update_step": self.last_update_step}))

    def load(self, folder: str | Path) -> None:
        """Restore what :meth:`save` wrote."""
        folder = Path(folder)
        teacher = self.accelerator.unwrap_model(self.module)
        teacher.load_state_dict(
            load_file(folder / TEACHER_WEIGHTS, device=str(next(teacher.parameters()).device))
        )
        self.last_update_step = json.loads((folder / TEACHER_STATE).read_text())["last_update_step"]
