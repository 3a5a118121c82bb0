"""The NaN guard: each step's loss and gradient norm are checked for inf/NaN without making the host wait
for the device every step."""

from __future__ import annotations

from pathlib import Path

import torch

from attnlm.errors import NumericalError


class NonFiniteGuard:
    """Checks a step's verdict one step later (or before anything is logged or saved).

    Reading a CUDA tensor on the host waits for every kernel queued before it; done every step it stalls
    the GPU between steps. So the verdict (loss finite? gradient norm finite?) is copied to pinned host
    memory without blocking, and read when the next step's forward and backward are already queued: by
    then it has long arrived. A fused AdamW also gets it as `found_inf`, which skips its update on the
    device. The same code runs on CPU, where the read is free, so the CPU tests cover it.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._verdict = torch.zeros(2, dtype=torch.bool, pin_memory=self.cuda)  # (loss bad, grad norm bad)
        self._event = torch.cuda.Event() if self.cuda else None
        self._step: int | None = None  # the step whose verdict is still unread

    def watch(self, step: int, loss_sum: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
        """Queue the check of `step`; returns found_inf on the device (1.0 if the step is not finite)."""
        bad = torch.stack([~torch.isfinite(loss_sum), ~torch.isfinite(grad_norm)])  # (2,)
        self._verdict.copy_(bad, non_blocking=self.cuda)
        if self._event is not None:
            self._event.record()
        self._step = step
        return bad.any().float()  # 0-dim, as the fused kernels take it (shape (1,) fails their step update)

    def check(self, last_checkpoint: Path) -> None:
        """Raise NumericalError if the watched step was not finite. Call it before the next update and
        before anything reads the step's results: nothing from a non-finite step is logged or saved."""
        if self._step is None:
            return
        if self._event is not None:
            self._event.synchronize()
        bad_loss, bad_norm = self._verdict.tolist()
        step, self._step = self._step, None
        if bad_loss or bad_norm:
            where = (f"last good checkpoint: {last_checkpoint}" if last_checkpoint.exists()
                     else "no checkpoint was written yet")
            raise NumericalError(
                f"non-finite {'loss' if bad_loss else 'gradient norm'} at step {step}; training stopped before "
                f"saving or logging it ({where}); lower train.lr or raise train.warmup_steps"
            )
