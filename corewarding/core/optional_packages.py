"""The packages an optional integration needs, and the one line a missing one is: the user's to install,
not a bug. Checked where the integration is asked for, before any model is loaded (the run's settings:
``report_to``, ``use_vllm``, an assistant on vLLM; ``--backend vllm``); ``openai`` is a
dependency of the package and needs no check."""

from __future__ import annotations

import importlib.util

from corewarding.core.errors import UserError

__all__ = ["MissingPackageError", "OPTIONAL_PACKAGES", "REPORTING_PACKAGES", "require", "require_reporting"]

#: Each optional package: the modules any one of which provides it, and the command that installs it.
OPTIONAL_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install tensorboard"),
    "wandb": (("wandb",), "pip install wandb"),
    "trackio": (("trackio",), "pip install trackio"),
    "mlflow": (("mlflow",), "pip install mlflow"),
    "vllm": (("vllm",), "pip install 'corewarding[vllm]'"),
}
#: The ``report_to`` integrations whose package is checked (the others are transformers' to check).
REPORTING_PACKAGES = ("tensorboard", "wandb", "trackio", "mlflow")


class MissingPackageError(UserError):
    """An integration was asked for and its package is not installed (one line with the install command)."""


def require(package: str, wanted_by: str) -> None:
    """Raise :class:`MissingPackageError` unless ``package`` (a key of :data:`OPTIONAL_PACKAGES`) is
    installed; ``wanted_by`` names what asked for it (``--report_to tensorboard``)."""
    modules, install = OPTIONAL_PACKAGES[package]
    if not any(importlib.util.find_spec(module) is not None for module in modules):
        raise MissingPackageError(
            f"{wanted_by} needs the {package} package, which is not installed: {install}"
        )


def require_reporting(report_to: None | str | list[str]) -> None:
    """Each integration of a ``report_to`` setting (a name, ``a,b``, a list; ``none`` and ``all`` need
    nothing) that needs a package of :data:`REPORTING_PACKAGES`, installed."""
    names = report_to.replace(",", " ").split() if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        if name in REPORTING_PACKAGES:
            require(name, f"--report_to {name}")
