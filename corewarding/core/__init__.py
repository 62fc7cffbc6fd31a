"""The framework-free core: answers, equivalence, voting, rewards, collapse signals, prompts.

Nothing here imports torch, transformers or TRL (a test checks it): the core installs and runs on
Python 3.10 without them.
"""
