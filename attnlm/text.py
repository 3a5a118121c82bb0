"""Text a user hands to a trained model (a prompt, --text, a probe): checked against the vocabulary in one
place, so every command refuses unknown characters, empty or too long text with the same kind of line."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from attnlm.errors import UnknownCharacters, UserError

if TYPE_CHECKING:
    import torch

    from attnlm.data import Vocab

MAX_LISTED = 20  # unknown characters named in an error; a longer list hides the fix
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\r\n": "␍↵"}
# Categories of code points that draw nothing of their own: combining marks, format characters (the zero
# width joiner, variation selectors), controls, separators, private and unassigned code points.
INVISIBLE = {"Mn", "Me", "Cf", "Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def listed(chars: list[str]) -> str:
    """Characters for an error message, each quoted: the first MAX_LISTED of them, then how many were left
    out ("and 37 more")."""
    more = f" and {len(chars) - MAX_LISTED} more" if len(chars) > MAX_LISTED else ""
    return " ".join(repr(c) for c in chars[:MAX_LISTED]) + more


def show_char(c: str) -> str:
    """A character or grapheme cluster as a label: whitespace made visible, and a lone code point that
    draws nothing (a combining accent, a zero width joiner, an unusual space) named by its code point."""
    if c in VISIBLE:
        return VISIBLE[c]
    if len(c) == 1 and unicodedata.category(c) in INVISIBLE:
        return code_point(c)
    return c


def code_point(c: str) -> str:
    """'U+4E2D': how a character is named where it cannot be drawn."""
    return f"U+{ord(c):04X}"


def graphemes(text: str) -> list[tuple[str, list[int]]]:
    """The text as a terminal draws it: its grapheme clusters, each with its code-point positions.

    A skin-toned emoji (👍🏽), a letter with a combining accent (e + U+0301) and a family joined by zero
    width joiners are one cluster each, though the model reads them as 2, 2 and 5 characters.
    """
    from wcwidth import iter_graphemes  # UAX #29 segmentation; pure Python, loaded only where text is shown

    groups, start = [], 0
    for cluster in iter_graphemes(text):
        groups.append((cluster, list(range(start, start + len(cluster)))))
        start += len(cluster)
    return groups


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
