"""The uniform baseline: the attention a head gives when it has learned nothing, the yardstick a learned weight
is read against.

A causal head's query i sees positions 0..i. A head with equal scores everywhere (what a freshly initialised
model's near-zero scores come close to) spreads its row evenly: a_ij = 1/(i+1) for every j <= i, 0 after.
So a weight of 0.36 can be a strong preference early in a text and below chance late in it; only the
difference from 1/(i+1) says which.

Grouped the way `attention.group_matrix` groups the learned weights (a column sums its characters, a row
averages its characters' rows), a word g's column in the row of character i is
    (characters of g at or before i) / (i + 1),
and the row of word r averages that over r's characters. For the "." of "I love tennis." (position 13, 14
characters visible): I 1/14 = 0.07, " love" 5/14 = 0.36, " tennis" 7/14 = 0.50, "." 1/14 = 0.07.
"""

from __future__ import annotations

import torch


def uniform_attention(T: int) -> torch.Tensor:
    """(T, T) weights of a causal head that attends evenly: row i is 1/(i+1) on columns 0..i, 0 after."""
    visible = torch.ones(T, T).tril()  # (T, T): 1 where key j <= query i
    return visible / visible.sum(-1, keepdim=True)  # row i: 1 / (i + 1)


def uniform_grouped(groups: list[tuple[str, list[int]]]) -> torch.Tensor:
    """(G, G) uniform weights grouped like `attention.group_matrix`: entry (r, g) is the mean over r's
    characters i of (g's characters at or before i) / (i + 1). `groups` cover positions 0..T-1 once each."""
    rows = []
    for _, queries in groups:
        row = [sum(sum(1 for j in keys if j <= i) / (i + 1) for i in queries) / len(queries) for _, keys in groups]
        rows.append(row)
    return torch.tensor(rows)


def above_uniform(weights: torch.Tensor, groups: list[tuple[str, list[int]]] | None = None) -> torch.Tensor:
    """learned - uniform, the same shape as `weights`: (T, T) per character, or (G, G) per group when `groups`
    say how `weights` was grouped. Positive: the head attends there more than an even spread would."""
    base = uniform_grouped(groups) if groups is not None else uniform_attention(weights.shape[-1])
    return weights - base.to(weights.dtype)
