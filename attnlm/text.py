"""Text a user hands to a trained model (a prompt, --text, a probe): checked against the vocabulary in one
place, so every command refuses unknown characters, empty or too long text with the same kind of line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from attnlm.errors import UnknownCharacters, UserError

if TYPE_CHECKING:
    import torch

    from attnlm.data import Vocab

MAX_LISTED = 20  # unknown characters named in an error; a longer list hides the fix


def listed(chars: list[str]) -> str:
    """Characters for an error message, each quoted: the first MAX_LISTED of them."""
    return " ".join(repr(c) for c in chars[:MAX_LISTED])


def show_char(c: str) -> str:
    """A character as a label: whitespace made visible."""
    return {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}.get(c, c)


def check_known(text: str, vocab: Vocab, subject: str, fix: str, never_saw: str = "the model never saw") -> None:
    """Refuse `text` when it has characters outside `vocab`: '<subject> has characters <never_saw>: ...; <fix>'."""
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
        raise UserError(f"{subject} is empty; {empty_hint}")
    check_known(text, vocab, subject, fix, never_saw)
    if max_len is not None and len(text) > max_len:
        raise UserError(too_long or (f"{subject} has {len(text)} characters but the model's context (model.block_size) "
                                     f"is {max_len}; shorten it to at most {max_len} characters"))
    return vocab.encode(text)


def check_index(what: str, value: int, count: int) -> None:
    """--layer / --head within the model's range."""
    if not 0 <= value < count:
        plural = "s" if count != 1 else ""
        raise UserError(f"--{what} {value} is out of range: the model has {count} {what}{plural} "
                        f"(0 to {count - 1}); pick one of those")


def check_png(option: str, path: Path) -> None:
    """Pictures are written as PNG; say so before any work is done."""
    if path.suffix.lower() != ".png":
        raise UserError(f"{option} {path}: the heat map is written as PNG; give a file name ending in .png")
