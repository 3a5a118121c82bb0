"""Deterministic evaluation: every next-character prediction of a text counts exactly once."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnlm.data import eval_windows
from attnlm.device import eager
from attnlm.lm.model import AttnLM


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))


@torch.no_grad()
def evaluate(model: AttnLM, data: torch.Tensor, batch_size: int, device: torch.device,
             autocast: contextlib.AbstractContextManager | None = None,
             shard: tuple[int, int] = (0, 1),
             max_chars: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed loss, correct predictions and count over `data`, as device tensors (no host sync).

    `shard` = (rank, world) evaluates every world-th batch so processes can split the pass. A split of
    more than `max_chars` predictions is evaluated on a fixed, evenly spaced subset of windows (EvalPlan).
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = torch.zeros((), device=device, dtype=torch.long)
    rank, world = shard
    for i, (x, y) in enumerate(eval_windows(data, model.cfg.block_size, batch_size, max_chars)):
        if i % world != rank:
            continue
        x, y = x.to(device, torch.long), y.to(device, torch.long)  # ids are stored as narrow unsigned ints
        with autocast or contextlib.nullcontext(), eager():
            logits, _ = model(x)  # (B, T, V)
        logits = logits.float().flatten(0, 1)
        loss_sum += F.cross_entropy(logits, y.flatten(), reduction="sum").double()
        correct += (logits.argmax(-1) == y.flatten()).sum()
        count += y.numel()
    model.train(was_training)
    return loss_sum, correct, count


@torch.no_grad()
def evaluate_task(model: AttnLM, windows: torch.Tensor, mask: torch.Tensor, batch_size: int, device: torch.device,
                  autocast: contextlib.AbstractContextManager | None = None,
                  shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, ...]:
    """Over a task's windows (N, T+1): summed loss, correct predictions and count of every prediction, then the same
    three over the predictable ones that `mask` (N, T) marks, as device tensors (no host sync). `shard` as in
    evaluate."""
    was_training = model.training
    model.eval()
    sums = [torch.zeros((), device=device, dtype=torch.float64 if i % 3 == 0 else torch.long) for i in range(6)]
    rank, world = shard
    for i, start in enumerate(range(0, len(windows), batch_size)):
        if i % world != rank:
            continue
        w = windows[start : start + batch_size].to(device, torch.long)  # (B, T+1)
        x, y = w[:, :-1], w[:, 1:].flatten()
        task = mask[start : start + batch_size].to(device).flatten()  # (B*T,)
        with autocast or contextlib.nullcontext(), eager():
            logits, _ = model(x)  # (B, T, V)
        logits = logits.float().flatten(0, 1)
        losses = F.cross_entropy(logits, y, reduction="none").double()  # (B*T,)
        right = logits.argmax(-1) == y
        for offset, keep in ((0, slice(None)), (3, task)):
            sums[offset] += losses[keep].sum()
            sums[offset + 1] += right[keep].sum()
            sums[offset + 2] += right[keep].numel()
    model.train(was_training)
    return tuple(sums)


def eval_result(loss_sum: torch.Tensor, correct: torch.Tensor, count: torch.Tensor) -> EvalResult:
    n = int(count)
    return EvalResult(loss=float(loss_sum) / n, accuracy=int(correct) / n, tokens=n)
