"""The explorer's one door to the model and the run folder.

Every number the page shows comes through here, from attnlm's own code: the model is an `attnlm.load(...)`
Model of the Python API, so attention weights come from `Model.attention` (the path of `attnlm attention`),
the per-head pipeline from `Model.trace` (the `trace` command's stages) and samples from `Model.generate`;
the epoch history comes from the run's metrics.jsonl and attention/ folder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from attnlm.config import Config
from attnlm.data.vocab import Vocab, encode_checked
from attnlm.errors import UserError
from attnlm.inspection.attention import group_matrix, word_groups
from attnlm.inspection.probe import PROBE_CHARS, ProbeAttention, epoch_files, load_epoch
from attnlm.inspection.trace import Trace
from attnlm.labels import show_char
from attnlm.store.metrics import read_metrics


class TrainedModel(Protocol):
    """What the explorer asks of the model it is handed (an attnlm.api Model: attnlm.api.explore loads it). The
    explorer never loads one itself, so it sits below the API and uses it through these calls."""

    module: torch.nn.Module
    vocab: Vocab
    config: Config
    source: str

    @property
    def device(self) -> torch.device: ...

    def attention(self, text: str) -> torch.Tensor: ...

    def trace(self, text: str, layer: int = 0, head: int = 0) -> Trace: ...

    def generate(self, prompt: str = "", max_new_tokens: int = 200, temperature: float = 0.8, *,
                 seed: int | None = None) -> str: ...

TOP_K = 5


@dataclass
class Analysis:
    text: str
    weights: torch.Tensor  # (L, H, T, T): every layer's and head's attention, rows = queries
    probs: torch.Tensor  # (T, V): the next-character distribution after each position
    words: list[tuple[str, list[int]]]  # the text split into words, each with its character positions
    word_weights: torch.Tensor  # (L, H, G, G): the same attention between words


class ExploredModel:
    """A trained model and, when there is one, the run folder it came from."""

    def __init__(self, model: TrainedModel, run_dir: Path | None) -> None:
        self.model = model
        self.vocab = model.vocab
        self.config = model.config
        self.source = model.source
        self.run_dir = run_dir
        self._lock = threading.Lock()  # one model, many request threads: compute one request at a time
        self._default_text: str | None = None

    @property
    def module(self) -> torch.nn.Module:
        return self.model.module

    @property
    def block_size(self) -> int:
        return self.config.model.block_size

    # ----- the text box ------------------------------------------------------------------------
    def check_text(self, text: str) -> torch.Tensor:
        """The text as ids (T,), or the one-line UserError every command gives, worded for the page."""
        return encode_checked(text, self.vocab, "the text", self.block_size, empty_hint="type at least one character",
                              fix="remove or replace them")

    def analyze(self, text: str) -> Analysis:
        """Attention of every layer and head on `text`, and the model's next-character probabilities."""
        ids = self.check_text(text)
        with self._lock, torch.no_grad():
            weights = self.model.attention(text).float().cpu()  # (L, H, T, T)
            logits, _ = self.module(ids.to(self.model.device)[None])  # (1, T, V)
        probs = torch.softmax(logits[0].float(), dim=-1).cpu()  # (T, V)
        words = word_groups(text)
        word_weights = torch.stack([torch.stack([group_matrix(w, words) for w in layer]) for layer in weights])
        return Analysis(text, weights, probs, words, word_weights)

    def trace(self, text: str, layer: int, head: int) -> Trace:
        """The `trace` command's stages for one head: x, q, k, v, scores, weights and z, as tensors."""
        self.check_text(text)
        with self._lock:
            return self.model.trace(text, layer, head)

    def sample(self, text: str, n: int, seed: int, temperature: float) -> str:
        self.check_text(text)
        with self._lock:
            return self.model.generate(text, max_new_tokens=n, temperature=temperature, seed=seed)

    def label(self, c: str) -> str:
        return show_char(c)

    # ----- the run folder ----------------------------------------------------------------------
    def epochs(self) -> list[dict]:
        """The run's epoch rows (metrics.jsonl), Observation included."""
        return [r for r in read_metrics(self.run_dir) if r.get("kind") == "epoch"] if self.run_dir else []

    def steps(self) -> list[dict]:
        return [r for r in read_metrics(self.run_dir) if r.get("kind") == "step"] if self.run_dir else []

    def attention_epochs(self) -> list[int]:
        return list(epoch_files(self.run_dir)) if self.run_dir else []

    def epoch_attention(self, epoch: int) -> ProbeAttention:
        files = epoch_files(self.run_dir) if self.run_dir else {}
        if epoch not in files:
            raise UserError(f"no saved attention for epoch {epoch}; this run has it for epochs "
                            f"{', '.join(map(str, files)) or 'none'}")
        return load_epoch(files[epoch])

    def default_text(self) -> str:
        """The run's probe text (what the epoch slider replays: a line of its validation text by default)."""
        if self._default_text is None:
            self._default_text = self._find_default_text()
        return self._default_text

    def _find_default_text(self) -> str:
        saved = self.attention_epochs()
        if saved:
            try:
                return self.epoch_attention(saved[-1]).text
            except UserError:
                pass
        probe = self.config.log.probe_text
        if probe and not self.vocab.unknown(probe) and len(probe) <= self.block_size:
            return probe
        # A checkpoint without its run folder: the model's own words (seeded), which it can always read. Its
        # corpus is not read for this: it may be gigabytes, or gone.
        with self._lock:
            return self.model.generate("", max_new_tokens=min(PROBE_CHARS, self.block_size), seed=0)
