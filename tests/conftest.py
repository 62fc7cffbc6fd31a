"""Test-session settings and shared fixtures: one torch thread, where the shared data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# One torch thread: the models under test are tiny, and on a 2-core machine shared with other processes
# two threads made their training and generation up to ten times slower (the threads wait on each other).
torch.set_num_threads(1)


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$COREWARDING_SHARED_DATA``."""
    return Path(os.environ.get("COREWARDING_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set COREWARDING_SHARED_DATA)")
    return path


@pytest.fixture
def shared_file(shared_data):
    """A function from a path relative to the shared data folder to the file; skips when it is absent."""

    def locate(relative: str) -> Path:
        path = shared_data / relative
        if not path.exists():
            pytest.skip(f"shared data file {path} is absent")
        return path

    return locate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A freshly initialised tiny model (causal LM): the policy and, with a fresh head, a reward model."""
    from corewarding.tiny.model import build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
