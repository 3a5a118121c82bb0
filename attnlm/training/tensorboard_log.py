"""TensorBoard event files for a run (rank 0 only); a disabled logger accepts calls and writes nothing.

TensorBoard is a view, not the record: when the machine refuses its writes (disk full, read-only, the folder
gone) the logger warns once on stderr and stops, and training goes on; metrics.jsonl holds every number.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from attnlm import disk

Scalar = bool | int | float | str


def flatten_hparams(values: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """A config as HParams: nested sections joined with dots ({"model": {"n_head": 4}} -> {"model.n_head": 4}),
    numbers, booleans and strings kept as they are, anything else (a list of files, None) as its string, the
    only other kind of value the HParams dashboard can show."""
    flat: dict[str, Scalar] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


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

        `hparams` is the config, flat ("model.n_head") or by section ({"model": {...}}): every setting is logged
        (flatten_hparams). The HParams dashboard reads each of `metric_names` from the scalar of the same tag,
        which `finish` writes.

        Only the session's start is written, never an experiment summary: TensorBoard takes the columns of its
        HParams table from one run's experiment summary when any run has one, and that run cannot know what
        other runs set, so no setting would count as one that differs and the columns that matter (n_head, lr)
        would sit unticked among the dozens that never change. Without it TensorBoard builds the table from
        every run's session start: each setting with the values the runs really had, those that differ first.
        """
        if not self.writer:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        # Written into this run's own event file (add_hparams would make a sub-run folder). The session's end
        # waits for `finish`. `metric_names` need no summary of their own: TensorBoard lists a run's scalars as
        # its metrics.
        _, session_start, _ = hparams_summary(flatten_hparams(hparams), {})
        self._call(self.writer.file_writer.add_summary, session_start, step)
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
