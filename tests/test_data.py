"""Vocabulary, split, batches and evaluation windows on small real text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnlm.data import BatchSampler, Vocab, eval_windows, load_corpus, read_text
from attnlm.errors import UserError


def test_vocab_is_sorted_characters_and_round_trips() -> None:
    vocab = Vocab.from_text("hello, wörld\n")
    assert vocab.chars == "".join(sorted(set("hello, wörld\n")))
    text = "world, hello"
    assert vocab.decode(vocab.encode(text)) == text
    with pytest.raises(UserError, match="'z'"):
        vocab.encode("zzz")


def test_split_takes_the_last_fraction_as_validation(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(path, 0.1, block_size=8)
    assert len(corpus.train) == 900 and len(corpus.val) == 100
    assert corpus.vocab.decode(corpus.val) == text[900:]
    assert corpus.vocab.decode(corpus.train) == text[:900]


def test_windows_crlf_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"ab\r\ncd\r\n")
    assert read_text(path) == "ab\ncd\n"
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(UserError, match="not UTF-8"):
        read_text(tmp_path / "bin.txt")
    path.write_text("short text", encoding="utf-8")
    with pytest.raises(UserError, match="fewer than block_size"):
        load_corpus(path, 0.1, block_size=64)


def test_batches_are_shifted_windows_and_seeded(small_corpus: Path) -> None:
    corpus = load_corpus(small_corpus, 0.1, block_size=16)
    a = BatchSampler(corpus.train, 16, 8, seed=5)
    b = BatchSampler(corpus.train, 16, 8, seed=5)
    x, y = a.next()
    x2, y2 = b.next()
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert torch.equal(x[:, 1:], y[:, :-1])  # the target is the next character
    state = a.state()
    after = a.next()
    a.set_state(state)
    assert torch.equal(a.next()[0], after[0])


def test_eval_windows_cover_every_prediction_once() -> None:
    data = torch.arange(50)
    xs, ys = zip(*eval_windows(data, block_size=8, batch_size=2), strict=True)
    x = torch.cat([t.flatten() for t in xs])
    y = torch.cat([t.flatten() for t in ys])
    assert torch.equal(x, data[:-1]) and torch.equal(y, data[1:])
