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

import torch

from attnlm import api
from attnlm.errors import UserError
from attnlm.inspect.attention import group_matrix, word_groups
from attnlm.inspect.trace import Trace
from attnlm.probe import PROBE_CHARS, ProbeAttention, epoch_files, load_epoch
from attnlm.runs import read_metrics, resolve_checkpoint
from attnlm.text import encode_checked, show_char

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

    def __init__(self, model: api.Model, run_dir: Path | None) -> None:
        self.model = model
        self.vocab = model.vocab
        self.config = model.config
        self.source = model.source
        self.run_dir = run_dir
        self._lock = threading.Lock()  # one model, many request threads: compute one request at a time
        self._default_text: str | None = None

    @classmethod
    def open(cls, run: str | None, checkpoint: str | None, device: str = "cpu") -> ExploredModel:
        path = resolve_checkpoint(run, checkpoint)  # --run, --checkpoint or the newest run, as every command
        # A checkpoint inside a run folder (RUN/checkpoints/x.pt) brings its run's history along.
        run_dir = Path(run) if run else path.parent.parent if (path.parent.parent / "metrics.jsonl").is_file() else None
        return cls(api.load(path, device=device), run_dir)

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
