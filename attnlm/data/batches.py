"""Windows of token ids: random training batches, and the validation windows an evaluation walks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch


class BatchSampler:
    """Random windows of block_size + 1 characters, drawn from a dedicated seeded generator.

    Batches are gathered with one index tensor, so drawing costs no Python loop per row; on a memory-mapped
    corpus only the pages under the drawn windows are read.
    """

    def __init__(self, data: torch.Tensor, block_size: int, batch_size: int, seed: int) -> None:
        self.data = data
        self.block_size = block_size
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._offsets = torch.arange(block_size + 1)  # (T+1,)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=self.generator)
        windows = self.data[starts[:, None] + self._offsets].long()  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]  # x, y: (B, T)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def steps_per_epoch(n_train: int, batch_size: int, block_size: int) -> int:
    return max(1, math.ceil(n_train / (batch_size * block_size)))


@dataclass(frozen=True)
class EvalPlan:
    """Which next-character predictions of a split an evaluation makes: all of them, or, for a split longer
    than `max_chars`, a fixed subset of `windows` evenly spaced windows (the same every time, so epochs compare)."""

    predictions: int  # of the whole split
    block_size: int
    windows: int | None = None  # None: the full pass

    @classmethod
    def of(cls, n: int, block_size: int, max_chars: int | None) -> EvalPlan:
        predictions = max(0, n - 1)
        full_windows = predictions // block_size
        if max_chars is None or predictions <= max_chars:
            return cls(predictions, block_size)
        windows = math.ceil(max_chars / block_size)
        return cls(predictions, block_size, windows if windows < full_windows else None)

    @property
    def full(self) -> bool:
        return self.windows is None

    @property
    def evaluated(self) -> int:
        return self.predictions if self.windows is None else self.windows * self.block_size

    def starts(self) -> torch.Tensor:
        """(W,) first positions of the subset's windows, on the full pass's grid of windows."""
        assert self.windows is not None
        full_windows = self.predictions // self.block_size
        return torch.arange(self.windows) * full_windows // self.windows * self.block_size

    def describe(self) -> str:
        if self.full:
            return f"all {self.predictions:,} validation predictions"
        return (f"a fixed subset of {self.evaluated:,} of {self.predictions:,} validation predictions "
                f"({self.windows:,} evenly spaced windows, the same each epoch)")


def eval_windows(data: torch.Tensor, block_size: int, batch_size: int,
                 max_chars: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Windows (x, y) for an evaluation of `data` as EvalPlan says: in the full pass, consecutive windows
    covering every next-character prediction exactly once (full windows in batches of `batch_size`, the
    leftover tail as one shorter window)."""
    plan = EvalPlan.of(len(data), block_size, max_chars)
    if not plan.full:
        offsets = torch.arange(block_size + 1)
        starts = plan.starts()
        for i in range(0, len(starts), batch_size):
            windows = data[starts[i : i + batch_size, None] + offsets]  # (B, T+1)
            yield windows[:, :-1], windows[:, 1:]
        return
    x_all, y_all = data[:-1], data[1:]
    n_full = len(x_all) // block_size
    full_x = x_all[: n_full * block_size].view(n_full, block_size)  # (W, T)
    full_y = y_all[: n_full * block_size].view(n_full, block_size)
    for i in range(0, n_full, batch_size):
        yield full_x[i : i + batch_size], full_y[i : i + batch_size]
    if len(x_all) > n_full * block_size:
        yield x_all[n_full * block_size :][None], y_all[n_full * block_size :][None]
