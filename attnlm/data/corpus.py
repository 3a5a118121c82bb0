"""The front door of the data layer: sources in, a memory-mapped corpus out, prepared on first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlm.data.cache import Cache, default_cache_dir, fingerprints, key, lineage, write_folder
from attnlm.data.memmap import Corpus, open_prepared, read_meta
from attnlm.data.prepare import Log, Scan, check_vocab, encode, log_to_stderr, scan, split_sizes
from attnlm.data.sources import CHUNK_BYTES, Spec, describe, entries, resolve
from attnlm.data.vocab import Vocab, check_known
from attnlm.errors import UserError

FIX_UNKNOWN = "use only characters from its vocabulary"

ANNOUNCE_BYTES = 16 << 20  # preparing less is over too fast to be worth a line


@dataclass
class Prepared:
    folder: Path
    meta: dict[str, Any]
    fresh: bool  # prepared by this call, not found ready


def check_splits(what: str, n_train: int | None, n_val: int, block_size: int | None) -> None:
    if block_size is None:
        return
    for name, n in (("training", n_train), ("validation", n_val)):
        if n is not None and n < block_size + 1:
            raise UserError(
                f"the {name} split of {what} has {n} characters, fewer than block_size + 1 = {block_size + 1}; "
                "use more text, a smaller model.block_size or another data.val_fraction"
            )


def _check_scan(found: Scan, strict: bool, what: str, separator: str) -> None:
    if not found.documents:
        raise UserError(f"no text left in {what}: every file was skipped (see above); give UTF-8 text files")
    if len(found.vocab_chars(separator)) < 2:
        name = f"data file {what}" if strict else f"the text of {what}"
        raise UserError(f"{name} has a single distinct character; there is nothing to learn from it")


def prepare_sources(spec: Spec, val_fraction: float, *, separator: str = "\n\n", vocab: Vocab | None = None,
                    cache_dir: str | Path | None = None, out: Path | None = None, block_size: int | None = None,
                    chunk_bytes: int = CHUNK_BYTES, log: Log = log_to_stderr, progress: bool = True) -> Prepared:
    """The prepared folder for `spec`: given as one, found in the cache, or prepared now (into the cache,
    or into `out`). With `vocab` (a checkpoint's) the text is encoded against it; with `block_size` both
    splits must hold a window, checked before anything is written."""
    what = describe(spec)
    items = entries(spec)
    for item in items:
        meta = read_meta(Path(item))
        if meta is not None:
            if len(items) > 1 or out is not None:
                raise UserError(f"{item} is already prepared; give it alone as data.path, not with other sources")
            return Prepared(Path(item), meta, fresh=False)
    found_files = resolve(spec)
    files, strict = found_files.files, found_files.single
    line = lineage(files, separator, val_fraction)
    prints = fingerprints(files)
    natural = key(line, prints, None)
    cache = Cache(Path(cache_dir) if cache_dir is not None else default_cache_dir(), Path(items[0]).name)

    def lookup() -> Prepared | None:
        hit = cache.find(natural)
        if hit is not None and vocab is not None and hit[1]["vocab"] != vocab.chars:
            check_known(hit[1]["vocab"], vocab, what, FIX_UNKNOWN)
            hit = cache.find(key(line, prints, vocab.chars))
        elif hit is None and vocab is not None:
            hit = cache.find(key(line, prints, vocab.chars))
        if hit is None:
            return None
        check_splits(what, hit[1]["train"] if val_fraction < 1 else None, hit[1]["val"], block_size)
        return Prepared(*hit, fresh=False)

    def first_pass() -> tuple[Scan, Vocab, int]:
        """What was found, the vocabulary, and the bytes its ids take on disk."""
        found = scan(files, strict, chunk_bytes=chunk_bytes, log=log, progress=progress, skipped=found_files.skipped)
        _check_scan(found, strict, what, separator)
        use = check_vocab(found, separator, vocab, what)
        _, n_train, n_val = split_sizes(found, val_fraction, separator)
        check_splits(what, n_train if val_fraction < 1 else None, n_val, block_size)
        return found, use, (n_train + n_val) * use.dtype.itemsize

    def extra(k: str, imposed: str | None = None) -> dict[str, Any]:
        # "imposed": the vocabulary of the model the text was encoded for, when not the text's own.
        return {"lineage": line, "key": k, "imposed_vocab": imposed, "sources": items}

    if out is not None:
        found, use, size = first_pass()
        meta = write_folder(out, lambda tmp: encode(found, use, val_fraction, separator, tmp, chunk_bytes=chunk_bytes,
                                                     progress=progress, extra=extra(natural)), size)
        return Prepared(out, meta, fresh=True)
    ready = lookup()
    if ready is not None:
        return ready
    with cache.lock(line):
        ready = lookup()  # another process (a torchrun rank) may have prepared it while this one waited
        if ready is not None:
            return ready
        found, use, size = first_pass()
        imposed = None if use.chars == found.vocab_chars(separator) else use.chars
        k = key(line, prints, imposed)
        folder, meta = cache.build(k, line, lambda tmp: encode(found, use, val_fraction, separator, tmp,
                                                               chunk_bytes=chunk_bytes, progress=progress,
                                                               extra=extra(k, imposed)), size)
    return Prepared(folder, meta, fresh=True)


def load_corpus(spec: Spec, val_fraction: float, block_size: int | None = None, vocab: Vocab | None = None, *,
                separator: str = "\n\n", cache_dir: str | Path | None = None, log: Log = log_to_stderr,
                chunk_bytes: int = CHUNK_BYTES) -> Corpus:
    """The corpus of `spec` (a file, folder, glob, prepared folder or a list of them), memory-mapped.

    The last `val_fraction` of each document is validation. With `vocab` (from a checkpoint) the text must
    fit that vocabulary. With `block_size` each split must be longer than one window.
    """
    prepared = prepare_sources(spec, val_fraction, separator=separator, vocab=vocab, cache_dir=cache_dir,
                               block_size=block_size, chunk_bytes=chunk_bytes, log=log)
    corpus = open_prepared(prepared.folder, prepared.meta)
    what = describe(spec)
    meta = prepared.meta
    if prepared.fresh and meta["skipped"]:
        n = len(meta["skipped"])
        log(f"{what}: {n} file{'s' * (n != 1)} skipped (listed above), {len(meta['documents'])} read")
    if prepared.fresh and meta["bytes"] >= ANNOUNCE_BYTES:
        log(f"prepared {what} in {meta['seconds']:.1f}s ({meta['bytes'] / 1e6 / max(meta['seconds'], 1e-9):.0f} MB/s) "
            f"into {prepared.folder}; reused while the files stay unchanged")
    if vocab is not None and corpus.vocab != vocab:  # only a folder prepared beforehand can differ here
        check_known(corpus.vocab.chars, vocab, what, FIX_UNKNOWN)
        raise UserError(f"{what} was prepared with a vocabulary other than the model's; give data.path its source "
                        "text instead, which is then encoded with the model's vocabulary")
    check_splits(what, len(corpus.train) if val_fraction < 1 else None, len(corpus.val), block_size)
    return corpus
