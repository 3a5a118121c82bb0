"""TensorBoard event files for a run (rank 0 only); a disabled logger accepts calls and writes nothing.

TensorBoard is a view, not the record: when the machine refuses its writes (disk full, read-only, the folder
gone) the logger warns once on stderr and stops, and training goes on; metrics.jsonl holds every number.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from attnlm import disk


class TBLogger:
    def __init__(self, folder: Path, enabled: bool, purge_step: int | None = None) -> None:
        self.folder = folder
        self.writer = None
        self.quiet = False
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

            _quiet_writer_threads()
            try:
                # purge_step drops points a resumed run will write again, so curves never double back.
                self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)
            except OSError as e:
                self._failed(e)

    def _call(self, write: Callable[..., Any], *args: Any) -> None:
        try:
            write(*args)
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError) -> None:
        """Warn once, then write no more events."""
        writer, self.writer = self.writer, None
        if not self.quiet:
            print(f"warning: TensorBoard events could not be written into {self.folder}: {disk.reason(e)}; "
                  "training goes on without them and metrics.jsonl keeps the record", file=sys.stderr, flush=True)
        if writer is not None:
            with contextlib.suppress(Exception):  # it fails again on what it still holds
                writer.close()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            if self.writer:  # checked each time: a refused write (the first tag's) leaves no writer
                self._call(self.writer.add_scalar, tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer:
            # TensorBoard renders text as Markdown; a code block keeps the sample's line breaks.
            self._call(self.writer.add_text, tag, "```\n" + text + "\n```", step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """image: (3, H, W) floats in [0, 1]."""
        if self.writer:
            self._call(self.writer.add_image, tag, image, step)

    def start(self, hparams: dict[str, Any], metric_names: list[str], step: int,
              charts: dict[str, dict[str, list]] | None = None) -> None:
        """At the start of a run: the hyperparameters (so an interrupted run has them too) and the chart layout,
        with `charts` (more Custom Scalars categories: {category: {title: ["Multiline", [tag regexps]]}}).

        The hparams dashboard reads each metric from the scalar of the same tag, which `finish` writes.
        """
        if not self.writer:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        # Written into this run's own event file (add_hparams would make a sub-run folder). The third summary
        # (session end) waits for `finish`.
        experiment, session_start, _ = hparams_summary(clean, dict.fromkeys(metric_names, 0.0))
        for summary in (experiment, session_start):
            if self.writer:
                self._call(self.writer.file_writer.add_summary, summary, step)
        # The Custom Scalars tab: train and val on one chart, which the per-tag cards cannot do. Its tags are
        # regular expressions: unanchored, "loss/train" would also draw loss/train_step.
        layout = {"attnlm": {
            "loss: train and val": ["Multiline", ["^loss/train$", "^loss/val$"]],
            "accuracy: train and val": ["Multiline", ["^accuracy/train$", "^accuracy/val$"]],
            "loss: every logged step and each epoch": ["Multiline", ["^loss/train_step$", "^loss/train$", "^loss/val$"]],
        }} | (charts or {})
        if self.writer:
            self._call(self.writer.add_custom_scalars, layout)
        self.flush()

    def finish(self, metrics: dict[str, float], step: int) -> None:
        """At the end of a run: the hparams metrics (as scalars) and the session's end."""
        if not self.writer:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        self.scalars(step, metrics)
        _, _, session_end = hparams_summary({}, metrics)
        if self.writer:
            self._call(self.writer.file_writer.add_summary, session_end, step)

    def flush(self) -> None:
        if self.writer:
            self._call(self.writer.flush)

    def close(self, quiet: bool = False) -> None:
        """`quiet`: the run already stopped for a fault of the machine, which its own message explains."""
        self.quiet = self.quiet or quiet
        if self.writer:
            self._call(self.writer.close)
            self.writer = None


_hook_installed = False


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises a refused write, which Python prints as a traceback; the writer
    raises the same error again at its next call from the training loop, where it becomes one warning."""
    global _hook_installed
    if _hook_installed:
        return
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError):
            return
        previous(args)

    threading.excepthook = hook
    _hook_installed = True
