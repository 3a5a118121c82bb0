"""The probe: a short text whose attention is recorded after every epoch, so a learner can watch it form.

After each epoch the reporter hands the model to `AttentionProbe.end_epoch`, which computes the probe's
attention once, saves it as `attention/epoch-NNN.pt` in the run folder (a few KB, read by `attnlm explore`'s
epoch slider and `attnlm runs RUN`) and measures it for the Observation column
(attnlm.inspection.attention_stats); once the epoch's checkpoint is safe, `log_images` draws it as one
TensorBoard image per head (its first IMAGE_CHARS characters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnlm import disk
from attnlm.data import Vocab
from attnlm.data.vocab import encode_checked
from attnlm.disk import atomic_write
from attnlm.errors import UserError
from attnlm.inspection.attention_stats import AttentionStats, describe, measure

ATTENTION_DIR = "attention"
FORMAT = "attnlm-probe-attention"
# Short enough that its characters stay readable on a TensorBoard image card and in the explorer, long
# enough to hold a few words (so "reads the last space" can show).
PROBE_CHARS = 32
# TensorBoard's image cards are about 215 pixels high: its images show the probe's first 16 characters,
# whose attention (causal: none of them sees a later one) is exactly the top-left corner of the probe's.
IMAGE_CHARS = 16


def default_probe(val: torch.Tensor, vocab: Vocab, block_size: int) -> torch.Tensor:
    """Up to PROBE_CHARS characters of validation text from the start of its first full line of words.

    A line that starts after a newline and is long enough to be prose (not a blank line or a speaker's name)
    gives the probe a few words and spaces; without one, the probe starts where validation does.
    """
    length = min(PROBE_CHARS, block_size, len(val))
    head = vocab.decode(val[: 20 * PROBE_CHARS])
    start, at = 0, head.find("\n") + 1
    while 0 < at < len(head):
        end = head.find("\n", at)
        line = head[at:] if end < 0 else head[at:end]
        if len(line) >= min(24, length) and " " in line:
            start = at
            break
        if end < 0:
            break
        at = end + 1
    if start + length > len(val):
        start = 0
    return val[start : start + length].to(torch.long, copy=True)  # not a view into a memory-mapped corpus


def epoch_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / ATTENTION_DIR / f"epoch-{epoch:03d}.pt"


def epoch_files(run_dir: Path) -> dict[int, Path]:
    """{epoch: file} of the probe attention saved in a run folder, oldest first."""
    files = {}
    for path in sorted((run_dir / ATTENTION_DIR).glob("epoch-*.pt")):
        try:
            files[int(path.stem.removeprefix("epoch-"))] = path
        except ValueError:
            continue
    return files


@dataclass
class ProbeAttention:
    epoch: int
    step: int
    text: str
    weights: torch.Tensor  # (L, H, T, T) float32, rows = queries


def save_epoch(path: Path, epoch: int, step: int, text: str, weights: list[torch.Tensor]) -> None:
    """Atomically, like checkpoints: the explorer may read the folder while the run writes it. A refused write
    ends the run with one line, as for metrics.jsonl; the run folder itself is never recreated."""
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as e:
        raise disk.write_error(path, e) from None
    w = torch.stack(weights)  # (L, H, T, T)
    rows, cols = torch.tril_indices(w.shape[-1], w.shape[-1])
    # Only the lower triangle (the future is 0) in fp16: 19 KB for 4 layers x 4 heads on 32 characters.
    payload = {"format": FORMAT, "epoch": epoch, "step": step, "text": text,
               "lower": w[..., rows, cols].to(torch.float16)}  # (L, H, T(T+1)/2)
    atomic_write(path, lambda f: torch.save(payload, f))


def load_epoch(path: Path) -> ProbeAttention:
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != FORMAT:
            raise ValueError("not a probe attention file")
        text, lower = str(payload["text"]), payload["lower"].float()
        T = len(text)
        rows, cols = torch.tril_indices(T, T)
        weights = torch.zeros(*lower.shape[:-1], T, T)
        weights[..., rows, cols] = lower
        return ProbeAttention(int(payload["epoch"]), int(payload["step"]), text, weights)
    except Exception as e:  # a file cut short or replaced by something else: say which, never crash a reader
        raise UserError(f"{path} is not a readable probe attention file ({type(e).__name__}); delete it or "
                        "let the run write it again") from None


class AttentionProbe:
    """What the trainer calls at the end of each epoch; only the main process (rank 0) does anything."""

    def __init__(self, ids: torch.Tensor, vocab: Vocab, write: bool) -> None:
        self.ids = ids.long()  # (T,)
        self.text = vocab.decode(self.ids)
        self.write = write
        self.previous: AttentionStats | None = None
        self.weights: list[torch.Tensor] | None = None  # per layer (H, T, T), after the last epoch
        self._looked_back = False

    def end_epoch(self, model: torch.nn.Module, run_dir: Path, epoch: int, step: int) -> str | None:
        """Record the probe's attention after `epoch`; returns a phrase on what attention did, or None."""
        from attnlm.inspection.attention import attention_weights

        if not self.write:
            return None  # the other processes of a torchrun job neither print nor write
        if not self._looked_back:
            self._looked_back = True
            self.previous = self._saved_stats(run_dir, epoch - 1)  # a resumed run compares with its last epoch
        self.weights = attention_weights(model, self.ids)  # per layer (H, T, T)
        current = measure(self.weights, self.text) if len(self.text) >= 2 else None
        note = describe(self.previous, current) if current else None
        self.previous = current
        save_epoch(epoch_path(run_dir, epoch), epoch, step, self.text, self.weights)
        return note

    def log_images(self, tb: Any, step: int) -> None:
        """The last recorded attention as TensorBoard images, one per head, of the first IMAGE_CHARS characters."""
        from attnlm.inspection.plots import head_images

        if self.weights is None:
            return
        n = IMAGE_CHARS
        for tag, image in head_images([w[:, :n, :n] for w in self.weights], self.text[:n]).items():
            tb.image(tag, image, step)

    def _saved_stats(self, run_dir: Path, epoch: int) -> AttentionStats | None:
        path = epoch_path(run_dir, epoch)
        if epoch < 1 or not path.is_file():
            return None
        try:
            saved = load_epoch(path)
        except UserError:
            return None
        return measure(saved.weights, saved.text) if saved.text == self.text and len(saved.text) >= 2 else None


def probe_ids(probe_text: str | None, vocab: Vocab, val: torch.Tensor, block_size: int) -> torch.Tensor:
    """The probe text as ids (T,): log.probe_text, or else a short line of validation text."""
    if probe_text is None:
        from attnlm.inspection.probe import default_probe

        return default_probe(val, vocab, block_size)
    return encode_checked(
        probe_text, vocab, "log.probe_text", block_size, empty_hint="set it to some text, or to null to probe with "
        "validation text", never_saw="the corpus does not", fix="change the text or set it to null",
        too_long=f"log.probe_text has {len(probe_text)} characters, more than model.block_size = {block_size}; shorten it")
