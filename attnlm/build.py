"""What a config builds before training or inspection: the corpus, a freshly initialised model, the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnlm import distributed
from attnlm.config import Config
from attnlm.data import Corpus, Vocab, load_corpus
from attnlm.device import resolve_device, use_bf16
from attnlm.model import AttnLM


@dataclass
class Built:
    corpus: Corpus
    model: AttnLM
    device: torch.device
    bf16: bool  # whether training autocasts to bf16 on this device


def build(cfg: Config, vocab: Vocab | None = None) -> Built:
    """Data, model and device for a config (weights seeded by train.seed). With `vocab` (a checkpoint's) the
    text must fit that vocabulary."""
    device = distributed.train_device(distributed.current(), resolve_device(cfg.train.device))
    bf16 = use_bf16(device, cfg.train.precision)
    corpus = load_corpus(cfg.data.path, cfg.data.val_fraction, cfg.model.block_size, vocab)
    torch.manual_seed(cfg.train.seed)
    model = AttnLM(cfg.model, corpus.vocab.size).to(device)
    return Built(corpus, model, device, bf16)
