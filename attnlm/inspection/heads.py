"""What a head does, as scores: previous-token, duplicate-token and induction heads, and in-context learning.

The scores are those of Elhage et al. (2021) and Olsson et al. (2022), read on their probe: R random tokens
of the model's vocabulary followed by the same R tokens again (R = block_size // 2), drawn from a fixed seed so
that every run, every epoch and `attnlm heads` read the same sequence. With A a head's attention on the probe
(rows = queries, each summing to 1), every head score is a mean attention weight, so it lies in [0, 1]:

    previous_token   A[i, i-1]    over every i >= 1: the head reads the token just before its own
    duplicate_token  A[i, i-R]    over the second copy: the head finds the earlier occurrence of its token
    induction        A[i, i-R+1]  over the second copy: the head reads the token that followed that earlier
                                  occurrence, which is the token about to come (in-context copying)

The in-context learning score is the model's, not a head's: the mean loss (nats) of its predictions of the
second copy minus that of its predictions of the first copy, R-1 predictions each (the first token of the
second copy is left out: nothing before it tells that the sequence starts over). A model that uses its context
predicts the repeat far better than the random first half, so the score goes negative; 0 means it learned
nothing from its context. It stands in for the papers' "loss at token 500 minus loss at token 50", which needs
a longer window than these models have.

Uniform causal attention scores mean(1 / (i+1)) over the positions counted, about 0.02 for induction on a
64-token window; a random-init model scores near that, which is why `attnlm heads` shows it beside each score.
The functions on attention tensors are pure, so they are tested on patterns built by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from attnlm.lm.model import AttnLM
from attnlm.store.metrics import read_metrics

SCORES = ("previous_token", "duplicate_token", "induction")
PROBE_SEED = 0  # one probe for every run, so the scores of two runs compare
# A head "became" a previous-token or induction head (the Observation column) the first time its score
# reaches this: half of all its attention on one position, over 20x what uniform attention gives it.
THRESHOLD = 0.5
NOTED = {"induction": "an induction head", "previous_token": "a previous-token head"}


@dataclass(frozen=True)
class RepeatProbe:
    ids: torch.Tensor  # (2R,) the R tokens, then the same R tokens again
    period: int  # R

    @property
    def length(self) -> int:
        return len(self.ids)


def repeat_probe(vocab_size: int, block_size: int, seed: int = PROBE_SEED) -> RepeatProbe | None:
    """R = block_size // 2 random token ids, twice; None when the window is too short (R < 2) for induction.

    Drawn without replacement where the vocabulary allows, so each token occurs once in each copy and the
    earlier occurrence a duplicate or induction head should find is the only one.
    """
    period = block_size // 2
    if period < 2 or vocab_size < 1:
        return None
    generator = torch.Generator().manual_seed(seed)
    if vocab_size >= period:
        first = torch.randperm(vocab_size, generator=generator)[:period]
    else:
        first = torch.randint(vocab_size, (period,), generator=generator)
    return RepeatProbe(torch.cat((first, first)).long(), period)


def _stacked(weights: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    w = weights if isinstance(weights, torch.Tensor) else torch.stack(list(weights))
    if w.dim() != 4 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"attention weights must be (layers, heads, T, T), got shape {tuple(w.shape)}")
    return w.double()


def _check_period(period: int, T: int) -> None:
    if not 2 <= period < T:
        raise ValueError(f"the period must be at least 2 and shorter than the {T} positions, got {period}")


def previous_token_score(weights: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """(L, H): mean of A[i, i-1] over i >= 1. weights: (L, H, T, T) or a list of (H, T, T)."""
    w = _stacked(weights)
    T = w.shape[-1]
    if T < 2:
        raise ValueError("the previous-token score needs at least two positions")
    i = torch.arange(1, T)
    return w[..., i, i - 1].mean(-1)


def duplicate_token_score(weights: torch.Tensor | Sequence[torch.Tensor], period: int) -> torch.Tensor:
    """(L, H): mean of A[i, i-period] over the repeat (i >= period)."""
    w = _stacked(weights)
    _check_period(period, w.shape[-1])
    i = torch.arange(period, w.shape[-1])
    return w[..., i, i - period].mean(-1)


def induction_score(weights: torch.Tensor | Sequence[torch.Tensor], period: int) -> torch.Tensor:
    """(L, H): mean of A[i, i-period+1] over the repeat (i >= period): the token after the earlier copy."""
    w = _stacked(weights)
    _check_period(period, w.shape[-1])
    i = torch.arange(period, w.shape[-1])
    return w[..., i, i - period + 1].mean(-1)


def icl_score(logits: torch.Tensor, ids: torch.Tensor, period: int) -> float:
    """Mean loss predicting the second copy minus the first (nats; negative: the context helps).
    logits: (T, V) at each position of ids (T,), period R: ids[i] == ids[i - R] for i >= R."""
    T = len(ids)
    _check_period(period, T)
    losses = F.cross_entropy(logits[:-1].double(), ids[1:].long(), reduction="none")  # (T-1,): predicting t+1
    first = losses[: period - 1]  # targets 1 .. R-1
    second = losses[period:]  # targets R+1 .. T-1, the repeat's tokens after its first
    return float(second.mean() - first.mean())


def head_key(layer: int, head: int) -> str:
    """A head's name in every record and on screen: 'layer.head', both counted from 0."""
    return f"{layer}.{head}"


@dataclass(frozen=True)
class HeadScores:
    heads: dict[str, dict[str, float]]  # head_key -> {score: value}, layer by layer
    icl_score: float

    def to_dict(self) -> dict:
        return {"heads": self.heads, "icl_score": self.icl_score}

    @classmethod
    def from_dict(cls, row: dict) -> HeadScores:
        return cls({k: {s: float(v[s]) for s in SCORES} for k, v in row["heads"].items()}, float(row["icl_score"]))

    def column(self, score: str) -> dict[str, float]:
        return {key: values[score] for key, values in self.heads.items()}


def score_attention(weights: torch.Tensor | Sequence[torch.Tensor], period: int) -> dict[str, dict[str, float]]:
    """Every head's three scores: {'layer.head': {'previous_token': ..., 'duplicate_token': ..., 'induction': ...}}."""
    columns = {"previous_token": previous_token_score(weights), "duplicate_token": duplicate_token_score(weights, period),
               "induction": induction_score(weights, period)}
    L, H = columns["induction"].shape
    return {head_key(n, h): {s: float(columns[s][n, h]) for s in SCORES} for n in range(L) for h in range(H)}


def measure(model: AttnLM, probe: RepeatProbe) -> HeadScores:
    """One forward pass of the probe through `model` (eval mode, no gradients): its head scores."""
    from attnlm.inspection.attention import logits_and_attention

    logits, weights = logits_and_attention(model, probe.ids)
    return HeadScores(score_attention(weights, probe.period), icl_score(logits, probe.ids, probe.period))


def untrained(model: AttnLM, seed: int) -> AttnLM:
    """A fresh model of `model`'s shape initialised as training initialises it from `seed` (train.seed), on the
    CPU; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AttnLM(model.cfg, model.vocab_size).eval()


def tensorboard_scalars(scores: HeadScores) -> dict[str, float]:
    """Tags heads/SCORE/L.H (one chart per score, see CHARTS) and heads/icl_score."""
    values = {f"heads/{score}/{key}": v[score] for score in SCORES for key, v in scores.heads.items()}
    values["heads/icl_score"] = scores.icl_score
    return values


# TensorBoard's Custom Scalars tab: one chart per score with a line per head (its Scalars tab shows a card per tag).
CHARTS = {"heads": {f"{score.replace('_', '-')} score per head": ["Multiline", [f"^heads/{score}/"]]
                    for score in SCORES} | {"in-context learning score": ["Multiline", ["^heads/icl_score$"]]}}


@dataclass
class Crossings:
    """Which heads have reached THRESHOLD on a noted score so far, to say so once, the first time."""

    seen: set[tuple[str, str]] = field(default_factory=set)

    def update(self, scores: HeadScores) -> str | None:
        """Note each score a head reaches for the first time (the strongest such head per score), or None."""
        lines = []
        for score, words in NOTED.items():
            new = [(values[score], key) for key, values in scores.heads.items()
                   if values[score] >= THRESHOLD and (score, key) not in self.seen]
            self.seen.update((score, key) for _, key in new)
            if new:
                value, key = max(new)
                more = f", +{len(new) - 1} more" if len(new) > 1 else ""
                lines.append(f"head {key} became {words} ({value:.2f}){more}")
        return "\n".join(lines) or None

    def replay(self, history: Iterable[HeadScores]) -> None:
        for scores in history:
            self.update(scores)


@dataclass(frozen=True)
class SavedScores:
    epoch: int  # 0: the model before training's first step
    step: int
    scores: HeadScores


def saved_head_scores(run_dir: Path) -> list[SavedScores]:
    """The head scores a run's metrics.jsonl holds, oldest first; a row that does not read as scores is skipped."""
    history = []
    for row in read_metrics(run_dir):
        if row.get("kind") == "heads":
            try:
                history.append(SavedScores(int(row["epoch"]), int(row["step"]), HeadScores.from_dict(row)))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
    return history
