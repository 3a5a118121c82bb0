"""A prepared corpus on disk and memory-mapped: meta.json (vocabulary, split sizes, sources) beside
train.bin and val.bin, the token ids as raw uint8/uint16/uint32 arrays.

Memory-mapped, the ids are read from the page cache as windows are drawn: a process's memory does not grow
with the corpus, and the processes of a torchrun job share the same pages.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnlm.data.sources import NotText, read_regular
from attnlm.data.vocab import Vocab

FORMAT = "attnlm-prepared"
VERSION = 1
META = "meta.json"
SPLITS = ("train", "val")


@dataclass
class Corpus:
    vocab: Vocab
    train: torch.Tensor  # (N_train,) token ids: uint8, uint16 or uint32, memory-mapped
    val: torch.Tensor  # (N_val,)
    folder: Path | None = None  # the prepared folder the ids are mapped from
    meta: dict[str, Any] | None = None


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The folder's meta.json if it is a complete prepared corpus, else None."""
    try:
        meta = json.loads(read_regular(folder / META).decode("utf-8"))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            return None
        itemsize = np.dtype(meta["dtype"]).itemsize
        for split in SPLITS:
            if (folder / f"{split}.bin").stat().st_size != meta[split] * itemsize:
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError, AttributeError, NotText):
        return None


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """meta.json last, flushed to disk: a folder with it holds complete arrays."""
    with open(folder / META, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "version": VERSION, **meta}, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


def _map(path: Path, dtype: np.dtype, n: int) -> torch.Tensor:
    if n == 0:  # mmap cannot map an empty file
        return torch.from_numpy(np.zeros(0, dtype=dtype))
    # Copy-on-write ("c"): a writable array for torch (no warning), backed by the shared page cache; nothing
    # writes to it, so no page is ever copied.
    return torch.from_numpy(np.memmap(path, dtype=dtype, mode="c", shape=(n,)))


def open_prepared(folder: Path, meta: dict[str, Any]) -> Corpus:
    dtype = np.dtype(meta["dtype"])
    train, val = (_map(folder / f"{split}.bin", dtype, meta[split]) for split in SPLITS)
    return Corpus(Vocab(meta["vocab"]), train, val, folder, meta)
