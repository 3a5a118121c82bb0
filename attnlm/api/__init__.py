"""The Python API: train a model, load one, sample, evaluate, look at its attention and score its heads. Every
CLI command's body lives in this package (one module per command), so a notebook, the command line and the
explorer take the same path.

    import attnlm
    run = attnlm.train("configs/tiny.yaml", ["train.epochs=2"])
    model = attnlm.load(run.dir)
    print(model.generate("ROMEO:", max_new_tokens=100, seed=0))

Errors a user can cause raise attnlm.UserError with the same one-line message the CLI prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["AblationReport", "Config", "Evaluation", "HeadReport", "Model", "Run", "Trainer", "ablate",
           "config_reference", "cpu_has_bf16", "default_prompt", "git_commit", "head_scores", "load", "load_config",
           "resolve_device", "resume", "start_explorer", "train", "use_bf16", "use_compile"]

# Loaded on first use: a command body (attnlm.api.sample, ...) checks its request before torch is imported.
_HOME = {"Evaluation": "attnlm.api.model", "Model": "attnlm.api.model", "default_prompt": "attnlm.api.model",
         "load": "attnlm.api.model", "Run": "attnlm.api.run", "resume": "attnlm.api.run", "train": "attnlm.api.run",
         "start_explorer": "attnlm.api.explore", "head_scores": "attnlm.api.heads", "HeadReport": "attnlm.api.heads",
         "ablate": "attnlm.api.ablation", "AblationReport": "attnlm.api.ablation",
         # The building blocks for tools and benchmarks (scripts/), which the Model API does not give: a
         # config and its reference, the Trainer whose step bench.py times, the commit a result was measured
         # at, and the device facts that decide precision and compiling.
         "Config": "attnlm.config", "load_config": "attnlm.config", "config_reference": "attnlm.config",
         "Trainer": "attnlm.training", "git_commit": "attnlm.store.run_info", "resolve_device": "attnlm.device",
         "cpu_has_bf16": "attnlm.device", "use_bf16": "attnlm.device", "use_compile": "attnlm.device"}
_RENAMED = {"config_reference": "reference"}  # the name in its home module, where it differs

if TYPE_CHECKING:
    from attnlm.api.ablation import AblationReport, ablate
    from attnlm.api.explore import start_explorer
    from attnlm.api.heads import HeadReport, head_scores
    from attnlm.api.model import Evaluation, Model, default_prompt, load
    from attnlm.api.run import Run, resume, train
    from attnlm.config import Config, load_config
    from attnlm.config import reference as config_reference
    from attnlm.device import cpu_has_bf16, resolve_device, use_bf16, use_compile
    from attnlm.store.run_info import git_commit
    from attnlm.training import Trainer


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(_HOME[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'attnlm.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
