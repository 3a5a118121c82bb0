"""Attention read two ways: a probability table (rows = the querying tokens, columns = the tokens they attend
to, each row summing to 1) and a directed graph with an edge from each query to every token it attends to.

The weights are the model's own: `AttnLM.forward(..., return_attention=True)` returns what the explicit path
computed, per layer (B, H, T, T). Pictures (heat maps, TensorBoard images) live in attnlm.inspection.plots.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import torch
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from attnlm import disk
from attnlm.device import eager
from attnlm.disk import atomic_write
from attnlm.errors import UserError
from attnlm.labels import graphemes, show_char
from attnlm.lm.model import AttnLM
from attnlm.terminal import natural_width

GRAPH_FORMATS = (".dot", ".gv", ".svg", ".png")
WORD = re.compile(r"\s*(?:\w+(?:'\w+)*|\S)|\s+$")  # a word or one punctuation mark, with the spaces before it


@torch.no_grad()
def attention_weights(model: AttnLM, idx: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention on idx (T,): a list of (H, T, T), rows = queries, columns = keys."""
    was_training = model.training
    model.eval()
    try:
        with eager():  # the probe after each epoch: a compiled model would otherwise compile this path anew
            _, attention = model(idx.to(next(model.parameters()).device)[None], return_attention=True)
    finally:
        model.train(was_training)
    return [w[0].float().cpu() for w in attention]


def select(weights: list[torch.Tensor], layer: int, head: int | None) -> torch.Tensor:
    """One head's (T, T) weights, or with head=None the mean over the layer's heads (rows still sum to 1)."""
    w = weights[layer]  # (H, T, T)
    return w.mean(0) if head is None else w[head]


def char_groups(text: str) -> list[tuple[str, list[int]]]:
    """One group per character as a terminal draws it (a grapheme cluster), labelled for the table.

    Most are one code point; 👍🏽, e + U+0301 and a family joined by zero width joiners are one group of
    several, which a table column per code point would tear apart and misalign.
    """
    return [(show_char(cluster), positions) for cluster, positions in graphemes(text)]


def word_groups(text: str) -> list[tuple[str, list[int]]]:
    """Split text into words and punctuation marks, each with its character positions.

    Spaces belong to the word after them (a trailing space to the last word), so every character is in
    exactly one group and the grouped rows still sum to 1: "I love tennis." -> I / love / tennis / .
    Words are made of grapheme clusters, so an accent stays on its letter and a skin tone on its emoji.
    """
    clusters = graphemes(text)
    # One stand-in per cluster, its first code point, which decides what the cluster is (letter, space, mark).
    proxy = "".join(cluster[0] for cluster, _ in clusters)
    groups: list[tuple[str, list[int]]] = []
    for m in WORD.finditer(proxy):
        members = clusters[m.start() : m.end()]
        positions = [p for _, ps in members for p in ps]
        label = "".join(cluster for cluster, _ in members).strip()
        if not label and groups:  # spaces at the end of the text
            groups[-1][1].extend(positions)
            continue
        groups.append((label or "".join(show_char(cluster) for cluster, _ in members), positions))
    return groups


def group_matrix(w: torch.Tensor, groups: list[tuple[str, list[int]]]) -> torch.Tensor:
    """(T, T) character weights -> (G, G) word weights.

    A column is the sum over the word's characters (how much attention lands anywhere in the word); a row
    is the mean over the word's characters' rows, so each row is still a probability distribution.
    """
    member = torch.zeros(len(groups), w.shape[0])  # (G, T): 1 where character t is in word g
    for g, (_, positions) in enumerate(groups):
        member[g, positions] = 1.0
    to_words = w @ member.T  # (T, G): each character's attention summed per attended word
    return (member @ to_words) / member.sum(1, keepdim=True)  # (G, G): averaged over each word's characters


def shade(weight: float) -> str:
    """Background from white (0) to a deep blue (1), with text that stays readable on it."""
    w = max(0.0, min(1.0, weight)) ** 0.6  # lifts small weights so 0.05 and 0 look different
    r, g, b = (round(255 + (c - 255) * w) for c in (8, 48, 107))
    return f"{'white' if w > 0.5 else 'black'} on #{r:02x}{g:02x}{b:02x}"


def attention_table(matrix: torch.Tensor, labels: list[str], title: str, compact: bool = False,
                    columns: range | None = None) -> Table:
    """The probability table: rows = querying tokens, columns = attended tokens, shaded by weight.

    `compact` gives narrower cells (".57", no quotes, no padding); `columns` shows only those columns, and
    then only the rows that can see them (a row never attends to a later token).
    """
    columns = columns if columns is not None else range(len(labels))
    table = Table(title=title, title_justify="left", show_lines=False, pad_edge=not compact,
                  padding=(0, 0 if compact else 1))
    table.add_column("", justify="right", no_wrap=True, style="bold")
    for j in columns:
        table.add_column(f'"{labels[j]}"' if not compact else labels[j], justify="right", no_wrap=True)
    for i, row in enumerate(matrix.tolist()):
        if i < columns.start:
            continue  # all of this row's weights here are on the future: zeros
        cells = [Text(cell_text(row[j], compact), style=shade(row[j]) if j <= i or row[j] else "dim") for j in columns]
        table.add_row(f'"{labels[i]}"' if not compact else labels[i], *cells)
    return table


def cell_text(value: float, compact: bool) -> str:
    text = "0" if value == 0 else f"{value:.2f}"
    if compact and value != 0:  # ".57" and "1.0": three characters a cell
        text = "1.0" if text == "1.00" else text.removeprefix("0")
    return text


def fitting_tables(console: Console, matrix: torch.Tensor, labels: list[str], title: str) -> list[Table]:
    """The table as it fits `console`: whole with roomy cells, whole with compact cells, or else its columns
    in blocks side by side on the page, each as wide as the console allows. Numbers are never cut."""
    for compact in (False, True):
        table = attention_table(matrix, labels, title, compact)
        if natural_width(console, table) <= console.width:
            return [table]
    # Compact widths: each column as wide as its label or ".57", plus its border; the label column too.
    width = [max(cell_len(label), 3) + 1 for label in labels]
    fixed = max(cell_len(label) for label in labels) + 2  # the row labels and the outer borders
    blocks, start = [], 0
    while start < len(labels):
        end = start + 1  # at least one column a block, however narrow the console
        while end < len(labels) and fixed + sum(width[start : end + 1]) <= console.width:
            end += 1
        blocks.append(range(start, end))
        start = end
    return [attention_table(matrix, labels, f"{title}, columns {b.start + 1}-{b.stop} of {len(labels)}", True, b)
            for b in blocks]


def _dot_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(matrix: torch.Tensor, labels: list[str], min_weight: float = 0.1, title: str = "attention") -> str:
    """The attention matrix as a Graphviz digraph: one node per token, an edge query -> attended token for
    every weight above min_weight, labelled with the weight and as wide as it is heavy."""
    lines = [
        "digraph attention {",
        f"  label={_dot_string(title)};",
        "  labelloc=t; rankdir=RL; nodesep=0.3;",
        '  node [shape=circle, fontname="DejaVu Sans", style=filled, fillcolor="#deebf7"];',
        '  edge [fontname="DejaVu Sans", fontsize=9, color="#08306b"];',
    ]
    for i, label in enumerate(labels):
        lines.append(f"  t{i} [label={_dot_string(label)}];")
    # Attention only looks back, so every edge runs from a later token to an earlier one. Ranked right to
    # left (rankdir=RL) the text reads left to right, and invisible edges between neighbours give every token
    # its own rank, so the attention edges arc over the line instead of reordering it.
    for i in range(len(labels) - 1):
        lines.append(f"  t{i + 1} -> t{i} [style=invis, weight=100];")
    # Compared as tensors, in the weights' own precision: a float32 0.1 is then not "above" 0.1.
    above = (matrix > min_weight).tolist()
    for i, row in enumerate(matrix.tolist()):
        for j, w in enumerate(row):
            if above[i][j]:
                lines.append(f'  t{i} -> t{j} [label="{w:.2f}", penwidth={0.5 + 5 * w:.2f}, '
                             f'color="#08306b{round(64 + 191 * w):02x}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def check_graph_path(path: Path) -> None:
    """--graph takes Graphviz source or a picture Graphviz can draw; refused before any work is done."""
    if path.suffix.lower() not in GRAPH_FORMATS:
        raise UserError(f"--graph {path}: unknown extension {path.suffix or '(none)'!r}; "
                        "use .dot (Graphviz source), .svg or .png")


def write_graph(dot: str, path: Path) -> tuple[Path, Path | None, str | None]:
    """Write the DOT source (always) and, for .svg/.png, render it with Graphviz's `dot`.

    Returns (dot file, rendered file or None, a note for the user or None).
    """
    check_graph_path(path)
    disk.make_folder(path)
    fmt = path.suffix.lower().lstrip(".")
    dot_path = path if fmt in ("dot", "gv") else path.with_suffix(".dot")
    source = dot.encode("utf-8")
    atomic_write(dot_path, lambda f: f.write(source), len(source))
    if fmt in ("dot", "gv"):
        return dot_path, None, None
    exe = shutil.which("dot")
    if exe is None:
        return dot_path, None, (f"Graphviz is not installed, so {path} was not drawn; install it (Debian/Ubuntu: "
                                f"sudo apt-get install graphviz, macOS: brew install graphviz, conda: conda install "
                                f"graphviz) and run: dot -T{fmt} {dot_path} -o {path}")
    # Drawn into memory and written by us: a full disk then reads as one, and never leaves half a picture.
    done = subprocess.run([exe, f"-T{fmt}", str(dot_path)], capture_output=True)
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()[:200]
        raise UserError(f"Graphviz could not draw {path}: {why}; the DOT source is in {dot_path}")
    atomic_write(path, lambda f: f.write(done.stdout), len(done.stdout))
    return dot_path, path, None
