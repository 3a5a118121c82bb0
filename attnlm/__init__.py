"""attnlm: train tiny character-level attention language models and look inside them.

    import attnlm
    run = attnlm.train("configs/tiny.yaml")          # -> attnlm.Run
    model = attnlm.load(run.dir)                      # -> attnlm.Model
    model.generate("ROMEO:", max_new_tokens=100, seed=0)
    model.evaluate("some text").perplexity
    model.attention("To be, or not")                  # (n_layer, n_head, T, T)

The API lives in attnlm.api; it is imported on first use, so `attnlm --help` never waits for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attnlm.errors import ArgumentTypeError, ArgumentValueError, NumericalError, UserError
from attnlm.version import __version__

__all__ = ["ArgumentTypeError", "ArgumentValueError", "Evaluation", "Model", "NumericalError", "Run", "UserError",
           "__version__", "load", "resume", "train"]

_API = {"train", "resume", "load", "Run", "Model", "Evaluation"}

if TYPE_CHECKING:
    from attnlm.api import Evaluation, Model, Run, load, resume, train


def __getattr__(name: str) -> Any:
    if name in _API:
        from attnlm import api

        return getattr(api, name)
    raise AttributeError(f"module 'attnlm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
