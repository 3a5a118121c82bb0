"""The Python API: train a model, load one, sample, evaluate and look at its attention. The CLI commands are
thin calls of these functions, so a notebook and the command line take the same path.

    import attnlm
    run = attnlm.train("configs/tiny.yaml", ["train.epochs=2"])
    model = attnlm.load(run.dir)
    print(model.generate("ROMEO:", max_new_tokens=100, seed=0))

Errors a user can cause raise attnlm.UserError with the same one-line message the CLI prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from attnlm import distributed
from attnlm.checkpoint import load_checkpoint, load_model
from attnlm.config import Config, config_from_dict, load_config, model_differences
from attnlm.data import EvalPlan, Vocab, load_corpus
from attnlm.data.sources import Spec
from attnlm.device import resolve_device
from attnlm.errors import UserError
from attnlm.evaluate import evaluate, summarise
from attnlm.generation import generate
from attnlm.model import AttnLM
from attnlm.runs import (
    SUMMARY_FILE,
    folder_bytes,
    lock_run,
    new_run_dir,
    read_metrics,
    resolve_checkpoint,
    unlock_run,
    write_run_info,
)
from attnlm.sampling import SamplingOptions
from attnlm.text import check_known

ConfigSource = str | Path | Mapping[str, Any] | Config


# ----- training ------------------------------------------------------------------------------------------
@dataclass
class Run:
    """A run folder and how its latest training session ended."""

    dir: Path
    config: Config
    exit_code: int = 0  # 0: trained to its end; 130 / 143: stopped by Ctrl-C / SIGTERM, resumable

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """One row per finished epoch: epoch, step, train_loss, val_loss, val_accuracy, lr, seconds, ..."""
        return [row for row in read_metrics(self.dir) if row.get("kind") == "epoch"]

    @property
    def best_val_loss(self) -> float | None:
        rows = self.metrics
        return min(r["val_loss"] for r in rows) if rows else None

    @property
    def finished(self) -> bool:
        """Whether training ran to its end (epochs, max_steps or max_time), not stopped part way."""
        return (self.dir / SUMMARY_FILE).exists()

    def resume(self, overrides: Sequence[str] = (), **options: Any) -> Run:
        """Continue this run from its last.pt (e.g. after an interrupt, or with a raised train.epochs)."""
        return resume(self.dir, overrides, **options)

    def load(self, which: str = "best", device: str = "cpu") -> Model:
        """The model of this run's best.pt (or `which="last"`)."""
        return load(self.dir / "checkpoints" / f"{which}.pt", device=device)


def train(config: ConfigSource, overrides: Sequence[str] = (), *, name: str | None = None, overwrite: bool = False,
          console: Console | None = None, exit_on_second_interrupt: bool = False) -> Run:
    """Train a new run. `config` is a YAML path, a mapping of sections ({"train": {"epochs": 2}, ...}) or a
    Config; `overrides` are `section.key=value` strings applied on top. Under torchrun every rank calls it.

    Ctrl-C (or a notebook's interrupt) stops at the next step boundary, writes last.pt and returns the Run
    with exit_code 130; `run.resume()` continues it exactly.
    """
    overrides = [*overrides, f"log.name={name}"] if name else list(overrides)

    def setup(is_main: bool, console: Console) -> tuple[Any, Path | None, int | None]:
        from attnlm.training import Trainer

        cfg = _config(config, overrides)
        trainer = Trainer(cfg, console)  # loads and checks the data before any folder is made
        if not is_main:
            return trainer, None, None
        # Before the folder is made: a run that cannot save its checkpoints should not start at all.
        replaced = Path(cfg.log.dir) / cfg.log.name  # what --overwrite deletes first
        trainer.check_room(Path(cfg.log.dir), freed=folder_bytes(replaced) if overwrite and not cfg.log.timestamp else 0)
        run_dir = new_run_dir(cfg.log.dir, cfg.log.name, cfg.log.timestamp, overwrite)
        lock = lock_run(run_dir)
        write_run_info(trainer.cfg, run_dir)
        return trainer, run_dir, lock

    return _train(setup, console, exit_on_second_interrupt)


def resume(run_dir: str | Path, overrides: Sequence[str] = (), *, config: str | Path | None = None,
           console: Console | None = None, exit_on_second_interrupt: bool = False) -> Run:
    """Continue a run folder from its checkpoints/last.pt, exactly where it stopped. The checkpoint's config
    applies unless `config` is given; `overrides` change it (the model section must stay the same)."""
    run_dir = Path(run_dir)

    def setup(is_main: bool, console: Console) -> tuple[Any, Path, int | None]:
        from attnlm.training import Trainer

        last = run_dir / "checkpoints" / "last.pt"
        if not run_dir.is_dir():
            raise UserError(f"run folder not found: {run_dir}; `attnlm runs` lists the runs")
        if not last.is_file():
            raise UserError(f"{run_dir} has no checkpoints/last.pt to resume from (it was stopped before its first "
                            "checkpoint); start it afresh with --config FILE --overwrite")
        lock = lock_run(run_dir) if is_main else None  # before reading last.pt: a live run could be rewriting it
        try:
            payload = load_checkpoint(last)
            saved = config_from_dict(payload["config"])
            cfg = load_config(config, overrides, base=None if config else saved)
            diff = model_differences(cfg.model, saved.model)
            if diff:
                raise UserError(f"{last} was trained with a different model shape ({', '.join(diff)} "
                                "differ); resume with the run's own config or start a new run")
            if cfg.train.optimizer != saved.train.optimizer:  # the saved moments belong to the other optimizer
                raise UserError(f"{last} was trained with train.optimizer={saved.train.optimizer}, not "
                                f"{cfg.train.optimizer}; resume with the run's own optimizer or start a new run")
            trainer = Trainer(cfg, console, resume=payload)
            if is_main:
                trainer.check_room(run_dir)
            return trainer, run_dir, lock
        except BaseException:
            if lock is not None:
                unlock_run(lock)
            raise

    return _train(setup, console, exit_on_second_interrupt)


def _train(setup: Callable[[bool, Console], tuple[Any, Path | None, int | None]], console: Console | None,
           exit_process: bool) -> Run:
    console = console or Console(highlight=False, soft_wrap=True)
    with distributed.session() as ctx:
        if not ctx.is_main:
            console = Console(quiet=True)
        trainer, run_dir, lock = distributed.agree(ctx, lambda: setup(ctx.is_main, console))
        try:
            # Rank 0 picked the (timestamped) folder name; the others must use the very same folder.
            run_dir = distributed.broadcast(ctx, run_dir)
            code = trainer.fit(run_dir, exit_process=exit_process)
            return Run(run_dir, trainer.cfg, code)
        finally:
            if lock is not None:
                unlock_run(lock)


def _config(config: ConfigSource, overrides: Sequence[str]) -> Config:
    if isinstance(config, Config):
        return load_config(None, overrides, base=config)
    if isinstance(config, (str, Path, Mapping)):
        return load_config(config, overrides)
    raise UserError(f"config must be a YAML path, a mapping of sections or a Config, got {type(config).__name__}")


# ----- a trained model -----------------------------------------------------------------------------------
@dataclass
class Evaluation:
    loss: float  # mean cross-entropy per predicted character (nats)
    perplexity: float
    accuracy: float  # share of next characters predicted exactly
    tokens: int  # predictions scored
    subset: str | None = None  # which windows, when a long split was evaluated on a fixed subset of them


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
        from attnlm.build import build

        cfg = _config(config, [*overrides, f"train.device={device}"])
        built = build(cfg)
        return cls(built.model.eval(), built.corpus.vocab, cfg, f"an untrained model (seed {cfg.train.seed})")

    def encode(self, text: str, subject: str = "text",
               fix: str = "use only characters from its training text") -> torch.Tensor:
        """`text` as ids (T,), refusing characters the model never saw."""
        check_known(text, self.vocab, subject, fix)
        return self.vocab.encode(text)

    def generate(self, prompt: str = "", max_new_tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 use_cache: bool = True, on_text: Callable[[str], None] | None = None,
                 generator: torch.Generator | None = None) -> str:
        """Continue `prompt` by `max_new_tokens` sampled characters and return them (without the prompt).
        An empty prompt starts after a newline (or the vocabulary's first character). The same seed gives the
        same text; `on_text` receives each character as it is drawn. A `generator` (instead of `seed`) lets
        several calls continue one random stream."""
        opts = SamplingOptions(temperature, top_k, top_p)
        opts.check()
        if max_new_tokens < 0:
            raise UserError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
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
        train.eval_chars of them are evaluated on a fixed, evenly spaced subset of windows unless `full`."""
        d, block_size = self.config.data, self.config.model.block_size
        if text is not None:
            ids = self.vocab.encode(text)
        elif data is not None:
            # A val_fraction of 1 puts every document in the validation split: all of the text is evaluated.
            ids = load_corpus(data, 1.0, None, self.vocab, separator=d.separator, cache_dir=d.cache_dir).val
        else:
            ids = load_corpus(d.path, d.val_fraction, block_size, self.vocab, separator=d.separator,
                              cache_dir=d.cache_dir).val
        if len(ids) < 2:
            raise UserError("the text is too short to evaluate; give at least two characters")
        max_chars = None if full else self.config.train.eval_chars
        plan = EvalPlan.of(len(ids), block_size, max_chars)
        result = summarise(*evaluate(self.module, ids, self.config.train.eval_batch_size, self.device,
                                     max_chars=max_chars))
        return Evaluation(result.loss, result.perplexity, result.accuracy, result.tokens,
                          None if plan.full else plan.describe())

    def attention(self, text: str) -> torch.Tensor:
        """The attention weights the model uses on `text`: (n_layer, n_head, T, T), rows = queries (each sums
        to 1), columns = the characters attended to; zero above the diagonal."""
        from attnlm.inspect.attention import attention_weights
        from attnlm.inspect.trace import encode_text

        ids = encode_text(text, self.vocab, self.config.model.block_size)
        return torch.stack(attention_weights(self.module, ids))

    def trace(self, text: str, layer: int = 0, head: int = 0) -> Any:
        """One head's data flow on `text`, the stages `attnlm trace` prints: `.tensors` holds embeddings,
        attn_in, q, k, v, scores, weights, out, logits and probs (batch dimension 1), `.stages` the
        descriptions, `.top` the likeliest next characters."""
        from attnlm.inspect.trace import run_trace

        return run_trace(self.module, self.vocab, text, layer, head)


def default_prompt(chars: str) -> str:
    return "\n" if "\n" in chars else chars[0]


def load(path: str | Path | None = None, device: str | torch.device = "cpu") -> Model:
    """A trained model from a run folder (its best.pt), a checkpoint file, a folder `attnlm export` wrote, or
    the newest run under runs/ when `path` is None."""
    from attnlm.export import is_export

    path = Path(path) if path is not None else None
    if path is not None and path.is_dir() and not (path / "checkpoints").is_dir() and not is_export(path):
        raise UserError(f"{path} is neither a run folder (no checkpoints/), an export (attnlm export) nor a "
                        "checkpoint file; pass a run folder, an export folder or a .pt file")
    if path is None or path.is_dir() or (not path.exists() and path.suffix != ".pt"):
        checkpoint = resolve_checkpoint(str(path) if path is not None else None, None)
    else:
        checkpoint = path
    device = resolve_device(device, "device") if isinstance(device, str) else device
    module, vocab, cfg, _ = load_model(checkpoint, device)
    return Model(module, vocab, cfg, str(checkpoint))
