"""What each CLI command does; the CLI module only parses arguments and calls these."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from attnlm import distributed
from attnlm.checkpoint import load_checkpoint, load_model
from attnlm.config import config_from_dict, load_config
from attnlm.data import load_corpus, read_text
from attnlm.device import resolve_device
from attnlm.errors import UserError
from attnlm.evaluate import evaluate, summarise
from attnlm.generation import SamplingOptions, generate
from attnlm.runs import list_run_dirs, lock_run, new_run_dir, resolve_checkpoint, write_run_info
from attnlm.runs import summarise as summarise_run
from attnlm.text import check_known


def train(*, config: Path | None, overrides: list[str], resume: Path | None, overwrite: bool,
          name: str | None, console: Console) -> int:
    """Train in this process, or as one rank of a torchrun job (then rank 0 makes the folder and reports)."""
    with distributed.session() as ctx:
        if not ctx.is_main:
            console = Console(quiet=True)
        trainer, run_dir = distributed.agree(
            ctx, lambda: _setup_training(config, overrides, resume, overwrite, name, console, ctx.is_main))
        # Rank 0 picked the (timestamped) folder name; the others must use the very same folder.
        return trainer.fit(distributed.broadcast(ctx, run_dir))


def _setup_training(config: Path | None, overrides: list[str], resume: Path | None, overwrite: bool,
                    name: str | None, console: Console, is_main: bool) -> tuple[Any, Path | None]:
    """The trainer and its run folder (made by the main process only; None elsewhere)."""
    from attnlm.training import Trainer

    if name:
        overrides = [*overrides, f"log.name={name}"]
    if resume is not None:
        if overwrite:
            raise UserError("--resume continues a run and --overwrite replaces one; pick one")
        last = Path(resume) / "checkpoints" / "last.pt"
        if not Path(resume).is_dir():
            raise UserError(f"run folder not found: {resume}; `attnlm runs` lists the runs")
        if not last.is_file():
            raise UserError(f"{resume} has no checkpoints/last.pt to resume from (it was stopped before its first "
                            "checkpoint); start it afresh with --config FILE --overwrite")
        if is_main:
            lock_run(Path(resume))  # before reading last.pt: a live run could be rewriting it
        payload = load_checkpoint(last)
        saved = config_from_dict(payload["config"])
        cfg = load_config(config, overrides, base=None if config else saved)
        if cfg.model != saved.model:
            diff = [k for k in vars(cfg.model) if getattr(cfg.model, k) != getattr(saved.model, k)]
            raise UserError(f"{last} was trained with a different model shape ({', '.join('model.' + k for k in diff)} "
                            "differ); resume with the run's own config or start a new run")
        return Trainer(cfg, console, resume=payload), Path(resume)
    if config is None:
        raise UserError("give --config FILE (e.g. configs/tiny.yaml) or --resume RUN_DIR")
    cfg = load_config(config, overrides)
    trainer = Trainer(cfg, console)  # loads and checks the data before any folder is made
    if not is_main:
        return trainer, None
    run_dir = new_run_dir(cfg.log.dir, cfg.log.name, cfg.log.timestamp, overwrite)
    lock_run(run_dir)
    write_run_info(trainer.cfg, run_dir)
    return trainer, run_dir


def default_prompt(chars: str) -> str:
    return "\n" if "\n" in chars else chars[0]


def sample(*, run: str | None, checkpoint: str | None, prompt: str | None, max_new_tokens: int,
           opts: SamplingOptions, num_samples: int, seed: int, device_name: str, use_cache: bool = True) -> None:
    opts.check()
    if max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    if num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {num_samples}")
    if prompt == "":
        raise UserError("--prompt is empty; give at least one character, or leave it out to start from a newline")
    device = resolve_device(device_name)
    model, vocab, _, _ = load_model(resolve_checkpoint(run, checkpoint), device)
    prompt = default_prompt(vocab.chars) if prompt is None else prompt
    check_known(prompt, vocab, "the prompt", "remove them or train on text that has them")
    generator = torch.Generator().manual_seed(seed)

    def emit(token: int) -> None:
        sys.stdout.write(vocab.chars[token])
        sys.stdout.flush()

    for i in range(num_samples):
        if i:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        sys.stdout.write(prompt)
        generate(model, vocab.encode(prompt), max_new_tokens, opts, generator, use_cache=use_cache, on_token=emit)
    sys.stdout.write("\n")
    sys.stdout.flush()


def eval_(*, run: str | None, checkpoint: str | None, data: Path | None, device_name: str, console: Console) -> None:
    device = resolve_device(device_name)
    path = resolve_checkpoint(run, checkpoint)
    model, vocab, cfg, _ = load_model(path, device)
    if data is not None:
        ids = vocab.encode(read_text(data))
        if len(ids) < 2:
            raise UserError(f"{data} is too short to evaluate; give at least two characters")
        what = str(data)
    else:
        ids = load_corpus(cfg.data.path, cfg.data.val_fraction, cfg.model.block_size, vocab).val
        what = f"validation split of {cfg.data.path}"
    result = summarise(*evaluate(model, ids, cfg.train.eval_batch_size, device))
    console.print(f"{path} on {what} ({result.tokens:,} predictions):", highlight=False)
    console.print(f"  val loss   {result.loss:.4f}\n  perplexity {result.perplexity:.3f}\n"
                  f"  accuracy   {result.accuracy:.4f}", highlight=False)


def runs(*, root: Path, console: Console) -> None:
    folders = list_run_dirs(root)
    if not folders:
        console.print(f"no runs under {root}/ yet; start one with `attnlm train --config configs/tiny.yaml`")
        return
    table = Table(title=f"runs in {root}/")
    table.add_column("run", no_wrap=True)
    for column in ("epochs", "steps", "best val", "time"):
        table.add_column(column, justify="right")
    table.add_column("status")
    for folder in folders:
        s = summarise_run(folder)
        best = f"{s.best_val:.4f}" if s.best_val is not None else "-"
        table.add_row(folder.name, str(s.epochs), str(s.steps), best, f"{s.seconds:.1f}s",
                      "finished" if s.finished else "resumable" if s.steps else "no epoch yet")
    console.print(table)
