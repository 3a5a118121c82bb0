"""TensorBoard event files for a run (rank 0 only); a disabled logger accepts calls and writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class TBLogger:
    def __init__(self, folder: Path, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

            # purge_step drops points a resumed run will write again, so curves never double back.
            self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer:
            # TensorBoard renders text as Markdown; a code block keeps the sample's line breaks.
            self.writer.add_text(tag, "```\n" + text + "\n```", step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """image: (3, H, W) floats in [0, 1]."""
        if self.writer:
            self.writer.add_image(tag, image, step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        if not self.writer:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        # Written into this run's own event file (add_hparams would make a sub-run folder).
        for summary in hparams_summary(clean, metrics):
            self.writer.file_writer.add_summary(summary, step)
        self.scalars(step, metrics)

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()
            self.writer = None
