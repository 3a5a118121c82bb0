"""What attention learned, in numbers and in words.

`measure` reads a model's attention weights on a text and returns, for every head, how spread out its rows
are (entropy in bits), how far back it looks on average, and what share of its weight lands on the previous
character, on itself, on the first character and on the last space or newline. `describe` turns two such
measurements (the previous epoch's and this one's) into a short phrase for the Observation column, and only
when the numbers show something: a head that has found a pattern, or attention sharpening or spreading.
Both are pure functions, so they are tested on attention matrices built by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

SEPARATORS = " \n"
# A head "has" a pattern when this share of its weight (averaged over the rows where the pattern can
# apply) lands there. On a 32-character probe a uniform head puts about 0.10 on the previous character.
PATTERN_SHARE = {"prev": 0.5, "space": 0.4, "self": 0.5, "first": 0.5}
PATTERN_WORDS = {
    "prev": "reads the previous char",
    "space": "reads the last space",
    "self": "attends to itself",
    "first": "rests on the first char",
    "local": "looks only {distance:.1f} chars back",
}
# A head is "local" when its mean distance is at most this many characters (and at most 1/16 of the probe:
# a uniform head looks T/4 back, so on a short probe every head would be local).
LOCAL_DISTANCE = 2.0
ENTROPY_CHANGE = 0.25  # bits of mean entropy between epochs worth a remark


@dataclass(frozen=True)
class HeadStats:
    layer: int
    head: int
    entropy: float  # bits, mean over rows (the first row, which can only attend to itself, left out)
    distance: float  # characters back, mean over rows of sum_j a_ij (i - j)
    prev: float  # mean a_i,i-1
    self: float  # mean a_ii
    first: float  # mean a_i,0 over rows i >= 2 (row 1's previous character is the first)
    space: float | None  # mean weight on the last space or newline before i, over rows where that is not i-1
    span: int = 32  # characters in the text measured

    @property
    def name(self) -> str:
        """`head L.H`, as the head scores name it (layer, then head, both from 0)."""
        return f"head {self.layer}.{self.head}"

    def patterns(self) -> dict[str, float]:
        """Each pattern this head shows, with how far its share is above the threshold."""
        shares = {"prev": self.prev, "space": self.space, "self": self.self, "first": self.first}
        found = {k: v - PATTERN_SHARE[k] for k, v in shares.items() if v is not None and v >= PATTERN_SHARE[k]}
        near = min(LOCAL_DISTANCE, self.span / 16)
        if self.distance <= near:
            found["local"] = 0.4 * (near - self.distance) / near  # below a pure pattern, on the shares' scale
        return found

    def words(self, kind: str) -> str:
        return PATTERN_WORDS[kind].format(distance=self.distance)

    def summary(self) -> str:
        """One line of numbers and, where there is one, the pattern: for `attnlm runs RUN`."""
        space = "-" if self.space is None else f"{self.space:.2f}"
        found = self.patterns()
        kind = max(found, key=found.get) if found else None
        words = "no single pattern" if kind is None else "nearby characters only" if kind == "local" else self.words(kind)
        return (f"{self.name}  entropy {self.entropy:.2f} bits, looks {self.distance:.1f} chars back, "
                f"prev {self.prev:.2f}, self {self.self:.2f}, first {self.first:.2f}, last space {space}: {words}")


@dataclass(frozen=True)
class AttentionStats:
    heads: list[HeadStats]

    @property
    def entropy(self) -> float:
        return sum(h.entropy for h in self.heads) / len(self.heads)

    def to_dict(self) -> dict:
        return {"entropy": self.entropy, "heads": [asdict(h) for h in self.heads]}


def measure(weights: torch.Tensor | list[torch.Tensor], text: str) -> AttentionStats:
    """Statistics of every head. weights: (L, H, T, T) or a list of (H, T, T), rows summing to 1; text: T chars."""
    w = torch.stack(list(weights)) if isinstance(weights, list) else weights
    w = w.double()
    L, H, T, _ = w.shape
    if T != len(text):
        raise ValueError(f"weights are for {T} characters, the text has {len(text)}")
    if T < 2:
        raise ValueError("attention statistics need at least two characters")
    i = torch.arange(T)
    rows = slice(1, None)  # row 0 can only attend to itself: it says nothing about the head
    plogp = torch.where(w > 0, w * torch.log2(w.clamp_min(1e-300)), torch.zeros_like(w))
    entropy = (-plogp.sum(-1))[..., rows].mean(-1)  # (L, H)
    back = (i[:, None] - i[None, :]).clamp_min(0).double()  # (T, T): how far key j lies behind query i
    distance = (w * back).sum(-1)[..., rows].mean(-1)  # (L, H)
    prev = w[..., i[1:], i[:-1]].mean(-1)  # (L, H)
    self_ = w.diagonal(dim1=-2, dim2=-1)[..., rows].mean(-1)
    first = w[..., 2:, 0].mean(-1) if T > 2 else torch.zeros(L, H, dtype=w.dtype)
    # The last separator strictly before each query, where it is not also the previous character.
    last_sep, queries, keys = -1, [], []
    for q in range(T):
        if 0 <= last_sep < q - 1:
            queries.append(q)
            keys.append(last_sep)
        if text[q] in SEPARATORS:
            last_sep = q
    space = w[..., queries, keys].mean(-1) if queries else None
    return AttentionStats([
        HeadStats(layer=n, head=h, entropy=float(entropy[n, h]), distance=float(distance[n, h]),
                  prev=float(prev[n, h]), self=float(self_[n, h]), first=float(first[n, h]),
                  space=None if space is None else float(space[n, h]), span=T)
        for n in range(L) for h in range(H)
    ])


def describe(previous: AttentionStats | None, current: AttentionStats) -> str | None:
    """A phrase of at most 34 characters about what attention did this epoch, or None if nothing stands out.

    A head that newly shows a pattern comes first (the strongest such head); then the mean entropy moving by
    at least ENTROPY_CHANGE bits since the previous epoch.
    """
    before = {(h.layer, h.head): h.patterns() for h in previous.heads} if previous else {}
    found = [(margin, h, kind) for h in current.heads for kind, margin in h.patterns().items()
             if kind not in before.get((h.layer, h.head), {})]
    if found:
        _, head, kind = max(found, key=lambda f: f[0])
        return f"{head.name} {head.words(kind)}"
    if previous is None:
        return None
    a, b = previous.entropy, current.entropy
    if not (math.isfinite(a) and math.isfinite(b)) or abs(b - a) < ENTROPY_CHANGE:
        return None
    return f"attention {'sharpens' if b < a else 'spreads'}: {a:.1f}→{b:.1f} bits"
