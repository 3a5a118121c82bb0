"""What each CLI command does; the CLI module only parses arguments and calls these."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from attnlm import api
from attnlm.data import read_text
from attnlm.errors import UserError
from attnlm.generation import SamplingOptions
from attnlm.runs import list_run_dirs, resolve_checkpoint
from attnlm.runs import summarise as summarise_run
from attnlm.terminal import print_fitting
from attnlm.text import check_known


def train(*, config: Path | None, overrides: list[str], resume: Path | None, overwrite: bool,
          name: str | None, console: Console) -> int:
    """Train in this process, or as one rank of a torchrun job (then rank 0 makes the folder and reports)."""
    if resume is not None:
        if overwrite:
            raise UserError("--resume continues a run and --overwrite replaces one; pick one")
        overrides = [*overrides, f"log.name={name}"] if name else overrides
        run = api.resume(resume, overrides, config=config, console=console, exit_on_second_interrupt=True)
    else:
        if config is None:
            raise UserError("give --config FILE (e.g. configs/tiny.yaml) or --resume RUN_DIR")
        run = api.train(config, overrides, name=name, overwrite=overwrite, console=console,
                        exit_on_second_interrupt=True)
    return run.exit_code


def sample(*, run: str | None, checkpoint: str | None, prompt: str | None, max_new_tokens: int,
           opts: SamplingOptions, num_samples: int, seed: int, device_name: str, use_cache: bool = True) -> None:
    opts.check()
    if max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    if num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {num_samples}")
    if prompt == "":
        raise UserError("--prompt is empty; give at least one character, or leave it out to start from a newline")
    model = api.load(resolve_checkpoint(run, checkpoint), device=device_name)
    prompt = api.default_prompt(model.vocab.chars) if prompt is None else prompt
    model.encode(prompt, "the prompt", "remove them or train on text that has them")
    generator = torch.Generator().manual_seed(seed)  # one stream through all the samples

    def emit(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    for i in range(num_samples):
        if i:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        sys.stdout.write(prompt)
        model.generate(prompt, max_new_tokens, opts.temperature, opts.top_k, opts.top_p, use_cache=use_cache,
                       on_text=emit, generator=generator)
    sys.stdout.write("\n")
    sys.stdout.flush()


def eval_(*, run: str | None, checkpoint: str | None, data: Path | None, device_name: str, console: Console) -> None:
    model = api.load(resolve_checkpoint(run, checkpoint), device=device_name)
    if data is not None:
        text = read_text(data)
        check_known(text, model.vocab, f"--data {data}", "evaluate on text written in the characters the model "
                    "was trained on")
        if len(text) < 2:
            raise UserError(f"{data} is too short to evaluate; give at least two characters")
        result, what = model.evaluate(text), str(data)
    else:
        result, what = model.evaluate(), f"validation split of {model.config.data.path}"
    console.print(f"{model.source} on {what} ({result.tokens:,} predictions):", highlight=False)
    console.print(f"  val loss   {result.loss:.4f}\n  perplexity {result.perplexity:.3f}\n"
                  f"  accuracy   {result.accuracy:.4f}", highlight=False)


def runs(*, root: Path, console: Console) -> None:
    folders = list_run_dirs(root)
    if not folders:
        console.print(f"no runs under {root}/ yet; start one with `attnlm train --config configs/tiny.yaml`")
        return
    rows = []
    for folder in folders:
        s = summarise_run(folder)
        rows.append((folder.name, str(s.epochs), str(s.steps), f"{s.best_val:.4f}" if s.best_val is not None else "-",
                     f"{s.seconds:.1f}s", "finished" if s.finished else "resumable" if s.steps else "no epoch yet"))
    # Boxed where it fits; then without the box; then one run per two lines, so a narrow terminal still
    # shows every name and number whole.
    boxed = Table(title=f"runs in {root}/")
    plain = Table(title=f"runs in {root}/", title_justify="left", box=None, pad_edge=False)
    for table in (boxed, plain):
        table.add_column("run", no_wrap=True)
        for column in ("epochs", "steps", "best val", "time"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("status", no_wrap=True)
        for row in rows:
            table.add_row(*row)
    lines = [Text(f"runs in {root}/")]
    for name, epochs, steps, best, seconds, status in rows:
        plural = "s" if epochs != "1" else ""
        lines += [Text(name, style="bold", no_wrap=True, overflow="ignore"),
                  Text(f"  {epochs} epoch{plural}, {steps} steps, best val {best}, {seconds}, {status}")]
    stacked = Group(*lines)
    print_fitting(console, [boxed, plain, stacked])
