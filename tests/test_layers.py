"""The layers the tree shows hold: the core imports without torch or TRL, and only training/ touches TRL."""

import re
import subprocess
import sys
from pathlib import Path

import corewarding

PACKAGE = Path(corewarding.__file__).parent
BLOCKER = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "trl", "accelerate", "datasets", "vllm"}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Blocked())
"""


def test_the_core_and_the_synthetic_task_import_without_torch_or_trl():
    modules = sorted(
        f"corewarding.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__"
    )
    modules += ["corewarding.data.synthetic", "corewarding.data.records"]
    code = BLOCKER + "".join(f"import {m}\n" for m in modules) + "print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    assert "corewarding.core.rewards" in modules and "corewarding.core.methods" in modules


def test_only_the_training_layer_imports_trl():
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if re.search(r"^\s*(from trl\b|import trl\b)", path.read_text(), re.M)
    )
    assert importers and all(name.startswith("training/") for name in importers), importers
