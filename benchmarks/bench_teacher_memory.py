"""Co-rewarding-II's teacher memory: the LoRA adapter teacher against a full copy of the model.

The full-model teacher (:class:`~corewarding.training.teacher.EMATeacher`) is a copy of the policy plus, when
that copy is not float32, a float32 master of its weights; the LoRA teacher
(:class:`~corewarding.training.adapter_teacher.AdapterTeacher`) is a second adapter over the policy's frozen
model, plus a float32 master when the adapter is not float32 (peft keeps adapters in float32, except under
ZeRO-3). For each case this builds the teacher as the trainer does and measures

* the bytes of the teacher's parameters and of its float32 master (counted only where it is a separate
  copy), on this process;
* the growth of the process's resident memory (RSS) while the teacher is built: each row runs in a fresh
  process, so rows do not share freed memory;

on the shipped tiny model and on a randomly initialised mid-size Llama (no download), and computes the
bytes for a real size: Qwen3-8B (its published architecture, built on the meta device, no weights) with
LoRA r = 16 on every linear layer but the output head (peft's ``all-linear``).

    python benchmarks/bench_teacher_memory.py [--rank 16] [--sizes tiny mid] [--json runs/bench_teacher_memory.json]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import subprocess
import sys
from pathlib import Path

import psutil
import torch

MiB = 2**20
#: Qwen3-8B's architecture (its config.json): 36 layers, hidden 4096, MLP 12288, 32 query and 8 key/value
#: heads of 128, a vocabulary of 151,936, embeddings not tied.
QWEN3_8B = dict(
    hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False,
)
#: A mid-size Llama, randomly initialised: large enough that the teacher's memory stands out of the RSS noise.
MID = dict(
    hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16,
    num_key_value_heads=16, vocab_size=32000, tie_word_embeddings=False,
)
SIZES = ("tiny", "mid")


def build_model(size: str, dtype: torch.dtype):
    if size == "tiny":
        from corewarding.inference.models import load_model

        return load_model("tiny", device="cpu", dtype=dtype)[0]
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**MID)).to(dtype)


def teacher_bytes(teacher) -> tuple[int, int, int]:
    """(parameters, bytes of the teacher's weights, bytes of its float32 master where it is a copy)."""
    weights = teacher._local_teacher()
    numbers = sum(t.numel() for t in weights)
    module = sum(t.numel() * t.element_size() for t in weights)
    master = sum(
        m.numel() * m.element_size() for m, t in zip(teacher.master, weights) if m.data_ptr() != t.data_ptr()
    )
    return numbers, module, master


def measure(size: str, dtype_name: str, kind: str, rank: int) -> dict:
    """One row, in this process: build the policy (with a LoRA adapter for ``adapter``), then the teacher."""
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    from corewarding.core.teacher_schedule import TeacherSchedule
    from corewarding.training.adapter_teacher import AdapterTeacher
    from corewarding.training.teacher import EMATeacher

    torch.set_num_threads(1)
    model = build_model(size, getattr(torch, dtype_name))
    model_parameters = sum(p.numel() for p in model.parameters())
    if kind == "adapter":
        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear"))
    accelerator, schedule = Accelerator(cpu=True), TeacherSchedule(0.01, 1e-5, 1)
    gc.collect()
    before = psutil.Process().memory_info().rss
    if kind == "adapter":
        teacher = AdapterTeacher(model, schedule, accelerator)
    else:
        teacher = EMATeacher(copy.deepcopy(model).requires_grad_(False), schedule, accelerator)
    gc.collect()
    grown = psutil.Process().memory_info().rss - before
    numbers, module, master = teacher_bytes(teacher)
    return dict(size=size, dtype=dtype_name, teacher=kind, model_parameters=model_parameters,
                teacher_parameters=numbers,
                module_bytes=module, master_bytes=master, rss_growth_bytes=grown)


def qwen3_8b(rank: int) -> list[dict]:
    """Bytes of both teachers for Qwen3-8B, computed from its modules on the meta device (no weights)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(Qwen3Config(**QWEN3_8B))
    model_parameters = sum(p.numel() for p in model.parameters())
    # LoRA adds A (r × in) and B (out × r) to every linear layer but the output head.
    adapter = sum(rank * (m.in_features + m.out_features) for name, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and name != "lm_head")
    rows = []
    for label, numbers, module_size, master in (
        # bf16 as the teacher copy is under DeepSpeed (and a bf16-loaded policy): a float32 master beside it.
        ("full, bf16 + float32 master", model_parameters, 2, 4),
        ("full, float32 (the master is the module)", model_parameters, 4, 0),
        ("adapter, float32 (peft's default)", adapter, 4, 0),
        ("adapter, bf16 + float32 master (ZeRO-3)", adapter, 2, 4),
    ):
        rows.append(dict(size="Qwen3-8B (computed)", dtype="", teacher=label,
                         model_parameters=model_parameters,
                         teacher_parameters=numbers, module_bytes=numbers * module_size,
                         master_bytes=numbers * master, rss_growth_bytes=None))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES), help="the models measured")
    # --row size dtype teacher: measure one row in this process, printed as JSON.
    parser.add_argument("--row", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(measure(*args.row, args.rank)))
        return
    rows = []
    for row in [(size, dtype, teacher) for size in args.sizes for dtype in ("float32", "bfloat16")
                for teacher in ("full", "adapter")]:
        done = subprocess.run([sys.executable, __file__, "--rank", str(args.rank), "--row", *row],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows += qwen3_8b(args.rank)
    full = {(r["size"], r["dtype"]): r for r in rows if r["teacher"] == "full"}
    print(f"LoRA r = {args.rank} on every linear layer but the head; MiB = 2^20 bytes\n")
    print(f"load average at the start: {psutil.getloadavg()[0]:.1f} (1 min)\n")
    print("| model | policy dtype | teacher | teacher parameters | weights | float32 master | total | "
          "x full copy | RSS growth |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        total = r["module_bytes"] + r["master_bytes"]
        reference = full.get((r["size"], r["dtype"]))
        if r["size"].startswith("Qwen3"):
            reference = rows[-4]
        ratio = total / (reference["module_bytes"] + reference["master_bytes"])
        rss = "–" if r["rss_growth_bytes"] is None else f"{r['rss_growth_bytes'] / MiB:,.1f} MiB"
        print(f"| {r['size']} | {r['dtype'] or '–'} | {r['teacher']} | {r['teacher_parameters']:,} "
              f"({r['teacher_parameters'] / r['model_parameters']:.2%} of the model) | "
              f"{r['module_bytes'] / MiB:,.1f} MiB | {r['master_bytes'] / MiB:,.1f} MiB | "
              f"{total / MiB:,.1f} MiB | "
              f"{ratio:.4f}x | {rss} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rank": args.rank, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
