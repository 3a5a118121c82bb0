"""Characters as labels a reader can see: whitespace made visible (␣, ↵), code points that draw nothing named
(U+0301), and text split into the grapheme clusters a terminal draws as one character."""

from __future__ import annotations

import unicodedata

VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\r\n": "␍↵"}
# Categories of code points that draw nothing of their own: combining marks, format characters (the zero
# width joiner, variation selectors), controls, separators, private and unassigned code points.
INVISIBLE = {"Mn", "Me", "Cf", "Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


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


