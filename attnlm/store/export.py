"""Export a trained model for use outside attnlm, and load such an export back.

An export folder holds
  model.safetensors  the weights (safetensors: plain tensors, no pickle, so loading never runs code), with the
                     model section and vocabulary they were trained with in its metadata, which loading checks
                     config.json and vocab.json against
  config.json        the model section (what AttnLM is built from, by attnlm's loader as by docs/export.md's),
                     the vocabulary size, the tied weights and the whole training config (what `attnlm eval`
                     needs; its model section must equal the first), and where the weights came from
  vocab.json         {"chars": [...]}: token i is chars[i]
  model.py           a copy of attnlm/lm/model.py, which needs only torch: with safetensors that is all a
                     reader needs (docs/export.md)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from attnlm import disk
from attnlm.disk import TEMP_PREFIX
from attnlm.errors import MachineError, UserError
from attnlm.lm import model as lm_model
from attnlm.store.exported import CONFIG, FORMAT, MODEL_CODE, TIED, VERSION, VOCAB, WEIGHTS, weights_metadata
from attnlm.store.load import load_model
from attnlm.version import __version__


def default_out(source: Path) -> Path:
    """RUN/export for a run folder; best-export beside a checkpoint file best.pt."""
    return source / "export" if source.is_dir() else source.with_name(f"{source.stem}-export")


def export(checkpoint: Path, out: Path) -> dict[str, Any]:
    """Write `checkpoint`'s model as an export folder `out` (which must not exist or be empty); returns what
    config.json says. The folder appears whole or not at all: it is written beside `out` and renamed."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists; pass another --out or remove it first")
    model, vocab, cfg, payload = load_model(checkpoint, torch.device("cpu"))
    tied = TIED if cfg.model.tie_weights else {}
    state = payload.get("state", {})
    weights = {name: t.contiguous() for name, t in model.state_dict().items() if name not in tied}
    meta = {
        "format": FORMAT, "version": VERSION, "attnlm_version": __version__, "vocab_size": vocab.size,
        "model": cfg.to_dict()["model"], "tied": tied, "config": cfg.to_dict(),
        "source": {"checkpoint": checkpoint.as_posix(), "step": state.get("step"),
                   "val_loss": state["best_val"] if math.isfinite(state.get("best_val", math.inf)) else None},
    }
    # Serialized here and written by us: a full disk then raises an OSError we can word (safetensors' own
    # file writer reports it as a SafetensorError with the OS error inside its text).
    data = save(weights, metadata=weights_metadata(cfg.to_dict()["model"], vocab.chars))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + out.name + ".", dir=out.parent))
    except OSError as e:
        if disk.is_fault(e):
            raise MachineError(f"cannot write {out}: {disk.reason(e)}", disk.fix_for(e)) from None
        raise UserError(f"cannot write {out} ({e.strerror}); pass an --out folder you can write to") from None
    try:
        (tmp / WEIGHTS).write_bytes(data)
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        # ASCII with \u escapes: any JSON reader gets the characters right, whatever its default encoding.
        (tmp / VOCAB).write_text(json.dumps({"chars": list(vocab.chars)}) + "\n", encoding="utf-8")
        shutil.copyfile(lm_model.__file__, tmp / MODEL_CODE)
        if os.name == "posix":  # mkdtemp and safetensors make owner-only files; give them ordinary permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)
            os.chmod(tmp / WEIGHTS, 0o666 & ~umask)
        if out.is_dir():
            out.rmdir()  # empty (checked above); a rename cannot replace a folder on Windows
        os.replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # nothing of the export is left behind
            raise disk.write_error(out, e, len(data) + len(json.dumps(meta))) from None
        raise
    return meta


