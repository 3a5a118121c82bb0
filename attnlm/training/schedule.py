"""The learning-rate schedule: warm-up, then cosine or warmup-stable-decay, by step or by the time budget."""

from __future__ import annotations

import math

from attnlm.config import TrainConfig


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, time_progress: float = 0.0) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.min_lr, or (wsd: warmup-stable-decay) a hold at
    cfg.lr and a linear decay to cfg.min_lr over the last cfg.decay_fraction of training.

    Progress is the larger of the step fraction and, with max_time, `time_progress` (the fraction of the
    time budget used), so a run bounded by wall time still ends annealed.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, max(progress, time_progress))
    if cfg.schedule == "wsd":
        decay = max(0.0, (progress - (1 - cfg.decay_fraction)) / cfg.decay_fraction)  # 0 while holding, then -> 1
        return cfg.lr - (cfg.lr - cfg.min_lr) * decay
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
