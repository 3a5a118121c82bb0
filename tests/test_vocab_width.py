"""Token ids are stored in the narrowest unsigned type that holds every id of the vocabulary: one byte up to
256 characters (ids 0..255), two up to 65536, four beyond. At each edge a corpus prepared through the real data
path (files on disk, the cache, memory-mapped ids) decodes back to exactly its text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attnlm.data import Vocab, load_corpus, prepare_sources
from attnlm.data.memmap import read_meta

# Characters a text file can hold as they are: no NUL (a binary file), no \r (\r\n is read as \n), no
# byte-order mark (dropped at the start of a file) and no surrogates (not encodable in UTF-8).
SKIP = {0x00, 0x0D, 0xFEFF, *range(0xD800, 0xE000)}


def distinct_chars(n: int) -> str:
    """n distinct characters: \\t, \\n, printable ASCII, then on through the BMP and past it as needed."""
    out: list[str] = []
    code = 0x09
    while len(out) < n:
        if code not in SKIP:
            out.append(chr(code))
        code += 1
    return "".join(out)


def corpus_text(n: int) -> str:
    """A text of exactly n distinct characters, each in both halves (train and validation), with a long ASCII
    run first (it is read as bytes, a faster encoding path) and the largest id at both ends of a split."""
    chars = distinct_chars(n)
    assert len(set(chars)) == n
    ascii_run = "the quick brown fox jumps over the lazy dog\n" * 20
    top = chars[-1]
    return ascii_run + top + chars + top + chars[::-1] + top + ascii_run + top


def narrowest(n: int) -> np.dtype:
    return np.dtype(np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.uint32)


@pytest.mark.parametrize(("n", "dtype"), [(2, np.uint8), (255, np.uint8), (256, np.uint8), (257, np.uint16),
                                          (65535, np.uint16), (65536, np.uint16), (65537, np.uint32)])
def test_the_id_type_is_the_narrowest_that_holds_the_largest_id(n: int, dtype: type) -> None:
    vocab = Vocab(distinct_chars(n))
    assert vocab.size == n and vocab.dtype == np.dtype(dtype)
    assert np.iinfo(vocab.dtype).max >= n - 1  # the largest id fits
    if vocab.dtype != np.uint8:  # and one byte fewer would not do
        assert np.iinfo(np.dtype(f"uint{vocab.dtype.itemsize * 4}")).max < n - 1


@pytest.mark.parametrize("n", [255, 256, 257, 65535, 65536, 65537])
def test_a_prepared_corpus_at_each_width_edge_decodes_to_its_text(tmp_path: Path, n: int) -> None:
    text = corpus_text(n)
    path = tmp_path / "edge.txt"
    path.write_text(text, encoding="utf-8", newline="")
    cache = tmp_path / "cache"
    # Small chunks: the ASCII run, the multi-byte characters and the cuts between them land in several chunks.
    corpus = load_corpus(path, 0.5, cache_dir=cache, chunk_bytes=4096)
    assert corpus.vocab.size == n and corpus.vocab.chars == "".join(sorted(set(text)))
    assert corpus.train.dtype == torch.from_numpy(np.zeros(1, narrowest(n))).dtype
    assert corpus.meta is not None and np.dtype(corpus.meta["dtype"]) == narrowest(n)
    assert corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.val) == text
    n_val = int(len(text) * 0.5)
    assert (len(corpus.train), len(corpus.val)) == (len(text) - n_val, n_val)
    top = torch.cat((corpus.train, corpus.val)).long().max().item()
    assert top == n - 1 and np.iinfo(np.dtype(corpus.meta["dtype"])).max >= top
    # The files on disk are exactly that many ids of that width, and a second load maps the same ids.
    folder = corpus.folder
    assert folder is not None and read_meta(folder) is not None
    width = narrowest(n).itemsize
    assert (folder / "train.bin").stat().st_size == len(corpus.train) * width
    again = load_corpus(path, 0.5, cache_dir=cache)
    assert again.folder == folder and torch.equal(again.train, corpus.train) and torch.equal(again.val, corpus.val)


@pytest.mark.parametrize("n", [256, 257])
def test_ids_written_to_a_folder_of_ones_own_round_trip(tmp_path: Path, n: int) -> None:
    """`prepare_sources(..., out=)` (attnlm data prepare) writes the same narrow ids, read back by load_corpus."""
    text = corpus_text(n)
    path = tmp_path / "edge.txt"
    path.write_text(text, encoding="utf-8", newline="")
    prepared = prepare_sources(path, 0.25, out=tmp_path / "prepared", progress=False)
    assert np.dtype(prepared.meta["dtype"]) == narrowest(n)
    corpus = load_corpus(tmp_path / "prepared", 0.25)
    assert corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.val) == text


@pytest.mark.parametrize("n", [255, 256, 257, 65536, 65537])
def test_encoding_a_text_with_the_vocabulary_round_trips_at_each_width_edge(n: int) -> None:
    text = corpus_text(n)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert int(ids.max()) == n - 1 and vocab.decode(ids) == text
