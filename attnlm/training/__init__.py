"""Training: the loop (loop.py), its clock (clock.py), what it reports (reporter.py) and what a checkpoint
holds besides the weights (state.py)."""

from attnlm.training.loop import Trainer

__all__ = ["Trainer"]
