"""The model names that stand for the shipped tiny models, resolved where models are loaded.

``tiny`` names the default regime's model and ``tiny-<regime>`` a regime's (the regimes are
:mod:`corewarding.tiny.regimes`; their models are shipped in ``corewarding/tiny/assets/tiny-<regime>``).
This module knows only the folder and the default's name, so that loading a model (this layer) does not
import the tiny package, which builds on it; a test checks that the names agree with the regimes. The
names of real models fetched on first use (``smollm2``) are :mod:`corewarding.inference.fetched_models`'.
"""

from __future__ import annotations

from pathlib import Path

from corewarding.inference.fetched_models import fetched_model_dir

__all__ = ["TINY_MODELS_DIR", "DEFAULT_TINY_MODEL", "shipped_regimes", "tiny_model_dir", "model_location"]

#: The folder of the shipped tiny models, one sub-folder ``tiny-<regime>`` each.
TINY_MODELS_DIR = Path(__file__).parents[1] / "tiny" / "assets"
#: The shipped model ``tiny`` names: the default regime's.
DEFAULT_TINY_MODEL = "tiny-distractor"


def shipped_regimes() -> list[str]:
    """The regimes with a shipped model (``distractor``, ``hard``, ``shortcut``): read from the folders,
    so that a command checks a ``--regime`` before it imports torch."""
    configs = TINY_MODELS_DIR.glob("tiny-*/config.json")
    return sorted(config.parent.name.removeprefix("tiny-") for config in configs)


def tiny_model_dir(name: str | Path) -> Path | None:
    """The shipped model folder a name stands for: ``tiny`` (the default regime's), ``tiny-<regime>``;
    None for any other name (a folder, a hub id)."""
    name = DEFAULT_TINY_MODEL if str(name) == "tiny" else str(name)
    if name.startswith("tiny-") and "/" not in name and (TINY_MODELS_DIR / name / "config.json").is_file():
        return TINY_MODELS_DIR / name
    return None


def model_location(name: str | Path) -> str | Path:
    """Where to load a model from: the shipped folder for a tiny name, the fetched folder for a fetched
    model's name (``smollm2``, fetched now if not yet), else the name itself."""
    return tiny_model_dir(name) or fetched_model_dir(name) or name
