"""A trained model in Python: load one (a run folder, a checkpoint, an export), sample from it, evaluate it and
look at its attention; or a fresh, untrained one from a config. Every command that reads a model gets it here.

Every method checks its arguments first (attnlm.checks): a wrong type is an ArgumentTypeError (a TypeError), a
value out of range an ArgumentValueError (a ValueError), both attnlm.UserError naming the argument.

    model = attnlm.load("runs/tiny")
    print(model.generate("ROMEO:", max_new_tokens=100, seed=0))
    model.attention("To be, or not")  # (n_layer, n_head, T, T)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnlm.api.arguments import check_config, check_data, check_device
from attnlm.checks import SamplingOptions, check_path, check_sampling, check_seed, check_text, need_bool, need_str
from attnlm.config import Config, ConfigSource, check_device_name, check_overrides, config_from_source
from attnlm.data import EvalPlan, Vocab, load_corpus
from attnlm.data.sources import Spec
from attnlm.data.vocab import check_known
from attnlm.errors import ArgumentTypeError, ArgumentValueError, UserError, got
from attnlm.lm.evaluation import eval_result, evaluate
from attnlm.lm.generate import generate
from attnlm.lm.model import AttnLM
from attnlm.store.load import load_model
from attnlm.store.run_dir import resolve_checkpoint


# ----- a trained model -----------------------------------------------------------------------------------
@dataclass
class Evaluation:
    loss: float  # mean cross-entropy per predicted character (nats)
    perplexity: float
    accuracy: float  # share of next characters predicted exactly
    tokens: int  # predictions scored
    subset: str | None = None  # which windows, when a long split was evaluated on a fixed subset of them
    task_loss: float | None = None  # with data.task: the loss and accuracy on its predictable part alone
    task_accuracy: float | None = None


class Model:
    """A trained (or freshly initialised) model with its vocabulary and config."""

    def __init__(self, module: AttnLM, vocab: Vocab, config: Config, source: str) -> None:
        self.module = module  # the torch.nn.Module, in eval mode
        self.vocab = vocab
        self.config = config
        self.source = source  # where it came from, for messages

    def __repr__(self) -> str:
        m = self.config.model
        return (f"<attnlm.Model {self.source}: {m.n_layer} layers x {m.n_head} heads x {m.n_embd} wide, "
                f"context {m.block_size}, vocab {self.vocab.size}>")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @classmethod
    def untrained(cls, config: ConfigSource, overrides: Sequence[str] = (), device: str = "cpu") -> Model:
        """A fresh model initialised from train.seed, its vocabulary read from the config's data."""
        from attnlm.training.build import build

        check_config(config)
        overrides = check_overrides(overrides)
        check_device_name(device, "device")  # here, or it would be named as the override it becomes
        cfg = config_from_source(config, [*overrides, f"train.device={device}"])
        built = build(cfg)
        return cls(built.model.eval(), built.corpus.vocab, cfg, f"an untrained model (seed {cfg.train.seed})")

    def encode(self, text: str, subject: str = "text",
               fix: str = "use only characters from its training text") -> torch.Tensor:
        """`text` as ids (T,), refusing characters the model never saw."""
        check_text("text", text)
        need_str("subject", subject)
        need_str("fix", fix)
        check_known(text, self.vocab, subject, fix)
        return self.vocab.encode(text)

    def generate(self, prompt: str = "", max_new_tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 use_cache: bool = True, on_text: Callable[[str], None] | None = None,
                 generator: torch.Generator | None = None) -> str:
        """Continue `prompt` by `max_new_tokens` sampled characters and return them (without the prompt).
        An empty prompt starts after a newline (or the vocabulary's first character). The same seed gives the
        same text; `on_text` receives each character as it is drawn. A `generator` (instead of `seed`) lets
        several calls continue one random stream. `max_new_tokens` is at most attnlm.checks.MAX_NEW_TOKENS
        (a million); `seed` is an int from 0 to 2**64 - 1."""
        check_text("prompt", prompt)
        opts, max_new_tokens = check_sampling(SamplingOptions(temperature, top_k, top_p), max_new_tokens)
        if seed is not None:
            seed = check_seed("seed", seed)
        need_bool("use_cache", use_cache)
        if on_text is not None and not callable(on_text):
            raise ArgumentTypeError(f"on_text must be a function taking each new character, or None, got "
                                    f"{got(on_text)}")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {got(generator)}")
            if seed is not None:
                raise ArgumentValueError("give seed (a fresh random stream) or generator (one that continues), "
                                         "not both")
        start = prompt or default_prompt(self.vocab.chars)
        ids = self.encode(start, "the prompt", "remove them or train on text that has them")
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(seed) if seed is not None else generator.seed()
        emit = (lambda token: on_text(self.vocab.chars[token])) if on_text is not None else None
        new = generate(self.module, ids, max_new_tokens, opts, generator, use_cache=use_cache, on_token=emit)
        return self.vocab.decode(new)

    def evaluate(self, text: str | None = None, *, data: Spec | None = None, full: bool = False) -> Evaluation:
        """Loss, perplexity and next-character accuracy over `text`, over all the text of `data` (files,
        folders, globs or a list of them, encoded with the model's vocabulary), or else over the validation
        split of the data the model was trained on. Every prediction counts once; like training, more than
        train.eval_chars of them are evaluated on a fixed, evenly spaced subset of windows unless `full`. A model
        trained on a task (data.task) is evaluated by default on the task's held-out windows, its predictable part
        also on its own (task_loss, task_accuracy)."""
        if text is not None and len(check_text("text", text)) < 2:
            raise ArgumentValueError(f"text is too short to evaluate ({len(text)} character"
                                     f"{'s' * (len(text) != 1)}); give at least two")
        if data is not None:
            data = check_data(data)
            if text is not None:
                raise ArgumentValueError("give text (a string to evaluate) or data (files to read), not both")
        need_bool("full", full)
        d, block_size = self.config.data, self.config.model.block_size
        if text is not None:
            ids = self.vocab.encode(text)
        elif data is not None:
            # A val_fraction of 1 puts every document in the validation split: all of the text is evaluated.
            ids = load_corpus(data, 1.0, None, self.vocab, separator=d.separator, cache_dir=d.cache_dir).val
        elif d.task is not None:
            return self._evaluate_task()
        else:
            ids = load_corpus(d.path, d.val_fraction, block_size, self.vocab, separator=d.separator,
                              cache_dir=d.cache_dir).val
        if len(ids) < 2:
            raise UserError("the text is too short to evaluate; give at least two characters")
        max_chars = None if full else self.config.train.eval_chars
        plan = EvalPlan.of(len(ids), block_size, max_chars)
        result = eval_result(*evaluate(self.module, ids, self.config.train.eval_batch_size, self.device,
                                     max_chars=max_chars))
        return Evaluation(result.loss, result.perplexity, result.accuracy, result.tokens,
                          None if plan.full else plan.describe())

    def _evaluate_task(self) -> Evaluation:
        """On the held-out windows training validated on: generated again from the run's train.seed."""
        from attnlm.data.tasks import load_task
        from attnlm.lm.evaluation import evaluate_task

        c = self.config
        held = load_task(c.data, c.model.block_size, c.train.seed, c.train.eval_chars, self.vocab, self.source)
        totals = evaluate_task(self.module, held.windows, held.mask, c.train.eval_batch_size, self.device)
        whole, part = eval_result(*totals[:3]), eval_result(*totals[3:])
        return Evaluation(whole.loss, whole.perplexity, whole.accuracy, whole.tokens, task_loss=part.loss,
                          task_accuracy=part.accuracy)

    def attention(self, text: str) -> torch.Tensor:
        """The attention weights the model uses on `text`: (n_layer, n_head, T, T), rows = queries (each sums
        to 1), columns = the characters attended to; zero above the diagonal."""
        from attnlm.inspection.attention import attention_weights
        from attnlm.inspection.trace import encode_text

        ids = encode_text(check_text("text", text), self.vocab, self.config.model.block_size)
        return torch.stack(attention_weights(self.module, ids))

    def trace(self, text: str, layer: int = 0, head: int = 0, query: int | None = None) -> Any:
        """One head's data flow on `text`, the stages `attnlm trace` prints: `.tensors` holds embeddings,
        attn_in, q, k, v, scores, weights, out, logits and probs (batch dimension 1), `.stages` the
        descriptions, `.top` the likeliest characters after position `query` (default the last), `.row` that
        query's attention row key by key (score, weight, running sums)."""
        from attnlm.inspection.trace import run_trace

        return run_trace(self.module, self.vocab, check_text("text", text), layer, head, query)


def default_prompt(chars: str) -> str:
    return "\n" if "\n" in chars else chars[0]


def load(path: str | Path | None = None, device: str | torch.device = "cpu") -> Model:
    """A trained model from a run folder (its best.pt), a checkpoint file, a folder `attnlm export` wrote, or
    the newest run under runs/ when `path` is None."""
    from attnlm.store.exported import is_export

    path = check_path("path", path) if path is not None else None
    device = check_device(device)
    if path is not None and path.is_dir() and not (path / "checkpoints").is_dir() and not is_export(path):
        raise UserError(f"{path} is neither a run folder (no checkpoints/), an export (attnlm export) nor a "
                        "checkpoint file; pass a run folder, an export folder or a .pt file")
    if path is None or path.is_dir() or (not path.exists() and path.suffix != ".pt"):
        checkpoint = resolve_checkpoint(str(path) if path is not None else None, None,
                                        train_one="attnlm.train('configs/tiny.yaml'), or pass its path")
    elif not path.exists():
        raise UserError(f"checkpoint not found: {path}; pass a checkpoint file, a run folder or an export folder")
    else:
        checkpoint = path
    module, vocab, cfg, _ = load_model(checkpoint, device)
    return Model(module, vocab, cfg, str(checkpoint))


def load_for_inspection(run: str | None, checkpoint: str | None, config: Path | None, overrides: list[str],
                        device_name: str) -> Model:
    """A checkpoint's model, or with --config a fresh model initialised from train.seed, its vocabulary read
    from the config's data file."""
    from attnlm.device import resolve_device

    check_overrides(overrides, "--set")  # here, or Model.untrained would name them as Python's `overrides`
    device = resolve_device(device_name, "--device")  # a typo or a missing GPU is named as the option
    if config is not None:
        if run or checkpoint:
            raise UserError("give --config (a fresh, untrained model) or --run/--checkpoint (a trained one), not both")
        model = Model.untrained(config, overrides, device=device_name)
        model.source = f"an untrained model from {config} (seed {model.config.train.seed})"
        return model
    if overrides:
        raise UserError("--set only applies with --config; a checkpoint keeps the settings it was trained with")
    from attnlm.store.run_dir import resolve_checkpoint

    return load(resolve_checkpoint(run, checkpoint), device=device)
