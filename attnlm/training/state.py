"""What a checkpoint holds besides the weights: training progress and every random stream."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from attnlm.config import Config
from attnlm.data import BatchSampler
from attnlm.data.tasks import TaskSampler
from attnlm.training.epoch_table import EpochStats


@dataclass
class TrainState:
    """Everything about progress that a resumed run needs besides weights and optimizer moments."""

    step: int = 0
    epoch: int = 1
    step_in_epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    elapsed: float = 0.0  # training wall time of earlier sessions of this run
    startup: float = 0.0  # of that and this session's, the seconds until each session's first step was done
    epoch_loss_sum: float = 0.0
    epoch_correct: int = 0
    epoch_count: int = 0
    epoch_train_time: float = 0.0
    fitted_steps_per_epoch: int = 0  # train.fit_epochs: the epoch length chosen after the first steps (0: not yet)
    # The train.max_time that ended the run (0: none did). The loop stops short of the budget, keeping room for
    # the final evaluation, so `elapsed` alone never shows that the budget is spent.
    spent_budget: float = 0.0
    history: list[dict] = field(default_factory=list)

    def fold(self, loss_sum: float, correct: int, predictions: int, seconds: float) -> None:
        """Record the running epoch totals (they include the steps before a resume)."""
        self.epoch_loss_sum = loss_sum
        self.epoch_correct = correct
        self.epoch_count += predictions
        self.epoch_train_time += seconds

    def epoch_stats(self, val_loss: float, val_accuracy: float, lr: float, eval_seconds: float, elapsed: float,
                    task: tuple[float, float] | None = None) -> EpochStats:
        """The row of the epoch that just ended, from its running totals and its evaluation (`task`: the loss and
        accuracy on a task's predictable part)."""
        return EpochStats(
            epoch=self.epoch, step=self.step,
            train_loss=self.epoch_loss_sum / self.step_in_epoch,
            train_accuracy=self.epoch_correct / max(1, self.epoch_count),
            val_loss=val_loss, val_accuracy=val_accuracy, lr=lr,
            seconds=self.epoch_train_time + eval_seconds,
            elapsed=elapsed,
            tokens_per_s=self.epoch_count / max(1e-9, self.epoch_train_time),
            val_task_loss=task[0] if task else None, val_task_accuracy=task[1] if task else None,
        )

    def record_epoch(self, stats: EpochStats) -> tuple[bool, list[EpochStats]]:
        """Keep the epoch's row: whether its val loss is the best so far, and every epoch's row up to it."""
        improved = stats.val_loss < self.best_val
        if improved:
            self.best_val, self.best_epoch = stats.val_loss, stats.epoch
        self.history.append(stats.to_dict())
        return improved, [EpochStats(**{k: v for k, v in h.items() if k != "kind"}) for h in self.history]

    def next_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_loss_sum, self.epoch_correct, self.epoch_count, self.epoch_train_time = 0.0, 0, 0, 0.0


def rng_states(sampler: BatchSampler | TaskSampler, device: torch.device) -> dict[str, torch.Tensor | None]:
    """This process's random streams: torch (dropout), its batch generator, and the GPU's (CUDA or MPS)."""
    return {"torch": torch.get_rng_state(), "data": sampler.state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "mps": torch.mps.get_rng_state() if device.type == "mps" else None}


def checkpoint_payload(cfg: Config, vocab: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       state: TrainState, rng: dict[str, torch.Tensor | None], device: torch.device,
                       bf16: bool) -> dict[str, Any]:
    return {
        "config": cfg.to_dict(),
        "vocab": vocab,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": asdict(state),
        "rng": {"torch": rng["torch"], "data": rng["data"],
                "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [], "mps": rng.get("mps")},
        "meta": {"torch": str(torch.__version__), "device": str(device), "bf16": bf16,
                 "params": sum(p.numel() for p in model.parameters())},
    }


def restore(payload: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            sampler: BatchSampler | TaskSampler, device: torch.device, rank: int) -> TrainState:
    """Load weights, optimizer and random streams from a checkpoint; returns the training progress."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    rng = payload["rng"]
    torch.set_rng_state(rng["torch"])
    sampler.set_state(rng["data"])
    if device.type == "cuda" and rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    if device.type == "mps" and rng.get("mps") is not None:
        torch.mps.set_rng_state(rng["mps"])
    if rng.get("ranks"):  # a torchrun run: each rank continues its own streams
        mine = rng["ranks"][rank]
        torch.set_rng_state(mine["torch"])
        sampler.set_state(mine["data"])
        if device.type == "cuda" and mine["cuda"] is not None:
            torch.cuda.set_rng_state(mine["cuda"], device)
    return TrainState(**payload["state"])
