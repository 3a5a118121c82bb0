"""Attention as a directed graph: an edge from each query to every token it attends to, as Graphviz
source and, where Graphviz is installed, drawn as SVG or PNG.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import torch

from attnlm import disk
from attnlm.disk import atomic_write
from attnlm.errors import UserError

GRAPH_FORMATS = (".dot", ".gv", ".svg", ".png")


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
