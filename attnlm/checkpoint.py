"""Checkpoints: written atomically, read with `weights_only=True` so a file can never run code."""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from attnlm import disk
from attnlm.errors import UserError

FORMAT = "attnlm-checkpoint"
VERSION = 1
TEMP_PREFIX = ".tmp-"


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], size: int | None = None) -> None:
    """Call `write(file)` on a temp file in the same folder, fsync it, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a truncated one. A write the
    machine refuses (disk full, read-only, the folder deleted) removes the temp file, leaves the old file
    as it was and raises MachineError naming `path` and `size`, the bytes it needed. The folder must exist
    already: a folder deleted while in use is never recreated in parts.
    """
    tmp: str | None = None
    file: _Recorder | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if os.name == "posix":  # mkstemp makes 0600; give the file ordinary permissions (Windows has no modes)
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(fd, 0o666 & ~umask)
            file = _Recorder(f)
            write(file)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        if os.name == "posix":  # Windows cannot open a folder as a file to fsync it
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
    except OSError as e:
        raise disk.write_error(path, e, size) from None
    except Exception:
        if file is not None and file.error is not None:  # torch.save words a refused write as a zip-position error
            raise disk.write_error(path, file.error, size) from None
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):  # on a file system gone read-only, remove_leftovers does it later
                Path(tmp).unlink(missing_ok=True)


class _Recorder:
    """A file that remembers the OSError of a refused write: torch.save reports one as `RuntimeError:
    unexpected pos 1113792 vs 1113680`, and the user needs to read "the disk is full" instead."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def save_checkpoint(payload: dict[str, Any], path: Path, size: int | None = None) -> None:
    """`size`: the bytes it needs about (estimate_size), named when the disk refuses them."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    atomic_write(path, lambda f: torch.save(payload, f), size)


def estimate_size(model: torch.nn.Module) -> int:
    """Bytes of a training checkpoint of `model`, from its parameters: the weights and AdamW's two moments
    per parameter, plus the records, random states, config and vocabulary around them (calibrated on saved
    checkpoints of 2k to 0.8M parameters: 13 % over at 2k, 2 % at 31k, 0.1 % at 0.8M)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    # Each tensor of the model brings ~1.2 KB of records (its own, its moments' and its step count's).
    return weights + moments + 1500 * len(model.state_dict()) + 16_000


def remove_leftovers(folder: Path) -> None:
    """Delete temp files left by a save that was killed before its rename."""
    for tmp in folder.glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(OSError):  # a read-only disk: the run stops at its first write, and says why
            tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
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


def load_model(path: str | Path, device: torch.device) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model in eval mode, vocab, config, payload) from a checkpoint file, or from a folder `attnlm export`
    wrote (then the payload is its config.json)."""
    from attnlm.config import config_from_dict
    from attnlm.data import Vocab
    from attnlm.model import AttnLM

    if Path(path).is_dir():
        from attnlm.export import is_export, load_export

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
