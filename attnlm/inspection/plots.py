"""Attention as pictures: heat maps for a PNG file (the selection `attnlm attention` shows, or a grid of every
layer and head) and one image per head for TensorBoard.

Every heat map has its colour legend: attention probability from 0 to 1, or with `difference` the learned
weight minus the uniform baseline (attnlm.inspection.baseline) on a scale from -L to L, red below chance, blue above,
white at chance.

matplotlib is imported inside the functions and draws with its Agg renderer directly (no pyplot, no display,
and the process's backend is left alone).

Every character is drawn or named: text is drawn with matplotlib's default font and, where that lacks a
character, with installed fonts that have it (matplotlib falls back along a list of families glyph by
glyph); a character no installed font has is labelled by its code point (U+4E2D) instead of a box, and
matplotlib's missing-glyph warnings never reach the terminal. A picture keeps one row and column per
code point, the model's own grid: 👍🏽 is 👍 and 🏽, e + U+0301 is e and U+0301.
"""

from __future__ import annotations

import functools
import logging
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from attnlm import disk
from attnlm.checks import check_png
from attnlm.disk import atomic_write
from attnlm.inspection.attention import group_matrix, select
from attnlm.inspection.baseline import above_uniform
from attnlm.labels import code_point, show_char

PROBABILITY = "attention probability"
DIFFERENCE = "attention probability - uniform"


def _new_figure(**kwargs: Any) -> Any:
    """A figure drawn by the Agg renderer without pyplot: pyplot would switch the process's backend, and in a
    notebook that silences the user's own plt.show() after a training run logged its attention images."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


@functools.cache
def _default_font() -> tuple[str, frozenset[int]]:
    """(family, code points it has) of the font matplotlib draws text with by default."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    font = FT2Font(font_manager.findfont(font_manager.FontProperties(family=["sans-serif"])))
    return font.family_name, frozenset(font.get_charmap())


@functools.cache
def _installed_fonts() -> tuple[tuple[str, frozenset[int]], ...]:
    """(family, code points it has) of every installed outline font matplotlib can draw with, one per family
    (the file matplotlib picks for it). Read once, and only when the default font lacks a character: it is slow."""
    from matplotlib import font_manager, ft2font

    flags = getattr(ft2font, "FaceFlags", None)  # an enum from matplotlib 3.10, module constants before
    scalable = flags.SCALABLE if flags is not None else ft2font.SCALABLE
    regular: dict[str, Any] = {}  # family -> its most regular file, the one matplotlib draws plain text with
    for entry in font_manager.fontManager.ttflist:
        # Last Resort (shipped with matplotlib) has every code point, as a box: what a code point label replaces.
        if entry.name.startswith("Last Resort"):
            continue
        best = regular.get(entry.name)
        weight = font_manager.weight_dict.get(entry.weight, 400) if isinstance(entry.weight, str) else entry.weight
        key = (entry.style != "normal", entry.stretch != "normal", abs(weight - 400))
        if best is None or key < best[0]:
            regular[entry.name] = (key, entry.fname)
    fonts: dict[str, frozenset[int]] = {}
    for name, (_, fname) in regular.items():
        try:
            font = ft2font.FT2Font(fname)
        except (OSError, RuntimeError, ValueError):
            continue
        if font.face_flags & scalable:  # bitmap-only fonts (colour emoji) cannot be drawn at any size
            fonts[name] = frozenset(font.get_charmap())
    return tuple(fonts.items())


def font_families(text: str) -> tuple[list[str], set[str]]:
    """(families to draw `text` with, the default first, and the characters no installed font has)."""
    family, has = _default_font()
    families, missing = [family], {c for c in text if ord(c) not in has}
    for other, other_has in _installed_fonts() if missing else ():
        found = {c for c in missing if ord(c) in other_has}
        if found:
            families.append(other)
            missing -= found
    return families, missing


class Lettering:
    """How the tokens of one text are written in a picture: tick labels, titles and their fonts.

    `chars` is the text (a token per code point) or its tokens (words, each a string)."""

    def __init__(self, chars: str | Sequence[str], title: str = "") -> None:
        self.chars = chars
        self.families, self.missing = font_families("".join(show_char(c) for c in chars) + title)

    def label(self, c: str) -> str:
        shown = show_char(c)
        if not self.missing & set(shown):
            return shown
        return code_point(c) if len(c) == 1 else self.text(shown)  # a word keeps its drawable letters

    def labels(self) -> list[str]:
        return [self.label(c) for c in self.chars]

    def text(self, s: str) -> str:
        """A title with the characters no font has written as <U+4E2D>."""
        return "".join(f"<{code_point(c)}>" if c in self.missing else c for c in s)


@contextmanager
def _quiet_glyphs() -> Iterator[None]:
    """Keep matplotlib's missing-glyph warnings out of the terminal: Lettering already named those characters
    by their code points, so a warning could only be about a glyph no font in the list has after all."""
    log = logging.getLogger("matplotlib.font_manager")  # "findfont: ..." lines for a family's odd weights
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from (current )?font", category=UserWarning)
            yield
    finally:
        log.setLevel(level)


def _draw(ax: Any, w: torch.Tensor, lettering: Lettering | None, title: str, label_size: float | None = None,
          axis_size: float = 7, unit: str = "character", difference: float | None = None) -> Any:
    """One (T, T) heat map; the masked future is grey so it reads as "cannot see", not as "weight 0".

    `difference` (a limit L): w is learned - uniform, drawn in diverging colours from -L (red, below chance)
    through white at 0 to +L (blue, above)."""
    import numpy as np

    T = w.shape[0]
    future = np.triu(np.ones((T, T), dtype=bool), 1)
    from matplotlib import colormaps

    cmap, low, high = ((colormaps["RdBu"], -difference, difference) if difference is not None
                       else (colormaps["Blues"], 0.0, 1.0))
    image = ax.imshow(np.ma.masked_array(w.numpy(), future), cmap=cmap.with_extremes(bad="#eeeeee"),
                      vmin=low, vmax=high, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    if lettering is not None:
        labels = lettering.labels()
        size = label_size or (8 if T <= 24 else 6)
        ax.set_xticks(range(T), labels, fontsize=size, fontfamily=lettering.families)
        ax.set_yticks(range(T), labels, fontsize=size, fontfamily=lettering.families)
        words = not isinstance(lettering.chars, str)
        for tick in ax.get_xticklabels():
            if len(tick.get_text()) > 2:  # a word or a U+4E2D label: upright it would run into its neighbours
                tick.set_rotation(45 if words else 90)
                if words:
                    tick.set_horizontalalignment("right")
                    tick.set_rotation_mode("anchor")
                else:
                    tick.set_fontsize(size - 2)
        ax.tick_params(length=0)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel(f"attended {unit}", fontsize=axis_size)
    ax.set_ylabel(f"query {unit}", fontsize=axis_size)
    return image


def _legend(fig: Any, image: Any, axes: Any, difference: float | None) -> Any:
    """The colour legend every heat map has: probability 0..1, or the difference from uniform -L..L."""
    if difference is None:
        return fig.colorbar(image, ax=axes, shrink=0.6, ticks=[0, 0.25, 0.5, 0.75, 1], label=PROBABILITY)
    return fig.colorbar(image, ax=axes, shrink=0.6, ticks=[-difference, -difference / 2, 0, difference / 2, difference],
                        label=DIFFERENCE)


def difference_limit(panels: list[list[tuple[str, torch.Tensor]]]) -> float:
    """The diverging scale's end: the smallest of 0.05, 0.1, 0.2, 0.25, 0.5, 1 that holds every difference, so a
    head a little above chance is not drawn white on a -1..1 scale."""
    largest = max(float(w.abs().max()) for row in panels for _, w in row)
    return next((limit for limit in (0.05, 0.1, 0.2, 0.25, 0.5) if largest <= limit), 1.0)


def _panels(panels: list[list[tuple[str, torch.Tensor]]], lettering: Lettering | None, unit: str = "character",
            difference: bool = False) -> Any:
    """A figure of heat maps laid out as `panels`: rows of (title, (N, N) matrix), one colour legend for all.
    `difference`: the matrices are learned - uniform, on one diverging scale (difference_limit)."""
    limit = difference_limit(panels) if difference else None
    rows, cols, N = len(panels), max(len(row) for row in panels), panels[0][0][1].shape[-1]
    side = max(2.4, 0.2 * N + 0.8)  # labels stay legible however long the text
    fig = _new_figure(figsize=(side * cols + 1.2, side * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for r, row in enumerate(panels):
        for c in range(cols):
            if c < len(row):
                image = _draw(axes[r][c], row[c][1], lettering, row[c][0], unit=unit, difference=limit)
            else:
                axes[r][c].set_axis_off()
    _legend(fig, image, axes, limit)
    return fig


def _figure(weights: list[torch.Tensor], lettering: Lettering | None, title: str) -> Any:
    """A grid of heat maps: a row per layer in `weights` (each (H, T, T)), a column per head."""
    return _panels([[(f"layer {layer}, head {head}" if title == "" else f"{title} head {head}", w[head])
                     for head in range(w.shape[0])] for layer, w in enumerate(weights)], lettering)


def heatmap_panels(weights: list[torch.Tensor], layer: int | None = None, head: int | None = None,
                   groups: list[tuple[str, list[int]]] | None = None,
                   difference: bool = False) -> list[list[tuple[str, torch.Tensor]]]:
    """What a heat-map file shows, as rows of (title, matrix): `layer` None is every layer and head (a row per
    layer); else that layer's `head`, or its heads' mean with `head` None. With `groups` (words) each matrix
    is grouped as the table groups it; with `difference`, each is learned - uniform."""

    def panel(layer: int, head: int | None) -> tuple[str, torch.Tensor]:
        w = select(weights, layer, head)  # (T, T)
        if groups is not None:
            w = group_matrix(w, groups)  # (G, G)
        if difference:
            w = above_uniform(w, groups)
        return f"layer {layer}, " + ("mean of all heads" if head is None else f"head {head}"), w

    if layer is None:
        return [[panel(L, h) for h in range(w.shape[0])] for L, w in enumerate(weights)]
    return [[panel(layer, head)]]


def heatmap_figure(weights: list[torch.Tensor], chars: str, *, all_heads: bool = True, layer: int = 0,
                   head: int | None = 0, words: list[tuple[str, list[int]]] | None = None,
                   difference: bool = False) -> Any:
    """The figure `write_heatmaps` saves (its arguments are explained there)."""
    unit = "word" if words is not None else "character"
    panels = heatmap_panels(weights, None if all_heads else layer, head, words, difference)
    what = f"{unit} attention - uniform" if difference else f"{unit} attention"
    title = f"{what} on {chars!r}"  # each panel's own title names its layer and head
    lettering = Lettering([label for label, _ in words] if words is not None else chars, title)
    fig = _panels(panels, lettering, unit, difference)
    width = fig.get_figwidth() * 11  # characters of 10 pt text an inch holds, roughly: a long text wraps
    fig.suptitle(textwrap.fill(lettering.text(title), max(20, int(width))), fontsize=10, fontfamily=lettering.families)
    return fig


def write_heatmaps(weights: list[torch.Tensor], chars: str, path: Path, *, all_heads: bool = True, layer: int = 0,
                   head: int | None = 0, words: list[tuple[str, list[int]]] | None = None,
                   difference: bool = False) -> Path:
    """Heat maps of `weights` (per layer (H, T, T)) on `chars` as a PNG, with a colour legend.

    `all_heads`: a grid, a row per layer and a column per head; else the one view the table shows: `layer`'s
    `head`, or the mean of its heads with `head` None. `words` (attention.word_groups) puts words on the axes
    and groups the weights as the word table does; without it every code point is a row and a column.
    `difference`: learned - uniform in diverging colours (red below chance, blue above), on a scale from -L to
    L that holds every difference drawn (difference_limit).
    """
    check_png("--heatmap", path)
    disk.make_folder(path)
    fig = heatmap_figure(weights, chars, all_heads=all_heads, layer=layer, head=head, words=words,
                         difference=difference)
    with _quiet_glyphs():
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))  # a full disk leaves no half PNG
    return path


def _to_image(fig: Any) -> torch.Tensor:
    """A drawn figure as a (3, H, W) float tensor in [0, 1], the layout TensorBoard's add_image takes."""
    import numpy as np

    with _quiet_glyphs():
        fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # (H, W, 4) uint8
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).float() / 255.0


def head_images(weights: list[torch.Tensor], chars: str) -> dict[str, torch.Tensor]:
    """One image per head: {"attention/layer_0/head_0": (3, H, W) floats in [0, 1], ...}, each a head's (T, T)
    weights laid out for TensorBoard's card size.

    weights: per layer (H, T, T), the probe's attention; chars: its characters for the axes.

    TensorBoard's Time Series cards show an image in a 215-pixel-high box, so the figure is laid out for
    that size (glyphs of 6-7 pt, about 9 px there) and drawn at twice the resolution, which stays sharp on
    a high-density screen and with the card's "actual size" toggle. Up to 16 characters fit legibly.
    Every head has the same axes, so one figure is laid out once and redrawn with each head's weights: a
    figure per head took the larger part of an epoch's end on a CPU.
    """
    import numpy as np

    T = weights[0].shape[-1]
    future = np.triu(np.ones((T, T), dtype=bool), 1)
    fig = _new_figure(figsize=(2.15, 2.15), dpi=200, layout="constrained")
    ax = fig.subplots()
    image = _draw(ax, weights[0][0], Lettering(chars), "layer 0, head 0", label_size=6.5 if T <= 16 else 5,
                  axis_size=5.5)
    ax.title.set_fontsize(7)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02, aspect=25, ticks=[0, 0.5, 1])
    colorbar.set_label(PROBABILITY, fontsize=5.5, labelpad=1)
    colorbar.ax.tick_params(labelsize=5.5, length=2)
    images = {}
    for layer, w in enumerate(weights):
        for head in range(w.shape[0]):
            image.set_data(np.ma.masked_array(w[head].numpy(), future))
            ax.title.set_text(f"layer {layer}, head {head}")
            images[f"attention/layer_{layer}/head_{head}"] = _to_image(fig)
            fig.set_layout_engine("none")  # keeps the positions the first draw solved
    return images


