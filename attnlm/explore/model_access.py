"""The explorer's one door to the model and the run folder.

Every number the page shows comes through here, from attnlm's own code: the model is an `attnlm.load(...)`
Model of the Python API, so attention weights come from `Model.attention` (the path of `attnlm attention`),
the per-head pipeline from `Model.trace` (the `trace` command's stages) and samples from `Model.generate`;
the epoch history comes from the run's metrics.jsonl and attention/ folder, and a typed text's attention
after an epoch from the weights the run kept then, through the same `attention_weights` as `Model.attention`.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from attnlm.checks import SamplingOptions
from attnlm.config import Config
from attnlm.data.vocab import Vocab, encode_checked
from attnlm.errors import UserError
from attnlm.inspection.attention import group_matrix, word_groups
from attnlm.inspection.heads import SavedScores, saved_head_scores
from attnlm.inspection.probe import PROBE_CHARS, ProbeAttention, epoch_files, load_epoch, load_weights, weight_files
from attnlm.inspection.trace import Trace
from attnlm.labels import show_char
from attnlm.lm.generate import next_token_probs
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

    def generate(self, prompt: str = "", max_new_tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> str: ...

TOP_K = 5


@dataclass
class Analysis:
    text: str
    weights: torch.Tensor  # (L, H, T, T): every layer's and head's attention, rows = queries
    probs: torch.Tensor  # (T, V): the next-character distribution after each position
    words: list[tuple[str, list[int]]]  # the text split into words, each with its character positions
    word_weights: torch.Tensor  # (L, H, G, G): the same attention between words


@dataclass
class Ablation:
    text: str
    probs: torch.Tensor  # (T, V): the next-character distribution after each position, with the heads off
    loss: float | None  # mean next-character loss on the text with the heads off (None: one character, no target)
    intact_loss: float | None  # the same with every head on
    flipped: list[int]  # positions whose likeliest next character differs from the intact model's


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
        self._replayer: torch.nn.Module | None = None  # a copy of the model holding an epoch's weights
        self._replaying: tuple[tuple[Path, int], int, int] | None = None  # ((file, mtime), epoch, step) it holds

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

    def ablate(self, text: str, off: list[tuple[int, int]]) -> Ablation:
        """The next-character probabilities on `text` with the heads `off` ((layer, head) pairs) switched off
        (zero ablation, attnlm.inspection.ablation), the loss on the text with them off and with every head on,
        and the positions whose likeliest next character changed."""
        from attnlm.inspection.ablation import heads_off, scored
        from attnlm.inspection.attention import logits_and_attention

        ids = self.check_text(text)
        with self._lock:  # switching heads off changes the one model every request reads
            intact, _ = logits_and_attention(self.module, ids)  # (T, V)
            with heads_off(self.module, off):
                logits, _ = logits_and_attention(self.module, ids)
        loss, intact_loss = (scored(x[:-1], ids[1:]).loss if len(ids) > 1 else None for x in (logits, intact))
        flipped = (logits.argmax(-1) != intact.argmax(-1)).nonzero().flatten().tolist()
        return Ablation(text, torch.softmax(logits, dim=-1), loss, intact_loss, flipped)

    def trace(self, text: str, layer: int, head: int) -> Trace:
        """The `trace` command's stages for one head: x, q, k, v, scores, weights and z, as tensors."""
        self.check_text(text)
        with self._lock:
            return self.model.trace(text, layer, head)

    def sample(self, text: str, n: int, seed: int, temperature: float, top_k: int | None = None,
               top_p: float | None = None) -> str:
        self.check_text(text)
        with self._lock:
            return self.model.generate(text, max_new_tokens=n, temperature=temperature, top_k=top_k, top_p=top_p,
                                       seed=seed)

    def next_distribution(self, text: str, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
        """(V,) the distribution `sample` draws the first new character from: the model's logits after the
        whole text, divided by the temperature, cut to the top_k likeliest and to the smallest set whose mass
        reaches top_p, renormalised (lm.generate's own filter)."""
        ids = self.check_text(text)
        with self._lock, torch.no_grad():
            logits, _ = self.module(ids.to(self.model.device)[None])  # (1, T, V)
        return next_token_probs(logits[0, -1], SamplingOptions(temperature, top_k, top_p))  # (V,)

    def label(self, c: str) -> str:
        return show_char(c)

    # ----- the run folder ----------------------------------------------------------------------
    def epochs(self) -> list[dict]:
        """The run's epoch rows (metrics.jsonl), Observation included."""
        return [r for r in read_metrics(self.run_dir) if r.get("kind") == "epoch"] if self.run_dir else []

    def steps(self) -> list[dict]:
        return [r for r in read_metrics(self.run_dir) if r.get("kind") == "step"] if self.run_dir else []

    def head_history(self) -> list[SavedScores]:
        """The head scores saved after each epoch (metrics.jsonl rows of kind "heads"), oldest first."""
        return saved_head_scores(self.run_dir) if self.run_dir else []

    def attention_epochs(self) -> list[int]:
        return list(epoch_files(self.run_dir)) if self.run_dir else []

    def epoch_attention(self, epoch: int) -> ProbeAttention:
        files = epoch_files(self.run_dir) if self.run_dir else {}
        if epoch not in files:
            raise UserError(f"no saved attention for epoch {epoch}; this run has it for epochs "
                            f"{', '.join(map(str, files)) or 'none'}")
        return load_epoch(files[epoch])

    def weight_epochs(self) -> list[int]:
        """The epochs whose model weights the run kept (log.epoch_weights), oldest first."""
        return list(weight_files(self.run_dir)) if self.run_dir else []

    def replay(self, epoch: int, text: str) -> ProbeAttention:
        """`text`'s attention (L, H, T, T) under the weights the run kept after `epoch`: what the slider shows of
        a typed text. The model itself is left as it is; a copy of it takes the epoch's weights."""
        from attnlm.inspection.attention import attention_weights

        ids = self.check_text(text)
        files = weight_files(self.run_dir) if self.run_dir else {}
        if epoch not in files:
            raise UserError(f"no saved weights for epoch {epoch}")
        with self._lock:
            epoch, step = self._load_replayer(files[epoch])
            weights = torch.stack(attention_weights(self._replayer, ids))  # (L, H, T, T)
        return ProbeAttention(epoch, step, text, weights)

    def _load_replayer(self, path: Path) -> tuple[int, int]:
        """Put the weights in `path` into the replay copy of the model (made on first use) unless it holds them
        already; (epoch, step) they were kept at. A training run may rewrite the file: its mtime tells."""
        try:
            key = (path, path.stat().st_mtime_ns)
        except OSError as e:  # deleted since it was listed: a resume rewinding the run
            raise UserError(f"cannot read {path} ({e.strerror}); reload the page") from None
        if self._replaying is None or self._replaying[0] != key:
            saved = load_weights(path)
            if self._replayer is None:
                self._replayer = copy.deepcopy(self.module)
            self._replaying = None
            try:
                self._replayer.load_state_dict(saved.state)  # fp16 copied into the model's own dtype
            except RuntimeError:  # another model's weights (a run folder put together by hand)
                raise UserError(f"{path} holds the weights of another model than this run's; delete it") from None
            self._replaying = (key, saved.epoch, saved.step)
        return self._replaying[1], self._replaying[2]

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
