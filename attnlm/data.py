"""Corpus loading, the character vocabulary, the train/val split and batch drawing."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from attnlm.errors import UserError
from attnlm.text import check_known


@dataclass(frozen=True)
class Vocab:
    """Sorted characters of the corpus; a character's id is its index."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        known = set(self.chars)
        return sorted({c for c in text if c not in known})

    def encode(self, text: str) -> torch.Tensor:
        check_known(text, self, "text", "use only characters from its vocabulary")
        if not text:
            return torch.zeros(0, dtype=torch.long)
        # Code points through a lookup table: one vectorised gather instead of a Python loop per char.
        codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
        table = torch.zeros(ord(max(self.chars)) + 1, dtype=torch.long)
        table[[ord(c) for c in self.chars]] = torch.arange(self.size)
        return table[codes]

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)


def read_text(path: str | Path) -> str:
    """Read a UTF-8 corpus, refusing what cannot be trained on."""
    path = Path(path)
    if not path.is_file():
        hint = " (run `make data` or `attnlm data shakespeare`)" if path.name == "shakespeare.txt" else ""
        raise UserError(f"data file not found: {path}{hint}; set data.path to a UTF-8 text file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read data file {path} ({e.strerror}); check that you may read it") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"data file {path} is not UTF-8 text (bad byte at offset {e.start}); convert it to UTF-8") from None
    if "\x00" in text:
        raise UserError(f"data file {path} looks binary (contains NUL bytes); give a text file")
    # A byte-order mark (Windows editors write one) is no character of the text.
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text:
        raise UserError(f"data file {path} is empty; give a text file with some text in it")
    if len(set(text)) < 2:
        raise UserError(f"data file {path} has a single distinct character; there is nothing to learn from it")
    return text


@dataclass
class Corpus:
    vocab: Vocab
    train: torch.Tensor  # (N_train,) int64 token ids
    val: torch.Tensor  # (N_val,)


def load_corpus(path: str | Path, val_fraction: float, block_size: int, vocab: Vocab | None = None) -> Corpus:
    """Encode the whole text once; the last `val_fraction` of it is validation.

    With `vocab` (from a checkpoint) the text must fit that vocabulary.
    """
    text = read_text(path)
    vocab = vocab or Vocab.from_text(text)
    ids = vocab.encode(text)
    n_val = int(len(ids) * val_fraction)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    for name, split in (("training", train), ("validation", val)):
        if len(split) < block_size + 1:
            raise UserError(
                f"the {name} split of {path} has {len(split)} characters, fewer than block_size + 1 = "
                f"{block_size + 1}; use more text, a smaller model.block_size or another data.val_fraction"
            )
    return Corpus(vocab, train, val)


class BatchSampler:
    """Random windows of block_size + 1 characters, drawn from a dedicated seeded generator.

    Batches are gathered with one index tensor, so drawing costs no Python loop per row.
    """

    def __init__(self, data: torch.Tensor, block_size: int, batch_size: int, seed: int) -> None:
        self.data = data
        self.block_size = block_size
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._offsets = torch.arange(block_size + 1)  # (T+1,)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=self.generator)
        windows = self.data[starts[:, None] + self._offsets]  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]  # x, y: (B, T)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def steps_per_epoch(n_train: int, batch_size: int, block_size: int) -> int:
    return max(1, math.ceil(n_train / (batch_size * block_size)))


def eval_windows(data: torch.Tensor, block_size: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive windows covering every next-character prediction of `data` exactly once.

    Full windows come in batches of `batch_size`; the leftover tail is one shorter window.
    """
    x_all, y_all = data[:-1], data[1:]
    n_full = len(x_all) // block_size
    full_x = x_all[: n_full * block_size].view(n_full, block_size)  # (W, T)
    full_y = y_all[: n_full * block_size].view(n_full, block_size)
    for i in range(0, n_full, batch_size):
        yield full_x[i : i + batch_size], full_y[i : i + batch_size]
    if len(x_all) > n_full * block_size:
        yield x_all[n_full * block_size :][None], y_all[n_full * block_size :][None]
