"""The character vocabulary, the vectorised encoder that turns chunks of text into id arrays, and the one check
of text a user hands to a trained model (a prompt, --text, a probe) against it, so every command refuses
unknown characters, empty or too long text with the same kind of line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnlm.errors import ArgumentValueError, UnknownCharacters

BMP = 1 << 16  # code points below this go through a lookup table; the rare ones above, a sorted search


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

    @property
    def dtype(self) -> np.dtype:
        """The narrowest unsigned type that holds every id: 1 byte a character up to 256 characters."""
        return np.dtype(np.uint8 if self.size <= 1 << 8 else np.uint16 if self.size <= 1 << 16 else np.uint32)

    def unknown(self, text: str) -> list[str]:
        known = set(self.chars)
        return sorted({c for c in text if c not in known})

    def encode(self, text: str) -> torch.Tensor:
        check_known(text, self, "text", "use only characters from its vocabulary")
        if not text:
            return torch.zeros(0, dtype=torch.long)
        return torch.from_numpy(Encoder(self)(text).astype(np.int64))

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)


class Encoder:
    """Text -> ids as a numpy array of the vocabulary's dtype, a whole chunk at a time.

    ASCII text with a one-byte vocabulary is a single `bytes.translate` (about 1 GB/s); other text goes
    through its UTF-32 code points and a lookup table. Characters outside the vocabulary must have been
    ruled out before (the preparation's first pass does that): they would map to id 0.
    """

    def __init__(self, vocab: Vocab) -> None:
        self.dtype = vocab.dtype
        codes = np.array([ord(c) for c in vocab.chars], dtype=np.int64)
        ids = np.arange(vocab.size)
        bmp = codes < BMP
        self.table = np.zeros(int(codes[bmp].max()) + 1 if bmp.any() else 1, dtype=self.dtype)
        self.table[codes[bmp]] = ids[bmp]
        self.astral_codes, self.astral_ids = codes[~bmp], ids[~bmp].astype(self.dtype)  # sorted, as chars are
        self.translate: bytes | None = None
        if self.dtype == np.uint8:
            ascii_table = np.zeros(256, dtype=np.uint8)
            ascii_table[: min(len(self.table), 128)] = self.table[:128]
            self.translate = ascii_table.tobytes()

    def __call__(self, text: str | bytes) -> np.ndarray:
        """`text`: a str, or bytes that are ASCII text (one byte a character)."""
        if text.isascii():  # O(1) for a str: CPython records it
            raw = text if isinstance(text, bytes) else text.encode("ascii")
            if self.translate is not None:
                return np.frombuffer(raw.translate(self.translate), dtype=np.uint8)
            return self.table[np.frombuffer(raw, dtype=np.uint8)]
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if not len(self.astral_codes):
            return self.table[codes]
        ids = np.empty(len(codes), dtype=self.dtype)
        small = codes < BMP
        ids[small] = self.table[codes[small]]
        ids[~small] = self.astral_ids[np.searchsorted(self.astral_codes, codes[~small])]
        return ids


class CharSet:
    """The distinct characters seen so far, gathered chunk by chunk without a Python loop per character."""

    def __init__(self) -> None:
        self.ascii = b""  # the ASCII bytes seen, for bytes.translate(None, delete=...)
        self.bmp = np.zeros(BMP, dtype=bool)
        self.astral: set[int] = set()

    def add(self, text: str | bytes) -> None:
        """`text`: a str, or bytes that are ASCII text."""
        if text.isascii():
            raw = text if isinstance(text, bytes) else text.encode("ascii")
            new = raw.translate(None, self.ascii)  # what is left is unseen
            if new:
                self.ascii = bytes(sorted(set(self.ascii) | set(new)))
            return
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        big = codes >= BMP
        if big.any():
            self.astral.update(np.unique(codes[big]).tolist())
            codes = codes[~big]
        self.bmp |= np.bincount(codes, minlength=BMP).astype(bool)

    def update(self, other: CharSet) -> None:
        self.ascii = bytes(sorted(set(self.ascii) | set(other.ascii)))
        self.bmp |= other.bmp
        self.astral |= other.astral

    def chars(self) -> str:
        codes = set(self.ascii) | set(np.flatnonzero(self.bmp).tolist()) | self.astral
        return "".join(chr(c) for c in sorted(codes))


# ----- text a user hands to a model -----------------------------------------------------------------------
MAX_LISTED = 20  # unknown characters named in an error; a longer list hides the fix


def listed(chars: list[str]) -> str:
    """Characters for an error message, each quoted: the first MAX_LISTED of them, then how many were left
    out ("and 37 more")."""
    more = f" and {len(chars) - MAX_LISTED} more" if len(chars) > MAX_LISTED else ""
    return " ".join(repr(c) for c in chars[:MAX_LISTED]) + more


def check_known(text: str, vocab: Vocab, subject: str, fix: str, never_saw: str = "the model never saw") -> None:
    """Refuse `text` when it has characters outside `vocab`:
    '<subject> has characters <never_saw>: 'a' 'b' ... and 37 more; <fix>'."""
    missing = vocab.unknown(text)
    if missing:
        shown = listed(missing)
        raise UnknownCharacters(f"{subject} has characters {never_saw}: {shown}; {fix}", missing)


def encode_checked(text: str, vocab: Vocab, subject: str, max_len: int | None = None, *, empty_hint: str,
                   fix: str = "use only characters from its training text", never_saw: str = "the model never saw",
                   too_long: str | None = None) -> torch.Tensor:
    """`text` as ids (T,) after the checks every inspection input needs: not empty, known characters and, with
    `max_len`, no longer than the model's context."""
    if not text:
        raise ArgumentValueError(f"{subject} is empty; {empty_hint}")
    check_known(text, vocab, subject, fix, never_saw)
    if max_len is not None and len(text) > max_len:
        raise ArgumentValueError(too_long or (f"{subject} has {len(text)} characters but the model's context (model.block_size) "
                                     f"is {max_len}; shorten it to at most {max_len} characters"))
    return vocab.encode(text)
