"""A model from disk: a checkpoint file, or a folder `attnlm export` wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from attnlm.errors import UserError
from attnlm.store.checkpoint import _first_line, load_checkpoint


def load_model(path: str | Path, device: torch.device) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model in eval mode, vocab, config, payload) from a checkpoint file, or from a folder `attnlm export`
    wrote (then the payload is its config.json)."""
    from attnlm.config import config_from_dict
    from attnlm.data import Vocab
    from attnlm.lm.model import AttnLM

    if Path(path).is_dir():
        from attnlm.store.exported import is_export, load_export

        if is_export(Path(path)):
            return load_export(path, device)
        raise UserError(f"{path} is a folder but not an export (no config.json and model.safetensors); pass a "
                        "checkpoint file, a run folder with --run, or a folder `attnlm export` wrote")
    payload = load_checkpoint(path)
    try:
        cfg = config_from_dict(payload["config"])
        vocab = Vocab(payload["vocab"])
        model = AttnLM(cfg.model, vocab.size)
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, RuntimeError, UserError) as e:
        raise UserError(f"{path} is not a usable attnlm checkpoint ({_first_line(e)}); use another checkpoint") from None
    return model.to(device).eval(), vocab, cfg, payload
