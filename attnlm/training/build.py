"""What a config builds before training or inspection: the corpus (or a task's data), a freshly initialised model,
the device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from attnlm import distributed
from attnlm.config import Config
from attnlm.data import Corpus, Vocab, load_corpus
from attnlm.data.sources import describe
from attnlm.data.tasks import TaskData, load_task
from attnlm.data.vocab import listed
from attnlm.device import compile_supported, resolve_device, trust_cpu_isa_flags, use_bf16, use_compile
from attnlm.errors import UnknownCharacters, UserError
from attnlm.lm.model import AttnLM


@dataclass
class Built:
    corpus: Corpus | TaskData  # the text, or with data.task the task and its held-out windows
    model: AttnLM
    device: torch.device
    bf16: bool  # whether training autocasts to bf16 on this device


def build(cfg: Config, vocab: Vocab | None = None, vocab_of: str | None = None) -> Built:
    """Data, model and device for a config (weights seeded by train.seed). With `vocab` (that of the checkpoint
    `vocab_of`) the text, or the task, must fit that vocabulary."""
    device = distributed.train_device(distributed.current(), resolve_device(cfg.train.device))
    bf16 = use_bf16(device, cfg.train.precision)
    corpus: Corpus | TaskData
    if cfg.data.task is not None:
        corpus = load_task(cfg.data, cfg.model.block_size, cfg.train.seed, cfg.train.eval_chars, vocab,
                           vocab_of or "the checkpoint")
    else:
        try:
            corpus = load_corpus(cfg.data.path, cfg.data.val_fraction, cfg.model.block_size, vocab,
                                 separator=cfg.data.separator, cache_dir=cfg.data.cache_dir)
        except UnknownCharacters as e:
            if vocab_of is None:
                raise
            raise UserError(f"{describe(cfg.data.path)} has characters that {vocab_of} never saw: {listed(e.missing)}; "
                            "a model only reads its own vocabulary, so use text without them or train from "
                            "scratch") from None
    torch.manual_seed(cfg.train.seed)
    model = AttnLM(cfg.model, corpus.vocab.size).to(device)
    return Built(corpus, model, device, bf16)


def init_source(cfg: Config) -> tuple[dict, str] | None:
    """The checkpoint train.init_from names (a run folder means its best.pt) and its path, checked against the
    config's model section; None when training starts from scratch."""
    if not cfg.train.init_from:
        return None
    from attnlm.config import config_from_dict, model_differences
    from attnlm.store.checkpoint import load_checkpoint
    from attnlm.store.run_dir import resolve_checkpoint

    source = Path(cfg.train.init_from)
    path = resolve_checkpoint(str(source), None) if source.is_dir() else source
    if not path.exists():
        raise UserError(f"train.init_from: {source} not found; give a run folder or a checkpoint file")
    payload = load_checkpoint(path)
    diff = model_differences(cfg.model, config_from_dict(payload["config"]).model)
    if diff:
        raise UserError(f"train.init_from: {path} has another model shape ({', '.join(diff)} differ); fine-tuning "
                        "keeps the model section: copy it from the source run's config.yaml")
    return payload, str(path)


def build_for_training(cfg: Config, resume: dict | None = None) -> Built:
    """What a training run starts from: a resumed checkpoint's vocabulary (its weights are restored with the rest
    of its state), train.init_from's weights and vocabulary (fine-tuning), or a fresh model."""
    if resume:
        return build(cfg, Vocab(resume["vocab"]))
    source = init_source(cfg)
    if source is None:
        return build(cfg)
    payload, path = source
    built = build(cfg, Vocab(payload["vocab"]), vocab_of=path)
    built.model.load_state_dict(payload["model"])
    return built


def compile_blocks(model: AttnLM, device: torch.device, setting: bool | str, bf16: bool, console: Console) -> bool:
    """Compile each block where train.compile asks for it and the device supports it; whether it did."""
    compiled = use_compile(device, setting, bf16)
    if setting is True and not compile_supported(device):
        console.print("note: train.compile is off on MPS (torch.compile's Metal backend is a prototype that "
                      "attnlm has not been run with); training runs eager", highlight=False)
    elif compiled:
        if device.type == "cpu":
            trust_cpu_isa_flags()
        for block in model.blocks:
            block.compile(dynamic=False)
    return compiled
