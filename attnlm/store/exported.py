"""The export format (`attnlm export`): what an export folder holds and how it is read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from attnlm.config import Config, config_from_dict
from attnlm.data.vocab import Vocab
from attnlm.errors import UserError
from attnlm.lm.model import AttnLM

FORMAT = "attnlm-export"


VERSION = 1


WEIGHTS, CONFIG, VOCAB, MODEL_CODE = "model.safetensors", "config.json", "vocab.json", "model.py"


# safetensors refuses tensors that share memory: a tied head is stored once, under the embedding's name, and
# the model re-ties it when built (model.tie_weights), so loading the embedding fills both.
TIED = {"head.weight": "tok_emb.weight"}


def is_export(folder: Path) -> bool:
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def load_export(folder: str | Path, device: torch.device | str = "cpu") -> tuple[AttnLM, Vocab, Config, dict[str, Any]]:
    """(model in eval mode, vocab, config, config.json's contents) from an export folder."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        chars = json.loads((folder / VOCAB).read_text(encoding="utf-8"))["chars"]
    except FileNotFoundError as e:
        raise UserError(f"{folder} is not a complete attnlm export ({Path(e.filename).name} is missing); "
                        "export the run again with `attnlm export RUN`") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{folder} holds an unreadable export ({type(e).__name__}); export the run again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{folder / CONFIG} is not an attnlm export's config; pass a folder `attnlm export` wrote")
    if meta.get("version") != VERSION:
        raise UserError(f"{folder} has export version {meta.get('version')}, this attnlm reads {VERSION}")
    try:
        cfg = config_from_dict(meta["config"])
        vocab = Vocab("".join(chars))
        model = AttnLM(cfg.model, vocab.size)
        missing, unexpected = model.load_state_dict(load_file(folder / WEIGHTS), strict=False)
        if set(missing) != set(meta.get("tied", {})) or unexpected:
            raise RuntimeError(f"weights missing: {sorted(missing)}, unexpected: {sorted(unexpected)}")
    except (KeyError, TypeError, RuntimeError, UserError, SafetensorError, OSError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"{folder} is not a usable attnlm export ({first}); export the run again") from None
    return model.to(device).eval(), vocab, cfg, meta
