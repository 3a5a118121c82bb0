"""Preparation in two streaming passes: the first finds the character set and each document's length,
the second encodes chunk by chunk into train.bin and val.bin. Memory stays at a few chunks whatever the
corpus size.

Documents are joined with a separator. The last `val_fraction` of each document is validation, so a folder
of many files validates on all of them; a single file splits exactly as one text always did.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from attnlm.data.memmap import write_meta
from attnlm.data.sources import CHUNK_BYTES, NotText, Skipped, SourceFile, read_chunks
from attnlm.data.vocab import CharSet, Encoder, Vocab, check_known
from attnlm.errors import UserError

Log = Callable[[str], None]


def log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Scan:
    """What the first pass found: the documents kept (with their lengths in characters) and those skipped."""

    documents: list[tuple[SourceFile, int]]
    chars: str  # every distinct character of the documents (the separator not included)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0

    @property
    def bytes(self) -> int:
        return sum(f.size for f, _ in self.documents)

    def vocab_chars(self, separator: str) -> str:
        used = separator if len(self.documents) > 1 else ""
        return "".join(sorted(set(self.chars) | set(used)))


def _bar(desc: str, total: int, show: bool) -> tqdm:
    # disable=None: no bar when stderr is not a terminal (logs, tests, torchrun's pipes).
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False, dynamic_ncols=True,
                disable=None if show else True, file=sys.stderr)


def scan(files: list[SourceFile], strict: bool, *, chunk_bytes: int = CHUNK_BYTES, log: Log = log_to_stderr,
         progress: bool = True, skipped: Sequence[Skipped] = ()) -> Scan:
    """Pass 1. With `strict` (one file named outright) a file that is not text is an error; otherwise it is
    skipped with one line saying so. `skipped`: what was left out while finding the files, reported first."""
    started = time.perf_counter()
    charset = CharSet()
    documents: list[tuple[SourceFile, int]] = []
    left_out = list(skipped)
    for path, reason in left_out:
        log(f"skipping {path}: it {reason}")
    with _bar("scanning", sum(f.size for f in files), progress) as bar:
        for source in files:
            chars = CharSet()  # merged only if the whole file turns out to be text
            n = 0
            try:
                for text in read_chunks(source.path, chunk_bytes, bar.update):
                    chars.add(text)
                    n += len(text)
            except NotText as e:
                if strict:
                    raise UserError(f"data file {source.path} {e.reason}; {e.fix}") from None
                left_out.append((str(source.path), e.reason))
                log(f"skipping {source.path}: it {e.reason}")
                continue
            if n == 0:
                if strict:
                    raise UserError(f"data file {source.path} is empty; give a text file with some text in it")
                left_out.append((str(source.path), "is empty"))
                log(f"skipping {source.path}: it is empty")
                continue
            charset.update(chars)
            documents.append((source, n))
    return Scan(documents, charset.chars(), left_out, time.perf_counter() - started)


def split_sizes(scan: Scan, val_fraction: float, separator: str) -> tuple[list[tuple[int, int]], int, int]:
    """Per document (train, val) characters, and the totals of each split with the separators between."""
    parts = []
    for _, n in scan.documents:
        n_val = int(n * val_fraction)
        parts.append((n - n_val, n_val))
    totals = []
    for i in range(2):
        pieces = [p[i] for p in parts if p[i]]
        totals.append(sum(pieces) + len(separator) * max(0, len(pieces) - 1))
    return parts, totals[0], totals[1]


def check_vocab(scan: Scan, separator: str, vocab: Vocab | None, what: str) -> Vocab:
    """The vocabulary to encode with: the corpus's own, or a checkpoint's, which must hold every character."""
    chars = scan.vocab_chars(separator)
    if vocab is None:
        return Vocab(chars)
    check_known(chars, vocab, what, "use only characters from its vocabulary")
    return vocab


class _Split:
    """One split's file: ids appended, the separator written once before each document but the first."""

    def __init__(self, path: Path, separator: bytes, sep_len: int) -> None:
        self.file = open(path, "wb")
        self.separator, self.sep_len = separator, sep_len
        self.written = 0
        self.begun = False  # whether the current document has written here yet

    def write(self, ids: Any) -> None:
        if not len(ids):
            return
        if not self.begun and self.written:
            self.file.write(self.separator)
            self.written += self.sep_len
        self.begun = True
        self.file.write(memoryview(ids).cast("B"))  # the array's bytes, not a copy
        self.written += len(ids)

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def encode(scan: Scan, vocab: Vocab, val_fraction: float, separator: str, folder: Path, *,
           chunk_bytes: int = CHUNK_BYTES, progress: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pass 2: write train.bin, val.bin and meta.json (with `extra`) into `folder`, which exists; returns the meta."""
    started = time.perf_counter()
    encoder = Encoder(vocab)
    sep = encoder(separator)
    parts, n_train, n_val = split_sizes(scan, val_fraction, separator)
    train, val = (_Split(folder / f"{name}.bin", sep.tobytes(), len(sep)) for name in ("train", "val"))
    documents = []
    try:
        with _bar("encoding", scan.bytes, progress) as bar:
            for (source, n), (doc_train, doc_val) in zip(scan.documents, parts, strict=True):
                train.begun = val.begun = False
                pos = 0
                try:
                    for text in read_chunks(source.path, chunk_bytes, bar.update):
                        ids = encoder(text)
                        cut = min(max(doc_train - pos, 0), len(ids))
                        train.write(ids[:cut])
                        val.write(ids[cut:])
                        pos += len(ids)
                except NotText:
                    pos = -1
                if pos != n:
                    raise UserError(f"{source.path} changed while it was being prepared; prepare it again")
                documents.append({"path": str(source.path), "chars": n, "train": doc_train, "val": doc_val})
    finally:
        train.close()
        val.close()
    if (train.written, val.written) != (n_train, n_val):  # a bug, not the user's doing
        raise RuntimeError(f"prepared {train.written}/{val.written} ids, planned {n_train}/{n_val}")
    meta = {"vocab": vocab.chars, "dtype": vocab.dtype.name, "train": n_train, "val": n_val,
            "characters": sum(n for _, n in scan.documents), "bytes": scan.bytes,
            "val_fraction": val_fraction, "separator": separator, "documents": documents,
            "skipped": scan.skipped, "seconds": scan.seconds + time.perf_counter() - started, **(extra or {})}
    write_meta(folder, meta)
    return meta
