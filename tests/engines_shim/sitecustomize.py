"""Test-only shim: accelerate's DeepSpeed and FSDP paths on CPU processes (gloo), for the engines job.

accelerate 1.x takes its DeepSpeed and FSDP branches only for accelerator device types (MULTI_GPU, …),
never for MULTI_CPU, and transformers refuses ``bf16`` without a GPU that runs it. A process started with
this folder on ``PYTHONPATH`` (Python imports ``sitecustomize`` at start-up: every process of an
``accelerate launch``) has ``PartialState`` report the CPU processes as MULTI_GPU on gloo with device
``cpu``, and transformers' bf16-availability check answer yes (torch runs bfloat16 on the CPU).
DeepSpeed itself needs ``DS_ACCELERATOR=cpu`` (set here when unset).

Written against accelerate 1.15 and transformers 5.24: when their internals move, every process stops
with one line naming what moved, instead of training on another path than the test means.
"""

import os
import sys

WRITTEN_AGAINST = "accelerate 1.15, transformers 5.24"


def _stop(what: str) -> None:
    sys.stderr.write(f"error: the engines test shim ({WRITTEN_AGAINST}) no longer fits: {what}\n")
    sys.stderr.flush()
    os._exit(2)


def _install() -> None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # PartialState takes its device from here before anything else (set_device then returns at once).
    os.environ.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")
    try:
        import accelerate
        import transformers.training_args as training_args
        from accelerate.state import PartialState
        from accelerate.utils import DistributedType
    except ImportError as error:
        _stop(f"cannot import {error.name}")
    prepare_backend = getattr(PartialState, "_prepare_backend", None)
    if prepare_backend is None or prepare_backend.__code__.co_varnames[:4] != (
        "self", "cpu", "sagemaker_dp", "backend"
    ):
        _stop(f"accelerate {accelerate.__version__}'s PartialState._prepare_backend(self, cpu, sagemaker_dp, "
              "backend) changed")
    if not hasattr(training_args, "is_torch_bf16_gpu_available"):
        _stop("transformers.training_args.is_torch_bf16_gpu_available is gone")

    def gloo_as_gpu(self, cpu=False, sagemaker_dp=False, backend=None):
        backend, distributed_type = prepare_backend(self, cpu, sagemaker_dp, backend)
        if distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU) and not cpu and int(
            os.environ.get("LOCAL_RANK", -1)
        ) != -1:
            return "gloo", DistributedType.MULTI_GPU
        return backend, distributed_type

    PartialState._prepare_backend = gloo_as_gpu
    training_args.is_torch_bf16_gpu_available = lambda: True


_install()
