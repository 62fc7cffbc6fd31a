"""Co-rewarding-II's EMA teacher when the policy is a LoRA adapter: a second adapter over the frozen model.

With LoRA the policy's weights are W + (α/r)·B·A: W frozen, only the adapter (A, B, and any
``modules_to_save``) trained. A full copy of the model as teacher (:class:`~corewarding.training.teacher.
EMATeacher`) would average weights that never move, at the memory of a second model. Here the teacher is a
second adapter, :data:`TEACHER_ADAPTER`, on the same ``PeftModel``, whose weights are the EMA of the policy
adapter's at each training step s, at the full teacher's time and rate a_s (float32, as there)::

    T_s = (1 − a_s)·T_(s−1) + a_s·θ_(s−1)        T, θ: the teacher's and the policy's adapter weights

so the teacher's model is W + (α/r)·B_T·A_T. It is switched in for the teacher's samples
(:meth:`AdapterTeacher.sampling`) and, with ``beta`` > 0, is the KL reference: TRL's ``GRPOTrainer`` under
PEFT scores the reference with the adapter named ``ref`` when the model has one (else with the adapters
disabled, the base model), and the teacher adapter has that name — the full-model path's teacher is
TRL's reference model in the same way. Averaging the factors is not averaging their product: B_T·A_T
differs from the EMA of B·A by the covariance of the factors' moves, second order in the adapter's change.

What it costs: the adapter's parameters (peft keeps them in float32), plus a float32 master where the
adapter is in bfloat16 (peft under ZeRO-3); ``benchmarks/bench_teacher_memory.py`` measures it against a
full copy. Checkpoints save and restore it as the full teacher's (``teacher.safetensors``: the teacher
adapter's float32 weights by name).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from corewarding.core.errors import UserError
from corewarding.core.teacher_schedule import TeacherSchedule
from corewarding.training.teacher import EMATeacher, local_tensor
from corewarding.training.trl_internals import REFERENCE_ADAPTER

__all__ = ["TEACHER_ADAPTER", "AdapterTeacher"]

#: The teacher adapter's name: TRL's reference adapter, so that it is the KL reference too.
TEACHER_ADAPTER = REFERENCE_ADAPTER


class AdapterTeacher(EMATeacher):
    """The teacher adapter on the policy's ``PeftModel``: added as a copy of the policy's adapter (or TRL's
    ``ref`` adapter, already that copy, when TRL made one), frozen, without dropout, and updated, saved and
    loaded as :class:`~corewarding.training.teacher.EMATeacher`.

    Args:
        model: the policy, a ``PeftModel`` with one LoRA adapter being trained (not yet wrapped).
        schedule: a_s and the update interval.
        accelerator: the trainer's.
    """

    def __init__(self, model: torch.nn.Module, schedule: TeacherSchedule, accelerator):
        self.policy_adapter_name = model.active_adapter
        config = model.peft_config[self.policy_adapter_name]
        if config.peft_type != "LORA":
            raise UserError(
                f"co_rewarding_ii keeps its teacher as a LoRA adapter: peft_config must be a LoraConfig, "
                f"got {type(config).__name__}"
            )
        if TEACHER_ADAPTER not in model.peft_config:
            config = copy.deepcopy(config)
            config.lora_dropout = 0.0  # the teacher only samples and scores, as the full teacher in eval mode
            model.add_adapter(TEACHER_ADAPTER, config)
            with torch.no_grad():
                for teacher, policy in zip(self._teacher_adapter(model), self._policy_adapter(model)):
                    teacher.copy_(policy)
        for param in self._teacher_adapter(model):
            param.requires_grad_(False)
        super().__init__(model, schedule, accelerator)

    @staticmethod
    def _teacher_names(model: torch.nn.Module) -> list[str]:
        return [name for name, _ in model.named_parameters() if f".{TEACHER_ADAPTER}." in name]

    def _teacher_adapter(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        parameters = dict(model.named_parameters())
        return [parameters[name] for name in self._teacher_names(model)]

    def _policy_adapter(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The policy adapter's parameters, in the order of the teacher adapter's (the same names, but for
        the adapter's)."""
        parameters = dict(model.named_parameters())
        teacher, policy = f".{TEACHER_ADAPTER}.", f".{self.policy_adapter_name}."
        return [parameters[name.replace(teacher, policy)] for name in self._teacher_names(model)]

    def _local_teacher(self) -> list[torch.Tensor]:
        return [local_tensor(p) for p in self._teacher_adapter(self.accelerator.unwrap_model(self.module))]

    def _policy_parameters(self, policy: torch.nn.Module) -> list[torch.Tensor]:
        return [local_tensor(p) for p in self._policy_adapter(self.accelerator.unwrap_model(policy))]

    def _names(self) -> list[str]:
        return self._teacher_names(self.accelerator.unwrap_model(self.module))

    @property
    def _sharded(self) -> bool:
        teacher = self._teacher_adapter(self.accelerator.unwrap_model(self.module))
        return any(hasattr(p, "ds_tensor") or hasattr(p, "to_local") for p in teacher)

    @contextmanager
    def sampling(self, policy: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """``policy`` with the teacher adapter switched in (frozen, in eval mode) for the block; the policy's
        adapter, trainable, and its mode after it."""
        model = self.accelerator.unwrap_model(self.module)
        was_training = model.training
        model.set_adapter(TEACHER_ADAPTER, inference_mode=True)
        model.eval()
        try:
            yield policy
        finally:
            model.set_adapter(self.policy_adapter_name)
            model.train(was_training)
