"""How this process was launched: alone, or as one rank of a several-process run (a "world").

``torchrun`` and ``accelerate launch`` tell each process its place in the run through the environment:
``WORLD_SIZE`` processes, this one ``RANK`` (0 is the main process, the one that prints progress and
writes the run's own files). On a machine without a GPU two launches still need a word from us:

* ``torchrun --nproc_per_node 2`` (and ``accelerate launch --multi_gpu``, or a config with
  ``distributed_type: MULTI_GPU``) starts the processes, but transformers joins them into one
  data-parallel run only on an accelerator or with ``use_cpu``; without it each process trains alone and
  all of them write one folder. :func:`needs_cpu_processes` says when the config turns ``use_cpu`` on,
  which makes them one DDP run on gloo.
* ``accelerate launch --cpu --num_processes 2`` (or a config with ``use_cpu: true``) starts *one*
  process: accelerate's CPU launcher starts more only through ``mpirun`` with ``--mpirun_hostfile``. It
  leaves the rendezvous address it prepared for the others (``MASTER_PORT``) and ``ACCELERATE_USE_CPU``
  behind, so :func:`lone_process_of_several` can refuse the run in one line that says what to run.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "is_main_process", "lone_process_of_several", "needs_cpu_processes", "process_count", "process_rank",
]

#: Where a launcher puts the number of processes: torchrun / accelerate, then the MPI implementations.
_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def _first_number(env: Mapping[str, str], names: tuple[str, ...], default: int) -> int:
    for name in names:
        if env.get(name, "").strip().isdigit():
            return int(env[name])
    return default


def process_count(env: Mapping[str, str]) -> int:
    """The number of processes the launcher started for this run (1 without a launcher)."""
    return _first_number(env, _SIZE_VARIABLES, 1)


def process_rank(env: Mapping[str, str]) -> int:
    """This process's rank in its run (0 without a launcher)."""
    return _first_number(env, _RANK_VARIABLES, 0)


def is_main_process(env: Mapping[str, str]) -> bool:
    """Whether this process is the one that prints a run's progress and notes (rank 0)."""
    return process_rank(env) == 0


def needs_cpu_processes(env: Mapping[str, str], accelerator_available: bool) -> bool:
    """Whether several processes were launched on a machine without an accelerator, so that transformers
    needs ``use_cpu`` to make them one data-parallel run (gloo) rather than as many separate runs.

    Not under DeepSpeed or FSDP (``accelerate launch`` with their config sets ``ACCELERATE_USE_DEEPSPEED`` /
    ``ACCELERATE_USE_FSDP``): ``use_cpu`` would make accelerate drop the engine and train plain DDP, so the
    device is left to accelerate (the engines job's CPU processes reach the engine that way)."""
    engine = any(env.get(f"ACCELERATE_USE_{name}", "").lower() == "true" for name in ("DEEPSPEED", "FSDP"))
    return process_count(env) > 1 and not accelerator_available and not engine


def lone_process_of_several(env: Mapping[str, str]) -> str | None:
    """The one-line refusal of a process that ``accelerate launch --cpu --num_processes N`` (N > 1)
    started alone, or None. Only that launcher sets ``ACCELERATE_USE_CPU`` and a rendezvous port without
    a world size: torchrun, ``accelerate launch --multi_gpu`` and mpirun all set one."""
    use_cpu = env.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes", "on")
    if not use_cpu or "MASTER_PORT" not in env or process_count(env) > 1 or "LOCAL_RANK" in env:
        return None
    return (
        "accelerate launch on the CPU (--cpu, or use_cpu: true) started one process, not num_processes "
        "(its CPU launcher starts more only through mpirun, with --mpirun_hostfile): for several on a "
        "CPU run `torchrun --nproc_per_node 2 -m corewarding train …` or `accelerate launch --multi_gpu "
        "--num_processes 2 -m corewarding train …` (one DDP run on gloo); for one, leave out "
        "--num_processes"
    )
