"""Co-rewarding-II's EMA teacher as a plug-in of the trainer: update, save, load (the shape of Cooper's
:class:`~corewarding.cooper.co_training.CooperRewardModel`).

The teacher starts as a copy of the initial policy. At training step s it moves toward the policy
after s − 1 optimizer steps,

    θ_T ← (1 − a_s)·θ_T + a_s·θ_policy

with a_s from :class:`~corewarding.core.teacher_schedule.TeacherSchedule`, *before* the step samples
its rollouts and scores its log-probabilities (so with ``beta`` > 0 the KL anchor is the updated
teacher, as in the reference code).

**Numerics: θ_T lives in float32.** a_s·(θ_policy − θ_T) is far below bfloat16's resolution (8 bits
of mantissa: about 0.4% of a weight) at a = 0.01 and always at a = 1e-5, so a teacher averaged in
bfloat16 does not move (measured: 0.5% of bf16 weights ever changed in 100 updates at a = 0.01). The
teacher therefore keeps a float32 *master copy* of its weights, where the average is taken; the module
that samples and serves as KL reference holds them in the run's dtype and is refreshed from the master
after each update. When that module is already float32 (single process or DDP without DeepSpeed: the
policy is loaded in float32) its own parameters are the master, at no extra memory. When it is bfloat16
(DeepSpeed casts the frozen copy to the run's dtype: the master starts from the float32 weights before
that cast; a policy loaded in bfloat16) the master costs 4 bytes per parameter in each process — on its
local shard only under ZeRO-3, where every process averages the shard it holds of both models and nothing
is gathered.

Its master weights and last update step are part of every checkpoint, so a resumed run continues with
the teacher it had (the reference code restarts it from the initial model).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from corewarding.core.errors import UserError
from corewarding.core.teacher_schedule import TeacherSchedule

__all__ = [
    "ema_update_", "local_tensor", "local_parameters", "initial_copy", "gathered_teacher", "EMATeacher",
    "TEACHER_WEIGHTS", "TEACHER_STATE",
]

TEACHER_WEIGHTS = "teacher.safetensors"
TEACHER_STATE = "teacher_state.json"


@torch.no_grad()
def ema_update_(teacher: Sequence[torch.Tensor], policy: Sequence[torch.Tensor], rate: float) -> None:
    """θ_T ← (1 − rate)·θ_T + rate·θ_policy, in place, tensor by tensor, in the teacher tensors' dtype.

    >>> t, p = [torch.zeros(2)], [torch.tensor([1.0, -2.0])]
    >>> ema_update_(t, p, 0.25); t[0]
    tensor([ 0.2500, -0.5000])
    """
    _check_alike(teacher, policy)
    for t, p in zip(teacher, policy):
        t.lerp_(p.to(t.dtype), rate)


def _check_alike(teacher: Sequence[torch.Tensor], policy: Sequence[torch.Tensor]) -> None:
    """Raise ValueError unless the two lists of tensors match in number and shapes."""
    if len(teacher) != len(policy):
        raise ValueError(
            f"teacher and policy have different numbers of parameters ({len(teacher)}, {len(policy)})"
        )
    for t, p in zip(teacher, policy):
        if t.shape != p.shape:
            raise ValueError(
                f"teacher and policy parameters differ in shape: {tuple(t.shape)}, {tuple(p.shape)}"
            )


def local_tensor(param: torch.nn.Parameter) -> torch.Tensor:
    """The part of a parameter this process holds: the whole tensor, or its shard under DeepSpeed ZeRO-3
    (``ds_tensor``) or FSDP2 (a DTensor's local tensor)."""
    if hasattr(param, "ds_tensor"):
        return param.ds_tensor
    if hasattr(param, "to_local"):
        return param.to_local()
    return param.data


def local_parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    """:func:`local_tensor` of each parameter of ``module``. Two copies of one architecture sharded alike
    have matching local parts."""
    return [local_tensor(param) for param in module.parameters()]


def _partitioned(module: torch.nn.Module) -> bool:
    """DeepSpeed ZeRO-3 has partitioned ``module``: each parameter an empty placeholder, its shard in
    ``ds_tensor``."""
    return any(hasattr(p, "ds_tensor") for p in module.parameters())


@torch.no_grad()
def initial_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the initial policy, to become the teacher.

    Under DeepSpeed ZeRO-3 the policy is already partitioned when it reaches the trainer (transformers
    loads it under ``deepspeed.zero.Init``), and ``copy.deepcopy`` would copy empty placeholders. The copy
    is then built from the policy's config — transformers partitions a new model alike under ZeRO-3, as
    TRL's reference model — and each of its local shards is set to the policy's: nothing is gathered,
    and each process holds its shard of the teacher only.
    """
    if not _partitioned(model):
        return copy.deepcopy(model)
    teacher = type(model)._from_config(copy.deepcopy(model.config), dtype=model.dtype)
    if not _partitioned(teacher):
        raise RuntimeError("the policy is partitioned by DeepSpeed ZeRO-3, its copy is not (no zero.Init)")
    shards, policy_shards = local_parameters(teacher), local_parameters(model)
    _check_alike(shards, policy_shards)
    for shard, policy in zip(shards, policy_shards):
        shard.copy_(policy)
    for buffer, policy in zip(teacher.buffers(), model.buffers()):
        buffer.copy_(policy)
    teacher.generation_config = copy.deepcopy(model.generation_config)
    return teacher


class EMATeacher:
    """The teacher module (placed as the trainer places its reference model), its float32 master weights,
    its schedule, and the last step it was updated for.

    Args:
        module: the teacher, a copy of the initial policy (possibly wrapped by DeepSpeed / FSDP).
        schedule: a_s and the update interval.
        accelerator: the trainer's, to unwrap it and tell the processes apart.
        initial: the float32 weights of the copy before an engine cast it to a lower precision (DeepSpeed
            ZeRO-0/1/2 casts it to bf16): the master starts from them, not from their rounding.
    """

    def __init__(
        self, module: torch.nn.Module, schedule: TeacherSchedule, accelerator,
        initial: Sequence[torch.Tensor] | None = None,
    ):
        self.module = module
        self.schedule = schedule
        self.accelerator = accelerator
        self.last_update_step = 0
        local = self._local_teacher()
        if initial is not None and any(t.dtype != torch.float32 for t in local):
            _check_alike(local, initial)
            self.master = [t.detach().float().clone() for t in initial]
        else:
            self.master = [t if t.dtype == torch.float32 else t.detach().float().clone() for t in local]

    def _local_teacher(self) -> list[torch.Tensor]:
        return local_parameters(self.accelerator.unwrap_model(self.module))

    @property
    def _sharded(self) -> bool:
        """Each process holds a shard of the teacher (DeepSpeed ZeRO-3, FSDP2)."""
        parameters = self.accelerator.unwrap_model(self.module).parameters()
        return any(hasattr(p, "ds_tensor") or hasattr(p, "to_local") for p in parameters)

    @torch.no_grad()
    def _refresh_module(self) -> None:
        """Copy the master weights into the module that samples (rounded to its dtype)."""
        for master, t in zip(self.master, self._local_teacher()):
            if master is not t:
                t.copy_(master)

    def update(self, policy: torch.nn.Module, step: int, total_steps: int) -> float | None:
        """Move toward ``policy`` for training step ``step`` (1-based) of ``total_steps``.

        Returns the rate used (0.0 at a step the schedule skips), or None when the teacher was already
        updated for this step (a step may run several micro-batches).
        """
        if step == self.last_update_step:
            return None
        self.last_update_step = step
        rate = self.schedule.rate(step, max(1, total_steps))
        if rate is None:
            return 0.0
        ema_update_(self.master, self._policy_parameters(policy), rate)
        self._refresh_module()
        return rate

    def _policy_parameters(self, policy: torch.nn.Module) -> list[torch.Tensor]:
        """The policy's local weights the teacher averages, in the order of :meth:`_local_teacher`."""
        return local_parameters(self.accelerator.unwrap_model(policy))

    @contextmanager
    def sampling(self, policy: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """The model that draws the teacher's samples: its own module (``policy`` is not needed)."""
        yield self.module

    def _names(self) -> list[str]:
        return [name for name, _ in self.accelerator.unwrap_model(self.module).named_parameters()]

    def _weights_file(self) -> str:
        """``teacher.safetensors``; under sharding one file per process, as DeepSpeed's own checkpoints:
        a sharded run resumes with the same number of processes."""
        if not self._sharded:
            return TEACHER_WEIGHTS
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        return f"teacher-{rank:05d}-of-{world:05d}.safetensors"

    def save(self, folder: str | Path, write: bool = True) -> None:
        """Write the float32 master weights and the last update step into a checkpoint folder. Every
        process must call it (each writes its shard when sharded); unsharded, only those with ``write``
        write."""
        folder = Path(folder)
        if self._sharded or write:
            state = {
                name: tensor.detach().contiguous().cpu() for name, tensor in zip(self._names(), self.master)
            }
            save_file(state, folder / self._weights_file())
        if write:
            (folder / TEACHER_STATE).write_text(json.dumps({"last_update_step": self.last_update_step}))

    @torch.no_grad()
    def load(self, folder: str | Path) -> None:
        """Restore what :meth:`save` wrote (a float32 master, or a module's weights of any dtype written
        by an earlier version) and refresh the module from it."""
        folder = Path(folder)
        state = load_file(folder / self._weights_file())
        missing = [name for name in self._names() if name not in state]
        if missing:
            raise UserError(f"{folder / self._weights_file()} lacks teacher weights, e.g. {missing[0]}")
        for name, master in zip(self._names(), self.master):
            master.copy_(state[name])
        self._refresh_module()
        self.last_update_step = json.loads((folder / TEACHER_STATE).read_text())["last_update_step"]


def gathered_teacher(folder: str | Path, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """The teacher's full float32 weights in a checkpoint folder: ``teacher.safetensors``, or its
    per-process files (``teacher-<rank>-of-<world>.safetensors``) put together. Each of those holds, per
    parameter, its process's consecutive piece of the flattened tensor (ZeRO-3's flat partition, padded at
    the end; FSDP2's rows), so the pieces in rank order, cut to the parameter's size, are the tensor;
    ``shapes``: each parameter's full shape (the model's)."""
    folder = Path(folder)
    files = sorted(folder.glob("teacher-*-of-*.safetensors"))
    if not files:
        return load_file(folder / TEACHER_WEIGHTS)
    pieces = [load_file(f) for f in files]
    return {
        name: torch.cat([p[name].flatten() for p in pieces])[: shapes[name].numel()].reshape(shapes[name])
        for name in pieces[0]
    }
