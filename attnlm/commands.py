"""What each CLI command does; the CLI module only parses arguments and calls these."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from attnlm import api
from attnlm.config import load_config
from attnlm.data import prepare_sources
from attnlm.data.sources import describe
from attnlm.device import resolve_device
from attnlm.errors import UnknownCharacters, UserError
from attnlm.runs import list_run_dirs, resolve_checkpoint
from attnlm.runs import summarise as summarise_run
from attnlm.sampling import SamplingOptions, check_request
from attnlm.terminal import print_fitting
from attnlm.text import listed


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
    check_request(opts, max_new_tokens, num_samples, prompt, device_name)
    device = resolve_device(device_name, "--device")  # before any loading: a typo costs nothing
    model = api.load(resolve_checkpoint(run, checkpoint), device=device)
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


def eval_(*, run: str | None, checkpoint: str | None, data: list[str] | None, device_name: str, console: Console,
          full: bool = False) -> None:
    device = resolve_device(device_name, "--device")
    model = api.load(resolve_checkpoint(run, checkpoint), device=device)
    if data:
        try:
            result = model.evaluate(data=data, full=full)
        except UnknownCharacters as e:  # name the file: the model's own message cannot know it
            raise UserError(f"--data {describe(data)} has characters the model never saw: {listed(e.missing)}; "
                            "evaluate on text written in the characters the model was trained on") from None
        what = describe(data)
    else:
        result, what = model.evaluate(full=full), f"validation split of {describe(model.config.data.path)}"
    if result.subset is not None:
        what += f", {result.subset}; --full for all"
    console.print(f"{model.source} on {what} ({result.tokens:,} predictions):", highlight=False)
    console.print(f"  val loss   {result.loss:.4f}\n  perplexity {result.perplexity:.3f}\n"
                  f"  accuracy   {result.accuracy:.4f}", highlight=False)


def data_prepare(*, sources: list[str], config: Path | None, overrides: list[str], out: Path | None,
                 console: Console) -> None:
    """Prepare sources (or a config's data.path) as training would, into the cache or into `out`."""
    cfg = load_config(config, overrides)
    d = cfg.data
    spec = sources or d.path
    if not sources and config is None:
        raise UserError("give the text to prepare (files, folders or globs), or --config FILE to prepare its data.path")
    started = time.perf_counter()
    prepared = prepare_sources(spec, d.val_fraction, separator=d.separator, cache_dir=d.cache_dir, out=out,
                               log=lambda line: console.print(line, highlight=False))
    meta, seconds = prepared.meta, time.perf_counter() - started
    docs, skipped = len(meta["documents"]), len(meta["skipped"])
    skipped_note = f" ({skipped:,} other file{'s' * (skipped != 1)} skipped)" if skipped else ""
    size = sum((prepared.folder / f"{split}.bin").stat().st_size for split in ("train", "val"))
    status = (f"prepared in {seconds:.1f}s ({meta['bytes'] / 1e6 / max(seconds, 1e-9):.1f} MB/s)" if prepared.fresh
              else "already prepared (the sources are unchanged)")
    where = (f"in {prepared.folder} ({size / 1e6:,.1f} MB); train on it with --set data.path={prepared.folder}"
             if out is not None else f"cached in {prepared.folder} ({size / 1e6:,.1f} MB); training on "
             "these sources with these settings reuses it")
    console.print(
        f"{describe(spec)}: {status}\n"
        f"  {meta['characters']:,} characters in {docs:,} document{'s' * (docs != 1)}"
        f"{skipped_note}; vocabulary of {len(meta['vocab']):,} "
        f"({meta['dtype']})\n"
        f"  {meta['train']:,} train / {meta['val']:,} val characters (the last {meta['val_fraction'] * 100:g}% of "
        f"each document)\n  {where}", highlight=False)


def export(*, run: Path, out: Path | None, console: Console) -> None:
    from attnlm.export import WEIGHTS, default_out
    from attnlm.export import export as write_export

    if not run.exists():
        raise UserError(f"run folder or checkpoint not found: {run}; `attnlm runs` lists the runs")
    checkpoint = resolve_checkpoint(str(run), None) if run.is_dir() else run
    out = out or default_out(run)
    meta = write_export(checkpoint, out)
    source = meta["source"]
    what = f"step {source['step']}" + (f", val loss {source['val_loss']:.4f}" if source["val_loss"] is not None else "")
    console.print(f"exported {checkpoint} ({what}) to {out}: {WEIGHTS} "
                  f"({(out / WEIGHTS).stat().st_size / 1e6:.2f} MB), config.json, vocab.json, model.py", highlight=False)


def runs(*, root: Path, console: Console, run: Path | None = None) -> None:
    if run is not None:
        run_detail(run, console)
        return
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


def run_detail(folder: Path, console: Console) -> None:
    """One run: its epoch table as training printed it (Observation included) and what each head learned."""
    import dataclasses

    from attnlm.inspect.attention_stats import measure
    from attnlm.probe import epoch_files, load_epoch
    from attnlm.report import EpochStats, EpochTable
    from attnlm.runs import read_metrics

    if not (folder / "checkpoints").is_dir():
        raise UserError(f"{folder} is not a run folder (it has no checkpoints/); `attnlm runs` lists the runs")
    s = summarise_run(folder)
    best = f", best val loss {s.best_val:.4f}" if s.best_val is not None else ""
    status = "finished" if s.finished else "resumable" if s.steps else "no epoch yet"
    console.print(f"run {folder}: {status}, {s.epochs} epochs, {s.steps} steps{best}, {s.seconds:.1f}s", highlight=False)
    names = {f.name for f in dataclasses.fields(EpochStats)}
    rows = [r for r in read_metrics(folder) if r.get("kind") == "epoch"]
    if rows:
        table = EpochTable(console)
        for row in rows:
            stats = EpochStats(**{k: v for k, v in row.items() if k in names})
            table.add(stats, stats.observation)
    files = epoch_files(folder)
    if not files:
        return
    epoch, path = max(files.items())
    saved = load_epoch(path)
    if len(saved.text) < 2:
        return
    console.print(f"\nwhat attention learned by epoch {epoch}, on the probe {saved.text!r}:", highlight=False)
    for head in measure(saved.weights, saved.text).heads:
        console.print(f"  {head.summary()}", highlight=False)
