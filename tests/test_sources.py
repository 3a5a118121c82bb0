"""Sources in any layout: folders, globs and lists, files that are not text, the per-document split, and
the id width chosen by vocabulary size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attnlm.data import Vocab, load_corpus, read_text
from attnlm.data.sources import read_chunks
from attnlm.errors import UserError

SEP = "\n\n"


def make_tree(root: Path) -> dict[str, str]:
    """A folder of text files, with a subfolder, a hidden file and three files that are not text."""
    texts = {"b.txt": "the quick brown fox jumps over the lazy dog\n" * 3,
             "sub/a.md": "Pack my box with five dozen liquor jugs.\n" * 2}
    for name, text in texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / ".notes.txt").write_text("hidden: never read\n", encoding="utf-8")
    (root / "latin1.txt").write_bytes("Café au lait\n".encode("latin-1"))
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "empty.txt").write_bytes(b"")
    return texts


def expected_splits(docs: list[str], val_fraction: float) -> tuple[str, str]:
    cuts = [len(d) - int(len(d) * val_fraction) for d in docs]
    return SEP.join(d[:c] for d, c in zip(docs, cuts, strict=True)), SEP.join(d[c:] for d, c in zip(docs, cuts, strict=True))


def test_folder_glob_and_list_sources_and_the_split_of_each_document(tmp_path: Path) -> None:
    root = tmp_path / "texts"
    texts = make_tree(root)
    cache = tmp_path / "cache"
    lines: list[str] = []
    corpus = load_corpus(root, 0.2, block_size=8, cache_dir=cache, log=lines.append)
    # Every file under the folder, recursively, in sorted order ("b.txt" < "sub/a.md"); hidden ones left out.
    train, val = expected_splits([texts["b.txt"], texts["sub/a.md"]], 0.2)
    assert corpus.vocab.decode(corpus.train) == train and corpus.vocab.decode(corpus.val) == val
    assert corpus.vocab == Vocab.from_text(train + val)
    assert lines == [f"skipping {root / 'empty.txt'}: it is empty",
                     f"skipping {root / 'image.png'}: it is not UTF-8 text (bad byte at offset 0)",
                     f"skipping {root / 'latin1.txt'}: it is not UTF-8 text (bad byte at offset 3)",
                     f"{root}: 3 files skipped (listed above), 2 read"]

    glob = load_corpus(f"{root}/**/*.md", 0.2, cache_dir=cache)
    assert glob.vocab.decode(glob.val) == expected_splits([texts["sub/a.md"]], 0.2)[1]
    # A list keeps its order; a file named twice is read once.
    listed = load_corpus([str(root / "sub"), str(root / "b.txt"), str(root / "sub" / "a.md")], 0.2, cache_dir=cache)
    assert listed.vocab.decode(listed.train) == expected_splits([texts["sub/a.md"], texts["b.txt"]], 0.2)[0]

    with pytest.raises(UserError, match=r"no text left in .*: every file was skipped"):
        load_corpus(f"{root}/*.png", 0.2, cache_dir=cache, log=lines.append)
    with pytest.raises(UserError, match=r"pattern .*\*\.rst matches no files"):
        load_corpus(f"{root}/*.rst", 0.2, cache_dir=cache)
    with pytest.raises(UserError, match=r"the validation split of .* fewer than block_size \+ 1 = 65"):
        load_corpus(root, 0.2, block_size=64, cache_dir=cache)


def test_a_single_file_is_read_and_split_as_one_text(small_corpus: Path) -> None:
    """The ids, vocabulary and split of one file are exactly those of encoding the whole text at once."""
    text = read_text(small_corpus)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    n_val = int(len(ids) * 0.1)
    corpus = load_corpus(small_corpus, 0.1, block_size=32)
    assert corpus.vocab == vocab and corpus.train.dtype == torch.uint8
    assert torch.equal(corpus.train.long(), ids[:-n_val]) and torch.equal(corpus.val.long(), ids[-n_val:])


def test_chunks_split_anywhere_read_the_same_text(tmp_path: Path) -> None:
    """A \\r\\n or a multi-byte character cut by a chunk boundary; ASCII chunks come as bytes, others as str."""
    path = tmp_path / "mixed.txt"
    path.write_bytes(("ab\r\ncé\r\n" * 300 + "ascii only " * 50 + "end\r").encode("utf-8"))
    chunks = list(read_chunks(path, chunk_bytes=7))
    assert {type(c) for c in chunks} == {str, bytes}
    assert "".join(c if isinstance(c, str) else c.decode() for c in chunks) == read_text(path)
    assert read_text(path) == "ab\ncé\n" * 300 + "ascii only " * 50 + "end\r"


@pytest.mark.parametrize(("first", "count", "dtype"), [(0x20, 90, np.uint8), (0x100, 300, np.uint16),
                                                       (0x10000, 70_000, np.uint32)])
def test_ids_are_as_narrow_as_the_vocabulary_allows(tmp_path: Path, first: int, count: int, dtype: type) -> None:
    chars = "".join(chr(first + i) for i in range(count))  # 0x10000 on: outside the 16-bit plane
    text = "ab\n" + chars + chars[::-1] + "\n"
    path = tmp_path / "chars.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(path, 0.5, cache_dir=tmp_path / "cache")
    assert corpus.vocab.size == len(set(text)) and corpus.train.dtype == torch.from_numpy(np.zeros(1, dtype)).dtype
    assert corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.val) == text


def test_a_models_vocabulary_is_imposed_and_unknown_characters_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("abba cab\n" * 20, encoding="utf-8")
    wide = Vocab("\n abcdz")  # a checkpoint's vocabulary: a superset, so the ids differ from the text's own
    corpus = load_corpus(path, 0.1, vocab=wide, cache_dir=tmp_path / "cache")
    assert corpus.vocab == wide and torch.equal(corpus.val.long(), wide.encode("abba cab\n" * 20)[-18:])
    with pytest.raises(UserError, match=r"t\.txt has characters the model never saw: 'c'; use only characters"):
        load_corpus(path, 0.1, vocab=Vocab("\n ab"), cache_dir=tmp_path / "cache")
