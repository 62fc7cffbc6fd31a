"""The worked examples in the docstrings of the framework-free modules run and stay true."""

import doctest
import importlib

import pytest

MODULES = [
    "corewarding.answers",
    "corewarding.equivalence",
    "corewarding.voting",
    "corewarding.rewards",
    "corewarding.teacher",
    "corewarding.token_statistics",
    "corewarding.collapse",
    "corewarding.data.rephrasing_prompt",
    "corewarding.data.rephrasing_checks",
    "corewarding.evaluate",
    "corewarding.generation",
    "corewarding.reward_model",
    "corewarding.cooper",
    "corewarding.annotate",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no worked example"
    assert result.failed == 0
