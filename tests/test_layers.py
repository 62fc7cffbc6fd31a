"""The layers docs/architecture.md draws are the code's: every import between the package's parts, at
module level or inside a function, goes up the documented order; no two packages import each other; the
core imports without torch or TRL, and only training/ imports TRL."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import corewarding

PACKAGE = Path(corewarding.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
#: The layers, lowest first: each may import only from those before it (and from itself).
LAYERS = [
    "core", "checkpoints", "data", "inference", "tiny", "cooper", "training", "diagnosis", "report", "demo", "cli",
]
BLOCKER = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "trl", "accelerate", "datasets", "vllm"}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Blocked())
"""


def layer_of(module: str) -> str:
    """``corewarding.core.rewards`` → ``core``; ``corewarding.demo`` → ``demo``; the package itself and
    ``__main__`` (the entry point, above everything) keep their names."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every ``corewarding`` module the file imports, anywhere in it (function bodies included), with
    its line. ``from corewarding.x import y`` counts as an import of ``corewarding.x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import"
            if node.module == "corewarding":  # `from corewarding import training` or `__version__`
                found += [
                    (f"corewarding.{a.name}" if is_module(a.name) else "corewarding", node.lineno)
                    for a in node.names
                ]
            elif node.module:
                found.append((node.module, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] == "corewarding"]


def layer_imports() -> list[tuple[str, str, str]]:
    """(importing layer, imported layer, where) for every import from one layer to another."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("corewarding", *path.relative_to(PACKAGE).with_suffix("").parts))
        source = layer_of(module.removesuffix(".__init__"))
        for name, line in imported_modules(path):
            target = layer_of(name)
            if target != source:
                edges.append((source, target, f"{path.relative_to(PACKAGE.parent)}:{line}"))
    return edges


def test_every_import_goes_up_the_documented_layers():
    # The package itself (`corewarding/__init__.py`: its version) is below every layer.
    order = {layer: rank for rank, layer in enumerate(["corewarding", *LAYERS])}
    forbidden = []
    for source, target, where in layer_imports():
        if source == "__main__" and target == "cli":
            continue  # `python -m corewarding` is the command line
        if source not in order or target not in order or order[target] > order[source]:
            forbidden.append(f"{where}: {source} imports {target}")
    assert not forbidden, "\n".join(forbidden)


def test_no_two_packages_import_each_other_even_through_others():
    graph: dict[str, set[str]] = {}
    for source, target, _ in layer_imports():
        graph.setdefault(source, set()).add(target)

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(layer for layer in graph if layer in reachable(layer))
    assert not cycles, f"layers on an import cycle: {cycles}"


def test_the_drawing_in_architecture_md_is_the_enforced_order():
    text = ARCHITECTURE.read_text()
    drawing = text.split("## Layers", 1)[1].split("```")[1]
    drawn = re.findall(r"^  (\w+)(?:/|\.py)", drawing, re.M)
    assert drawn == LAYERS, f"docs/architecture.md draws {drawn}; the test enforces {LAYERS}"


def test_the_walker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        "def f():\n    from corewarding.tiny.regimes import REGIMES\n    import corewarding.cli\n"
        "    from corewarding import __version__, training\n"
    )
    assert sorted(imported_modules(source)) == [
        ("corewarding", 4), ("corewarding.cli", 3), ("corewarding.tiny.regimes", 2),
        ("corewarding.training", 4),
    ]


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
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "trl" for a in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "trl")
    )
    assert importers and all(name.startswith("training/") for name in importers), importers
