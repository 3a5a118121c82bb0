"""A model's attention on a text: every layer's weights, one head's or the mean of a layer's, and the same
grouped by word or by grapheme cluster (what a reader sees as one character). Shown as a table by
attnlm.inspection.attention_table and as a graph by attnlm.inspection.graph.

The weights are the model's own: `AttnLM.forward(..., return_attention=True)` returns what the explicit path
computed, per layer (B, H, T, T). Pictures (heat maps, TensorBoard images) live in attnlm.inspection.plots.
"""

from __future__ import annotations

import re

import torch

from attnlm.device import eager
from attnlm.labels import graphemes, show_char
from attnlm.lm.model import AttnLM

WORD = re.compile(r"\s*(?:\w+(?:'\w+)*|\S)|\s+$")  # a word or one punctuation mark, with the spaces before it


@torch.no_grad()
def logits_and_attention(model: AttnLM, idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The logits (T, V) and every layer's attention (H, T, T) on idx (T,), in eval mode, on the CPU."""
    was_training = model.training
    model.eval()
    try:
        with eager():  # the probe after each epoch: a compiled model would otherwise compile this path anew
            logits, attention = model(idx.to(next(model.parameters()).device)[None], return_attention=True)
    finally:
        model.train(was_training)
    return logits[0].float().cpu(), [w[0].float().cpu() for w in attention]


def attention_weights(model: AttnLM, idx: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention on idx (T,): a list of (H, T, T), rows = queries, columns = keys."""
    return logits_and_attention(model, idx)[1]


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


