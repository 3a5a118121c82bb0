"""Attention as pictures: heat-map grids (one per layer and head) for a PNG file or for TensorBoard.

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
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from attnlm import disk
from attnlm.checks import check_png
from attnlm.disk import atomic_write
from attnlm.labels import code_point, show_char


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
    """How the characters of one text are written in a picture: tick labels, titles and their fonts."""

    def __init__(self, chars: str, title: str = "") -> None:
        self.chars = chars
        self.families, self.missing = font_families("".join(show_char(c) for c in chars) + title)

    def label(self, c: str) -> str:
        shown = show_char(c)
        return code_point(c) if self.missing & set(shown) else shown

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
          axis_size: float = 7) -> Any:
    """One (T, T) heat map; the masked future is grey so it reads as "cannot see", not as "weight 0"."""
    import numpy as np

    T = w.shape[0]
    future = np.triu(np.ones((T, T), dtype=bool), 1)
    from matplotlib import colormaps

    image = ax.imshow(np.ma.masked_array(w.numpy(), future), cmap=colormaps["Blues"].with_extremes(bad="#eeeeee"),
                      vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    if lettering is not None:
        labels = lettering.labels()
        size = label_size or (8 if T <= 24 else 6)
        ax.set_xticks(range(T), labels, fontsize=size, fontfamily=lettering.families)
        ax.set_yticks(range(T), labels, fontsize=size, fontfamily=lettering.families)
        for tick in ax.get_xticklabels():
            if len(tick.get_text()) > 2:  # a U+4E2D label: upright it would run into its neighbours
                tick.set_rotation(90)
                tick.set_fontsize(size - 2)
        ax.tick_params(length=0)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("attended character", fontsize=axis_size)
    ax.set_ylabel("query character", fontsize=axis_size)
    return image


def _figure(weights: list[torch.Tensor], lettering: Lettering | None, title: str) -> Any:
    """A grid of heat maps: a row per layer in `weights` (each (H, T, T)), a column per head."""
    rows, cols, T = len(weights), weights[0].shape[0], weights[0].shape[-1]
    side = max(2.4, 0.2 * T + 0.8)  # characters stay legible however long the text
    fig = _new_figure(figsize=(side * cols + 0.8, side * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for layer, w in enumerate(weights):
        for head in range(cols):
            name = f"layer {layer}, head {head}" if title == "" else f"{title} head {head}"
            image = _draw(axes[layer][head], w[head], lettering, name)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    return fig


def write_heatmaps(weights: list[torch.Tensor], chars: str, path: Path) -> Path:
    """Every layer's and head's (T, T) weights as one PNG grid, characters on both axes."""
    check_png("--heatmap", path)
    disk.make_folder(path)
    title = f"attention on {chars!r}"
    lettering = Lettering(chars, title)
    fig = _figure(weights, lettering, "")
    fig.suptitle(lettering.text(title), fontsize=10, fontfamily=lettering.families)
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
    colorbar.ax.tick_params(labelsize=5.5, length=2)
    images = {}
    for layer, w in enumerate(weights):
        for head in range(w.shape[0]):
            image.set_data(np.ma.masked_array(w[head].numpy(), future))
            ax.title.set_text(f"layer {layer}, head {head}")
            images[f"attention/layer_{layer}/head_{head}"] = _to_image(fig)
            fig.set_layout_engine("none")  # keeps the positions the first draw solved
    return images


