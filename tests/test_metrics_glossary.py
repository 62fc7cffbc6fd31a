"""docs/metrics.md explains every metric the code logs: the names of metric_names and collapse, every
metric key the package writes (found in its source), and every name a run of each shipped recipe logs
(checked where those runs are trained, tests/test_shipped_recipes.py)."""

import ast
import re
from pathlib import Path

import corewarding
from corewarding.cooper.plugin import HELDOUT_METRICS
from corewarding.core import collapse, metric_names

PACKAGE = Path(corewarding.__file__).parent
GLOSSARY = PACKAGE.parent / "docs" / "metrics.md"
#: Prefixes under which a group of metrics is logged again, and their glossary entry.
PREFIXES = {"original/": "original/<metric>", "rephrased/": "rephrased/<metric>", "labelled/": "labelled/<metric>"}
#: Names that are records' bookkeeping, not metrics.
NOT_METRICS = {"step"}


def in_glossary(name: str, text: str | None = None) -> bool:
    """Whether ``name`` has an entry: itself in backticks, or its pattern (``rewards/<name>/mean``, a
    view's or the labelled questions' ``<prefix>/<metric>`` whose metric has an entry too)."""
    text = text if text is not None else GLOSSARY.read_text()
    if f"`{name}`" in text or name in NOT_METRICS:
        return True
    column = re.fullmatch(r"rewards/[^/]+/(mean|std)", name)
    if column:
        return f"`rewards/<name>/{column.group(1)}`" in text
    for prefix, entry in PREFIXES.items():
        if name.startswith(prefix):
            return f"`{entry}`" in text and in_glossary(name.removeprefix(prefix), text)
    return False


def _is_metrics(node: ast.AST) -> bool:
    """``metrics``, ``result.metrics``, ``self._metrics``: a name of a metrics dict."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name.endswith("metrics")


def _keys(node: ast.AST) -> list[ast.AST]:
    """The keys of a dict literal or comprehension (none of anything else)."""
    if isinstance(node, ast.DictComp):
        return [node.key]
    return [k for k in node.keys if k is not None] if isinstance(node, ast.Dict) else []


def logged_keys() -> tuple[set[str], set[str]]:
    """The metric names written in the package's source: keys assigned into a metrics dict, keys of dict
    literals given to one (``metrics = {…}``, ``metrics.update({…})``, returned by a ``…metrics``
    function), and names given to ``log_metric``; f-string keys as their constant prefix (second set)."""
    exact, prefixes = set(), set()

    def add(key: ast.AST) -> None:
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            exact.add(key.value)
        elif isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant):
            prefixes.add(key.values[0].value)

    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Subscript) and _is_metrics(target.value):
                        add(target.slice)
                    if _is_metrics(target):
                        for key in _keys(node.value):
                            add(key)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr == "update" and _is_metrics(node.func.value) and node.args:
                    for key in _keys(node.args[0]):
                        add(key)
                if node.func.attr == "log_metric" and len(node.args) > 1:
                    add(node.args[1])
            elif isinstance(node, ast.FunctionDef) and node.name.endswith("metrics"):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Return):
                        for key in _keys(inner.value):
                            add(key)
    return exact, prefixes


def test_the_scan_finds_the_metrics_of_every_kind():
    exact, prefixes = logged_keys()
    # One of each way a name is written: assigned, a dict literal, log_metric, update, an f-string.
    assert {"label_accuracy", "no_answer_rate", "teacher/rate", "rm/pairs", "rm/assistant_calls"} <= exact
    assert {"labelled/", "rm/heldout_"} <= prefixes


def test_every_metric_name_in_the_code_is_in_the_glossary():
    text = GLOSSARY.read_text()
    constants = [
        value for module in (metric_names, collapse) for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str)
    ]
    exact, prefixes = logged_keys()
    heldout = [f"rm/heldout_{name}" for name in HELDOUT_METRICS]
    missing = [name for name in sorted({*constants, *exact, *heldout}) if not in_glossary(name, text)]
    assert not missing, f"not in docs/metrics.md: {missing}"
    assert all(prefix in text for prefix in prefixes), prefixes


def test_the_glossary_entries_follow_their_patterns():
    assert in_glossary("rewards/co_rewarding_ii/mean") and in_glossary("original/label_accuracy")
    assert not in_glossary("rewards/x/median") and not in_glossary("original/no_such_metric")
