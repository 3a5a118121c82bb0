"""The probe: a short text whose attention is recorded after every epoch, so a learner can watch it form.

After each epoch the reporter hands the model to `AttentionProbe.end_epoch`, which computes the probe's
attention once, saves it as `attention/epoch-NNN.pt` in the run folder (a few KB, read by `attnlm explore`'s
epoch slider and `attnlm runs RUN`) and measures it for the Observation column
(attnlm.inspection.attention_stats); once the epoch's checkpoint is safe, `log_images` draws it as one
TensorBoard image per head (its first IMAGE_CHARS characters).

A small model also keeps its weights after each epoch, beside that file: `attention/model-NNN.pt`, the model
state alone in fp16 (no optimizer), so the explorer's slider can replay any text the learner types under the
model as it was then (log.epoch_weights: auto keeps them up to EPOCH_WEIGHTS_MAX_PARAMS parameters). Both
files of an epoch are written before its checkpoint; a resume from an older checkpoint first drops those
written after it (`rewind`), then writes them again as the epochs are retrained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from attnlm import disk
from attnlm.data import Vocab
from attnlm.data.vocab import encode_checked
from attnlm.disk import atomic_write
from attnlm.errors import UserError
from attnlm.inspection.attention_stats import AttentionStats, describe, measure

T_ = TypeVar("T_")

ATTENTION_DIR = "attention"
FORMAT = "attnlm-probe-attention"
# Short enough that its characters stay readable on a TensorBoard image card and in the explorer, long
# enough to hold a few words (so "reads the last space" can show).
PROBE_CHARS = 32
# TensorBoard's image cards are about 215 pixels high: its images show the probe's first 16 characters,
# whose attention (causal: none of them sees a later one) is exactly the top-left corner of the probe's.
IMAGE_CHARS = 16
WEIGHTS_FORMAT = "attnlm-epoch-weights"
# log.epoch_weights=auto keeps the weights of models up to this size: at most 4 MB an epoch in fp16, while the
# models a learner trains on a laptop (configs/tiny.yaml to configs/shakespeare.yaml) stay well under it.
EPOCH_WEIGHTS_MAX_PARAMS = 2_000_000


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


def _numbered(run_dir: Path, prefix: str) -> dict[int, Path]:
    """{epoch: file} of the files PREFIX-NNN.pt in a run's attention folder, oldest first."""
    files = {}
    for path in sorted((run_dir / ATTENTION_DIR).glob(f"{prefix}-*.pt")):
        try:
            files[int(path.stem.removeprefix(f"{prefix}-"))] = path
        except ValueError:
            continue
    return files


def epoch_files(run_dir: Path) -> dict[int, Path]:
    """{epoch: file} of the probe attention saved in a run folder, oldest first."""
    return _numbered(run_dir, "epoch")


def weights_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / ATTENTION_DIR / f"model-{epoch:03d}.pt"


def weight_files(run_dir: Path) -> dict[int, Path]:
    """{epoch: file} of the model weights kept after each epoch in a run folder, oldest first."""
    return _numbered(run_dir, "model")


def keeps_weights(setting: bool | str, params: int) -> bool:
    """log.epoch_weights: true and false as said; auto keeps them for models of at most
    EPOCH_WEIGHTS_MAX_PARAMS parameters."""
    return setting is True or (setting == "auto" and params <= EPOCH_WEIGHTS_MAX_PARAMS)


@dataclass
class ProbeAttention:
    epoch: int
    step: int
    text: str
    weights: torch.Tensor  # (L, H, T, T) float32, rows = queries


def save_epoch(path: Path, epoch: int, step: int, text: str, weights: list[torch.Tensor]) -> None:
    """The probe's attention after `epoch`, written whole (_write): the explorer may read the folder while the run
    writes it."""
    w = torch.stack(weights)  # (L, H, T, T)
    rows, cols = torch.tril_indices(w.shape[-1], w.shape[-1])
    # Only the lower triangle (the future is 0) in fp16: 19 KB for 4 layers x 4 heads on 32 characters.
    _write(path, {"format": FORMAT, "epoch": epoch, "step": step, "text": text,
                  "lower": w[..., rows, cols].to(torch.float16)})  # (L, H, T(T+1)/2)


def load_epoch(path: Path) -> ProbeAttention:
    def parse(payload: dict[str, Any]) -> ProbeAttention:
        text, lower = str(payload["text"]), payload["lower"].float()
        T = len(text)
        rows, cols = torch.tril_indices(T, T)
        weights = torch.zeros(*lower.shape[:-1], T, T)
        weights[..., rows, cols] = lower
        return ProbeAttention(int(payload["epoch"]), int(payload["step"]), text, weights)

    return _read(path, FORMAT, "probe attention", parse)


def _write(path: Path, payload: dict[str, Any]) -> None:
    """Atomically, like checkpoints; a refused write ends the run with one line; the run folder itself is never
    recreated."""
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as e:
        raise disk.write_error(path, e) from None
    atomic_write(path, lambda f: torch.save(payload, f))


def _read(path: Path, kind: str, what: str, parse: Callable[[dict[str, Any]], T_]) -> T_:
    """A file _write wrote, of format `kind`, parsed; anything else (cut short, replaced) one UserError naming it,
    never a crash of the reader."""
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != kind:
            raise ValueError(f"not a {what} file")
        return parse(payload)
    except Exception as e:
        raise UserError(f"{path} is not a readable {what} file ({type(e).__name__}); delete it or let the run "
                        "write it again") from None


@dataclass
class EpochWeights:
    epoch: int
    step: int
    state: dict[str, torch.Tensor]  # the model's state_dict after that epoch, floating tensors in fp16


def save_weights(path: Path, epoch: int, step: int, model: torch.nn.Module) -> None:
    """The model's state after `epoch` (no optimizer), atomically like the probe's attention, and like it in
    fp16: half the file of fp32, for a replay the page shows to two decimals."""
    state = {name: t.detach().to("cpu", torch.float16) if t.is_floating_point() else t.detach().cpu()
             for name, t in model.state_dict().items()}
    _write(path, {"format": WEIGHTS_FORMAT, "epoch": epoch, "step": step, "model": state})


def load_weights(path: Path) -> EpochWeights:
    def parse(payload: dict[str, Any]) -> EpochWeights:
        state = payload["model"]
        if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise ValueError("no model state")
        return EpochWeights(int(payload["epoch"]), int(payload["step"]), state)

    return _read(path, WEIGHTS_FORMAT, "epoch weights", parse)


def _saved_step(path: Path) -> int | None:
    """The step a probe attention or weights file was written at, or None for one that cannot be read."""
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(payload["step"])
    except Exception:
        return None


def rewind(run_dir: Path, step: int) -> list[int]:
    """Before a resume from a checkpoint at `step`: delete the epochs' attention and weights files written after
    it (by a run that went further from there before), as metrics.jsonl is rewound, so that no file in attention/
    holds a model the resumed run has not (yet) trained. Returns the epochs dropped. An unreadable file is left
    alone: the run writes it again if it is a later epoch's."""
    files = [*epoch_files(run_dir).items(), *weight_files(run_dir).items()]
    later = sorted({epoch for epoch, path in files if (saved := _saved_step(path)) is not None and saved > step})
    for epoch in later:
        for path in (epoch_path(run_dir, epoch), weights_path(run_dir, epoch)):
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                raise disk.write_error(path, e) from None
    return later


class AttentionProbe:
    """What the trainer calls at the end of each epoch; only the main process (rank 0) does anything."""

    def __init__(self, ids: torch.Tensor, vocab: Vocab, write: bool, keep_weights: bool = False) -> None:
        self.ids = ids.long()  # (T,)
        self.text = vocab.decode(self.ids)
        self.write = write
        self.keep_weights = keep_weights  # also save the model's state after each epoch (log.epoch_weights)
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
        if self.keep_weights:
            save_weights(weights_path(run_dir, epoch), epoch, step, model)
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
