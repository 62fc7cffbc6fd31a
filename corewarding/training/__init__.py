"""Training: the config, the TRL trainer and its plug-ins (EMA teacher, token statistics, checkpoints),
the recipes, and a run from a config.

    from corewarding.training import CoRewardingConfig, CoRewardingTrainer, training_dataset
"""

from corewarding.training.config import CoRewardingConfig
from corewarding.training.run import train, training_dataset
from corewarding.training.settings import load_recipe
from corewarding.training.trainer import CoRewardingTrainer

__all__ = ["CoRewardingConfig", "CoRewardingTrainer", "load_recipe", "train", "training_dataset"]
