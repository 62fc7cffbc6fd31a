"""Training: the config, the TRL trainer and its plug-ins (EMA teacher, token statistics, checkpoints),
the recipes, and a run from a config.

    from corewarding.training import CoRewardingConfig, CoRewardingTrainer, training_dataset
"""

import importlib

__all__ = ["CoRewardingConfig", "CoRewardingTrainer", "load_recipe", "train", "training_dataset"]

#: Where each name of the package lives. Imported when first used (PEP 562), so that the parts that need
#: no TRL (the settings index, the recipes, the help screen) import in a fraction of a second.
_HOMES = {
    "CoRewardingConfig": "config", "CoRewardingTrainer": "trainer", "load_recipe": "settings",
    "train": "run", "training_dataset": "run",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
