"""The Python API: train a model, load one, sample, evaluate and look at its attention. Every CLI command's
body lives in this package (one module per command), so a notebook, the command line and the explorer take
the same path.

    import attnlm
    run = attnlm.train("configs/tiny.yaml", ["train.epochs=2"])
    model = attnlm.load(run.dir)
    print(model.generate("ROMEO:", max_new_tokens=100, seed=0))

Errors a user can cause raise attnlm.UserError with the same one-line message the CLI prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Evaluation", "Model", "Run", "default_prompt", "load", "resume", "train"]

# Loaded on first use: a command body (attnlm.api.sample, ...) checks its request before torch is imported.
_HOME = {"Evaluation": "model", "Model": "model", "default_prompt": "model", "load": "model",
         "Run": "run", "resume": "run", "train": "run"}

if TYPE_CHECKING:
    from attnlm.api.model import Evaluation, Model, default_prompt, load
    from attnlm.api.run import Run, resume, train


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"attnlm.api.{_HOME[name]}"), name)
    raise AttributeError(f"module 'attnlm.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
