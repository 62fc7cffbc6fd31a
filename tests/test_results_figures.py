"""The figures of docs/results.md and README.md are those of the stored runs under docs/results/: each
generated table equals what its script computes from the stored files now, every "mean ± SD" quoted in
the text is one of those tables' cells, and the README's demo table is the stored demo report's."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
#: Other documents with tables generated from stored runs.
GENERATED_ELSEWHERE = [ROOT / "docs" / "diagnose.md"]
GENERATED = re.compile(r"<!-- generated: python (benchmarks/\S+\.py) (\S+) -->\n(.*?)\n<!-- end -->", re.S)
MEAN_SD = re.compile(r"(?<![\d.])−?\d+\.\d ± \d+\.\d(?![\d.])")


def script(path: str):
    """The benchmark script as a module, with its folder on the path as when it runs (it may import a
    sibling: ``stored_runs``)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate(path: str, name: str) -> str:
    module = script(path)
    return module.TABLES[name]() if hasattr(module, "TABLES") else module.table()


def generated_blocks(text: str) -> list[tuple[str, str, str]]:
    return GENERATED.findall(text)


def test_every_generated_table_is_what_the_stored_runs_give():
    blocks = generated_blocks(RESULTS_MD.read_text())
    assert {name for _, name, _ in blocks} >= {"distractor", "shortcut", "hard", "headline"}
    for document in GENERATED_ELSEWHERE:
        blocks += generated_blocks(document.read_text())
    for path, name, table in blocks:
        assert table == generate(path, name), f"{path} {name}: regenerate it (the stored runs give another)"


@pytest.mark.parametrize("document", [RESULTS_MD, README], ids=["results.md", "README.md"])
def test_every_mean_and_sd_quoted_is_a_cell_of_a_generated_table(document):
    results = RESULTS_MD.read_text()
    cells = "\n".join(table for _, _, table in generated_blocks(results))
    prose = GENERATED.sub("", document.read_text())
    quoted = MEAN_SD.findall(prose)
    assert quoted, "the text quotes no mean ± SD: is the pattern still right?"
    missing = [figure for figure in quoted if figure not in cells]
    assert not missing, f"{document.name} quotes figures no stored run gives: {missing}"


def test_the_readme_demo_table_is_the_stored_demo_report():
    report = (ROOT / "docs" / "results" / "demo" / "report.md").read_text()
    stored = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 5 and re.fullmatch(r"[a-z_]+", cells[0]) and cells[0] != "run":
            stored[cells[0]] = (cells[3], cells[4])
    rows = {
        "ground truth (labels)": "ground_truth", "**Co-rewarding-I** (no labels)": "co_rewarding_i",
        "Co-rewarding-II": "co_rewarding_ii", "majority vote": "majority_vote",
        "entropy minimisation": "entropy", "self-certainty": "self_certainty",
    }
    readme = README.read_text()
    for label, run in rows.items():
        match = re.search(rf"^\| {re.escape(label)} \| ([\d.]+) → \**([\d.]+)\** \|", readme, re.M)
        assert match, label
        assert match.groups() == stored[run], (label, match.groups(), stored[run])
