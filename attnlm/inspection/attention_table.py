"""Attention as a probability table in the terminal: rows are the querying tokens, columns the tokens
they attend to, each row summing to 1; cut into blocks of columns where the terminal is too narrow.

Beside it, the "vs uniform" table reads each weight against chance (attnlm.inspection.baseline): learned
minus the even spread an untrained head gives, blue above chance and red below.
"""

from __future__ import annotations

import torch
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from attnlm.terminal import natural_width


def shade(weight: float) -> str:
    """Background from white (0) to a deep blue (1), with text that stays readable on it."""
    w = max(0.0, min(1.0, weight)) ** 0.6  # lifts small weights so 0.05 and 0 look different
    r, g, b = (round(255 + (c - 255) * w) for c in (8, 48, 107))
    return f"{'white' if w > 0.5 else 'black'} on #{r:02x}{g:02x}{b:02x}"


def shade_difference(difference: float) -> str:
    """Diverging background for learned - uniform: white at 0, blue above chance, red below."""
    w = min(1.0, abs(difference)) ** 0.6
    ends = (8, 48, 107) if difference > 0 else (165, 15, 21)
    r, g, b = (round(255 + (c - 255) * w) for c in ends)
    return f"{'white' if w > 0.5 else 'black'} on #{r:02x}{g:02x}{b:02x}"


def attention_table(matrix: torch.Tensor, labels: list[str], title: str, compact: bool = False,
                    columns: range | None = None, uniform: torch.Tensor | None = None) -> Table:
    """The probability table: rows = querying tokens, columns = attended tokens, shaded by weight.

    `compact` gives narrower cells (".57", no quotes, no padding); `columns` shows only those columns, and
    then only the rows that can see them (a row never attends to a later token). With `uniform` (the same
    shape as `matrix`, attnlm.inspection.baseline) it is the "vs uniform" table instead: each cell is
    learned - uniform with the uniform value in brackets ("+0.07 (0.36)", compact "+.07"), shaded from red
    (below chance) through white to blue (above).
    """
    columns = columns if columns is not None else range(len(labels))
    table = Table(title=title, title_justify="left", show_lines=False, pad_edge=not compact,
                  padding=(0, 0 if compact else 1))
    table.add_column("", justify="right", no_wrap=True, style="bold")
    for j in columns:
        table.add_column(f'"{labels[j]}"' if not compact else labels[j], justify="right", no_wrap=True)
    base = uniform.tolist() if uniform is not None else None
    for i, row in enumerate(matrix.tolist()):
        if i < columns.start:
            continue  # all of this row's weights here are on the future: zeros
        if base is None:
            cells = [Text(cell_text(row[j], compact), style=shade(row[j]) if j <= i or row[j] else "dim")
                     for j in columns]
        else:
            cells = [Text(difference_text(row[j] - base[i][j], base[i][j], compact),
                          style=shade_difference(row[j] - base[i][j])) if j <= i else Text("0", style="dim")
                     for j in columns]
        table.add_row(f'"{labels[i]}"' if not compact else labels[i], *cells)
    return table


def difference_text(difference: float, uniform: float, compact: bool) -> str:
    """"+0.07 (0.36)": learned - uniform, then the uniform value; compact "+.07". A difference that rounds
    to 0 reads "0.00", never "-0.00"."""
    text = f"{difference:+.2f}"
    if text in ("+0.00", "-0.00"):
        text = "0.00"
    if compact:
        return text.replace("0.", ".", 1) if text != "0.00" else ".00"
    return f"{text} ({uniform:.2f})"


def cell_text(value: float, compact: bool) -> str:
    text = "0" if value == 0 else f"{value:.2f}"
    if compact and value != 0:  # ".57" and "1.0": three characters a cell
        text = "1.0" if text == "1.00" else text.removeprefix("0")
    return text


def fitting_tables(console: Console, matrix: torch.Tensor, labels: list[str], title: str,
                   uniform: torch.Tensor | None = None) -> list[Table]:
    """The table as it fits `console`: whole with roomy cells, whole with compact cells, or else its columns
    in blocks side by side on the page, each as wide as the console allows. Numbers are never cut.
    With `uniform`, the "vs uniform" table (see attention_table)."""
    for compact in (False, True):
        table = attention_table(matrix, labels, title, compact, uniform=uniform)
        if natural_width(console, table) <= console.width:
            return [table]
    # Compact widths: each column as wide as its label or ".57" ("+.07"), plus its border; the label column too.
    cell = 3 if uniform is None else 4
    width = [max(cell_len(label), cell) + 1 for label in labels]
    fixed = max(cell_len(label) for label in labels) + 2  # the row labels and the outer borders
    blocks, start = [], 0
    while start < len(labels):
        end = start + 1  # at least one column a block, however narrow the console
        while end < len(labels) and fixed + sum(width[start : end + 1]) <= console.width:
            end += 1
        blocks.append(range(start, end))
        start = end
    return [attention_table(matrix, labels, f"{title}, columns {b.start + 1}-{b.stop} of {len(labels)}", True, b,
                            uniform) for b in blocks]
