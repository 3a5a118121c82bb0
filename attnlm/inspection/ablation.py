"""Head ablation: switch one attention head off at a time and measure what the model loses without it.

A head's output z (B, T, D), what it hands the layer's output projection, is replaced:

    zero  by zeros: the head contributes nothing (the projection's bias, if any, stays)
    mean  by its mean over every position (and window) of the same text, as the intact model computes it: the
          head keeps its average contribution but loses what it says about this position

The model does the replacing (MultiHeadAttention.switch_off); this module picks the heads, measures the
next-character loss with each one off beside the intact model's, and lists the predictions that flip: the
positions whose likeliest next character changes. Windows are those of `attnlm eval` (eval_windows), so the
intact loss is the loss `attnlm eval` reports on the same text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnlm.data import EvalPlan, eval_windows
from attnlm.device import eager
from attnlm.inspection.heads import head_key
from attnlm.lm.model import AttnLM

MODES = ("zero", "mean")
Window = tuple[torch.Tensor, torch.Tensor]  # (x, y), each (B, T): inputs and the next characters


@dataclass(frozen=True)
class Measured:
    """The predictions an ablation scores: windows of the text, where each prediction sits in it and, where not
    all of them count, which do."""

    windows: list[Window]
    positions: torch.Tensor  # (N,) each prediction's position in the text, in the windows' order (flattened)
    counted: torch.Tensor | None = None  # (N,) bool: the predictions the loss and the flips count; None: all

    def kept(self, values: torch.Tensor) -> torch.Tensor:
        """(N, ...) per prediction -> only those counted."""
        return values if self.counted is None else values[self.counted]

    @property
    def predictions(self) -> int:
        return len(self.kept(self.positions))


def probe_repeat(ids: torch.Tensor, period: int) -> Measured:
    """The repeat of a probe (attnlm.inspection.heads.repeat_probe: ids (2R,), R tokens twice, R = period): one
    window of the whole probe, of whose predictions only those of the second copy after its first token count
    (the R - 1 that icl_score averages), the ones an induction head makes right."""
    positions = torch.arange(len(ids) - 1)
    return Measured([(ids[None, :-1], ids[None, 1:])], positions, positions >= period)


def text_windows(ids: torch.Tensor, block_size: int, batch_size: int, max_chars: int | None) -> Measured:
    """The windows `attnlm eval` scores on ids (T,) (all predictions, or the fixed subset EvalPlan picks past
    `max_chars`), with each prediction's position in ids."""
    windows = list(eval_windows(ids, block_size, batch_size, max_chars))
    plan = EvalPlan.of(len(ids), block_size, max_chars)
    if plan.full:
        positions = torch.arange(plan.predictions)
    else:
        positions = (plan.starts()[:, None] + torch.arange(block_size)).flatten()
    return Measured(windows, positions)


@dataclass(frozen=True)
class Predictions:
    losses: torch.Tensor  # (N,) float64: each prediction's cross-entropy (nats)
    top: torch.Tensor  # (N,) the likeliest next id at each prediction

    @property
    def loss(self) -> float:
        return float(self.losses.mean())


@dataclass(frozen=True)
class Flip:
    """A prediction an ablation changed: at `position` (character `char`), the likeliest next character was
    `before` with every head on and is `after` with the head off."""

    position: int
    char: str
    before: str
    after: str


@dataclass(frozen=True)
class HeadAblation:
    loss: float  # with the head off
    delta: float  # loss - the intact loss: positive when the model needs the head
    flips: list[Flip]  # every flipped prediction, in text order


@contextmanager
def heads_off(model: AttnLM, heads: Sequence[tuple[int, int]], means: Sequence[torch.Tensor] | None = None
              ) -> Iterator[AttnLM]:
    """Within the block each (layer, head) of `heads` is switched off: it outputs zeros, or with `means` (per
    layer (H, D), from head_means) its mean output. Every layer's previous setting is restored on leaving."""
    saved = [(block.attn.off, block.attn.off_value) for block in model.blocks]
    try:
        for layer in sorted({layer for layer, _ in heads}):
            attn = model.blocks[layer].attn
            off = torch.zeros(attn.n_head, dtype=torch.bool)
            off[[head for n, head in heads if n == layer]] = True
            attn.switch_off(off, None if means is None else means[layer])
        yield model
    finally:
        for block, (off, value) in zip(model.blocks, saved, strict=True):
            block.attn.switch_off(off, value)


def scored(logits: torch.Tensor, targets: torch.Tensor) -> Predictions:
    """Predictions from logits (N, V) of the next ids `targets` (N,): the cross-entropy `attnlm eval` averages."""
    logits = logits.float()
    losses = F.cross_entropy(logits, targets.to(logits.device, torch.long), reduction="none")
    return Predictions(losses.double().cpu(), logits.argmax(-1).cpu())


@torch.no_grad()
def predict(model: AttnLM, measured: Measured) -> Predictions:
    """Each counted prediction's loss and likeliest next id, in eval mode, as `attnlm eval` scores them."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = []
    try:
        for x, y in measured.windows:
            with eager():
                logits, _ = model(x.to(device, torch.long))  # (B, T, V)
            parts.append(scored(logits.flatten(0, 1), y.flatten()))
    finally:
        model.train(was_training)
    losses, top = torch.cat([p.losses for p in parts]), torch.cat([p.top for p in parts])
    return Predictions(measured.kept(losses), measured.kept(top))


@torch.no_grad()
def head_means(model: AttnLM, windows: Sequence[Window]) -> list[torch.Tensor]:
    """Each layer's (H, D): every head's output z averaged over all positions of all `windows`, intact model."""
    device = next(model.parameters()).device
    C = model.cfg.n_embd
    sums = [torch.zeros(C, dtype=torch.float64, device=device) for _ in model.blocks]
    count = 0

    def adder(layer: int):  # a hook on the output projection, whose input (B, T, C) is the heads' z side by side
        def add(module: torch.nn.Module, args: tuple[torch.Tensor]) -> None:  # returns None: the input goes on as is
            sums[layer].add_(args[0].double().sum((0, 1)))
        return add

    hooks = [block.attn.proj.register_forward_pre_hook(adder(n)) for n, block in enumerate(model.blocks)]
    was_training = model.training
    model.eval()
    try:
        for x, _ in windows:
            with eager():
                model(x.to(device, torch.long))
            count += x.numel()
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    H = model.cfg.n_head
    return [(s / count).float().view(H, C // H) for s in sums]  # (H, D) each


def flips(intact: Predictions, ablated: Predictions, measured: Measured, chars: str) -> list[Flip]:
    """The predictions whose likeliest next character differs, in text order."""
    ids = measured.kept(torch.cat([x.flatten() for x, _ in measured.windows]))  # the character at each prediction
    positions = measured.kept(measured.positions)
    changed = (intact.top != ablated.top).nonzero().flatten()
    found = [Flip(int(positions[k]), chars[int(ids[k])], chars[int(intact.top[k])], chars[int(ablated.top[k])])
             for k in changed.tolist()]
    return sorted(found, key=lambda flip: flip.position)


def ablate_each_head(model: AttnLM, measured: Measured, chars: str, mode: str = "zero"
                     ) -> tuple[Predictions, dict[str, HeadAblation]]:
    """The intact model's predictions, then for every head in turn ('L.H', layer by layer) the loss with that head
    alone switched off, its change and the flipped predictions. `chars`: the vocabulary, id -> character."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    intact = predict(model, measured)
    means = head_means(model, measured.windows) if mode == "mean" else None
    results = {}
    for layer in range(model.cfg.n_layer):
        for head in range(model.cfg.n_head):
            with heads_off(model, [(layer, head)], means):
                ablated = predict(model, measured)
            results[head_key(layer, head)] = HeadAblation(ablated.loss, ablated.loss - intact.loss,
                                                          flips(intact, ablated, measured, chars))
    return intact, results
