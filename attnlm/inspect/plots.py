"""Attention as pictures: heat-map grids (one per layer and head) for a PNG file or for TensorBoard.

matplotlib is imported inside the functions and draws with its Agg renderer directly (no pyplot, no display,
and the process's backend is left alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from attnlm import disk
from attnlm.checkpoint import atomic_write
from attnlm.data import Vocab
from attnlm.inspect.attention import attention_weights
from attnlm.model import AttnLM
from attnlm.text import check_png, encode_checked, show_char


def _new_figure(**kwargs: Any) -> Any:
    """A figure drawn by the Agg renderer without pyplot: pyplot would switch the process's backend, and in a
    notebook that silences the user's own plt.show() after a training run logged its attention images."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _draw(ax: Any, w: torch.Tensor, chars: str | None, title: str) -> Any:
    """One (T, T) heat map; the masked future is grey so it reads as "cannot see", not as "weight 0"."""
    import numpy as np

    T = w.shape[0]
    future = np.triu(np.ones((T, T), dtype=bool), 1)
    from matplotlib import colormaps

    image = ax.imshow(np.ma.masked_array(w.numpy(), future), cmap=colormaps["Blues"].with_extremes(bad="#eeeeee"),
                      vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    if chars is not None:
        labels = [show_char(c) for c in chars]
        size = 8 if T <= 24 else 6
        ax.set_xticks(range(T), labels, fontsize=size)
        ax.set_yticks(range(T), labels, fontsize=size)
        ax.tick_params(length=0)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("attended character", fontsize=7)
    ax.set_ylabel("query character", fontsize=7)
    return image


def _figure(weights: list[torch.Tensor], chars: str | None, title: str) -> Any:
    """A grid of heat maps: a row per layer in `weights` (each (H, T, T)), a column per head."""
    rows, cols, T = len(weights), weights[0].shape[0], weights[0].shape[-1]
    side = max(2.4, 0.2 * T + 0.8)  # characters stay legible however long the text
    fig = _new_figure(figsize=(side * cols + 0.8, side * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for layer, w in enumerate(weights):
        for head in range(cols):
            name = f"layer {layer}, head {head}" if title == "" else f"{title} head {head}"
            image = _draw(axes[layer][head], w[head], chars, name)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    return fig


def write_heatmaps(weights: list[torch.Tensor], chars: str, path: Path) -> Path:
    """Every layer's and head's (T, T) weights as one PNG grid, characters on both axes."""
    check_png("--heatmap", path)
    disk.make_folder(path)
    fig = _figure(weights, chars, "")
    fig.suptitle(f"attention on {chars!r}", fontsize=10)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))  # a full disk leaves no half PNG
    return path


def _to_image(fig: Any) -> torch.Tensor:
    """A drawn figure as a (3, H, W) float tensor in [0, 1], the layout TensorBoard's add_image takes."""
    import numpy as np

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # (H, W, 4) uint8
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).float() / 255.0


def probe_images(model: AttnLM, ids: torch.Tensor, chars: str | None = None) -> dict[str, torch.Tensor]:
    """One image per layer, its heads side by side: {"attention/layer_0": (3, H, W) floats in [0, 1], ...}.

    ids: (T,) the probe text; chars: its characters for the axes. The model's mode is left as it was.
    """
    images = {}
    for layer, w in enumerate(attention_weights(model, ids)):  # w: (H, T, T)
        fig = _figure([w], chars, f"layer {layer},")
        images[f"attention/layer_{layer}"] = _to_image(fig)
    return images


def probe_ids(probe_text: str | None, vocab: Vocab, val: torch.Tensor, block_size: int) -> torch.Tensor:
    """The probe text as ids (T,): log.probe_text, or else the first block_size characters of validation."""
    if probe_text is None:
        return val[:block_size].to(torch.long, copy=True)  # not a view into the memory-mapped corpus
    return encode_checked(
        probe_text, vocab, "log.probe_text", block_size, empty_hint="set it to some text, or to null to probe with "
        "validation text", never_saw="the corpus does not", fix="change the text or set it to null",
        too_long=f"log.probe_text has {len(probe_text)} characters, more than model.block_size = {block_size}; shorten it")
