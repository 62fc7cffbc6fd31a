"""The worked examples in the package's docstrings run and stay true: every module that has one."""

import doctest
import importlib
from pathlib import Path

import pytest

import corewarding

PACKAGE = Path(corewarding.__file__).parent
MODULES = sorted(
    ".".join(("corewarding", *path.relative_to(PACKAGE).with_suffix("").parts))
    for path in PACKAGE.rglob("*.py")
    if ">>>" in path.read_text()
)


def test_the_modules_with_worked_examples_are_found():
    assert {
        "corewarding.core.rewards", "corewarding.core.methods", "corewarding.training.pair_sampler",
        "corewarding.training.teacher", "corewarding.training.precision",
    } <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no worked example"
    assert result.failed == 0
