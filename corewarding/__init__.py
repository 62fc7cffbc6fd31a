"""corewarding: stable label-free reinforcement learning of LLM reasoning (Co-rewarding and its baselines)."""

__version__ = "0.1.0"
