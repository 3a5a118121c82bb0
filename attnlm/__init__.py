"""attnlm: a command-line trainer for tiny character-level attention language models."""

__version__ = "0.1.0"
