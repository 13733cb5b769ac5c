"""rlrecipes: reinforcement learning for LLMs, as home recipes."""

__version__ = "0.1.0"
