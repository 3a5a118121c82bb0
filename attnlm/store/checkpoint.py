"""Checkpoints: written atomically, read with `weights_only=True` so a file can never run code."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from attnlm.disk import atomic_write
from attnlm.errors import UserError

FORMAT = "attnlm-checkpoint"
VERSION = 1


def save_checkpoint(payload: dict[str, Any], path: Path, size: int | None = None) -> None:
    """`size`: the bytes it needs about (estimate_size), named when the disk refuses them."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    atomic_write(path, lambda f: torch.save(payload, f), size)


def estimate_size(model: torch.nn.Module) -> int:
    """Bytes of a training checkpoint of `model`, from its parameters: the weights and AdamW's two moments
    per parameter, plus the records, random states, config and vocabulary around them. Checked against saved
    checkpoints: it errs a little high, most (relatively) for the tiniest models, where the fixed part dominates."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    # Each tensor of the model brings ~1.2 KB of records (its own, its moments' and its step count's).
    return weights + moments + 1500 * len(model.state_dict()) + 16_000


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a checkpoint file; pass a run folder as --run DIR or a .pt file "
                        "as --checkpoint FILE")
    if path.exists() and not path.is_file():  # never opened: reading a named pipe waits for a writer
        raise UserError(f"{path} is not a regular file (a pipe, socket or device); pass a .pt file from a run's "
                        "checkpoints/ folder")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; pass --run DIR or --checkpoint FILE of a trained run")
    try:
        with warnings.catch_warnings():
            # torch warns about unusual pickle protocols; the one line below says all the user needs.
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # The restricted unpickler names the import it blocked (e.g. "GLOBAL posix.system"); other refusals are
        # bytes it cannot parse at all, and its long generic advice (retry with weights_only=False) must not be shown.
        if "GLOBAL" in str(e):
            raise UserError(
                f"refusing to load {path}: it holds Python objects that could run code; "
                "only load checkpoints written by attnlm"
            ) from None
        raise _unreadable(path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise _unreadable(path, _first_line(e)) from None
    except Exception:  # arbitrary bytes make the legacy unpickler raise KeyError, IndexError, ...
        raise _unreadable(path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not an attnlm checkpoint; pass a .pt file from a run's checkpoints/ folder")
    if payload.get("version") != VERSION:
        raise UserError(f"{path} has checkpoint version {payload.get('version')}, this attnlm reads {VERSION}")
    return payload


def _unreadable(path: Path, why: str = "not a PyTorch weights file") -> UserError:
    return UserError(f"{path} is truncated or not a checkpoint ({why}); use another checkpoint, e.g. best.pt")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


