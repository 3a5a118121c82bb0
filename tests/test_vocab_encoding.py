"""The vocabulary, its chunked encoder and character gatherer against the one-line definitions they speed up
(a character's id is its index in the sorted characters; the characters of a text are set(text)), over any
text hypothesis makes: ASCII, the rest of the Basic Multilingual Plane, and code points above it. Also the
one line that refuses unknown characters in a user's text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from attnlm.data.vocab import MAX_LISTED, CharSet, Encoder, Vocab, check_known, encode_checked, listed
from attnlm.errors import ArgumentValueError, UnknownCharacters

# Characters from every path: ASCII (bytes.translate), other BMP (lookup table), astral (sorted search).
CHARS = st.one_of(st.characters(max_codepoint=127), st.characters(min_codepoint=128, max_codepoint=0xFFFF,
                                                                  exclude_categories=("Cs",)),
                  st.characters(min_codepoint=0x10000))
TEXT = st.text(CHARS, min_size=1, max_size=60)


def by_definition(vocab: Vocab, text: str) -> list[int]:
    return [vocab.chars.index(c) for c in text]


@given(TEXT)
@example("hello")
@example("\x00\x7f")
@example("é")
@example("a\U0001F600b")
@example("\U0001F600")
def test_a_vocabulary_is_the_sorted_distinct_characters_and_encodes_each_to_its_index(text: str) -> None:
    vocab = Vocab.from_text(text)
    assert vocab.chars == "".join(sorted(set(text))) and vocab.size == len(set(text))
    ids = Encoder(vocab)(text)
    assert ids.dtype == vocab.dtype and ids.tolist() == by_definition(vocab, text)
    encoded = vocab.encode(text)
    assert encoded.dtype == torch.long and encoded.tolist() == by_definition(vocab, text)
    assert vocab.decode(encoded) == text == vocab.decode(encoded.tolist())


@given(TEXT, TEXT)
@example("b", "ab")
@example("\x80", "\x80\U0001F600a")
def test_a_text_encodes_the_same_with_a_larger_vocabulary_of_any_width(text: str, more: str) -> None:
    vocab = Vocab.from_text(text + more)
    assert Encoder(vocab)(text).tolist() == by_definition(vocab, text)


@given(st.text(st.characters(max_codepoint=127), min_size=1, max_size=60), st.integers(0, 400))
def test_ascii_bytes_encode_as_their_text_does_at_every_id_width(text: str, extra: int) -> None:
    """The preparation hands ASCII chunks over as bytes. With more than 256 characters the ids are two bytes
    wide and the ASCII path reads the lookup table instead of bytes.translate."""
    vocab = Vocab.from_text(text + "".join(chr(0x100 + i) for i in range(extra)))
    encoder = Encoder(vocab)
    assert encoder(text.encode("ascii")).tolist() == encoder(text).tolist() == by_definition(vocab, text)
    assert encoder(text).dtype == (np.uint8 if vocab.size <= 256 else np.uint16)


def test_an_empty_text_encodes_to_no_ids() -> None:
    encoded = Vocab("ab").encode("")
    assert encoded.dtype == torch.long and encoded.shape == (0,)


@given(st.lists(TEXT | st.text(st.characters(max_codepoint=127), min_size=1).map(str.encode), max_size=6),
       st.lists(TEXT, max_size=3))
@example([b"ba", "é", b"ab"], ["\U0001F600c"])
def test_gathered_characters_are_the_set_of_every_chunk_in_any_order(chunks: list, others: list[str]) -> None:
    gathered, other = CharSet(), CharSet()
    for chunk in chunks:
        gathered.add(chunk)
    for chunk in others:
        other.add(chunk)
    seen = {c for chunk in chunks for c in (chunk.decode("ascii") if isinstance(chunk, bytes) else chunk)}
    assert gathered.chars() == "".join(sorted(seen))
    gathered.update(other)
    assert gathered.chars() == "".join(sorted(seen | set("".join(others))))


@given(st.text(CHARS, max_size=30), TEXT)
def test_unknown_characters_are_those_outside_the_vocabulary_sorted_once_each(text: str, vocab_text: str) -> None:
    assert Vocab.from_text(vocab_text).unknown(text) == sorted(set(text) - set(vocab_text))


@pytest.mark.parametrize("count", [1, MAX_LISTED - 1, MAX_LISTED, MAX_LISTED + 1, 57])
def test_a_refusal_names_at_most_twenty_characters_and_counts_the_rest(count: int) -> None:
    chars = [chr(0x4E00 + i) for i in range(count)]
    shown = " ".join(repr(c) for c in chars[:MAX_LISTED])
    assert MAX_LISTED == 20
    assert listed(chars) == shown + (f" and {count - MAX_LISTED} more" if count > MAX_LISTED else "")
    with pytest.raises(UnknownCharacters) as refused:
        check_known("ab" + "".join(chars), Vocab("ab"), "the prompt", "remove them")
    assert str(refused.value) == f"the prompt has characters the model never saw: {listed(chars)}; remove them"
    assert refused.value.missing == chars


def test_encode_checked_refuses_empty_unknown_and_too_long_text_and_encodes_the_rest() -> None:
    vocab = Vocab("abc")
    assert encode_checked("cab", vocab, "--text", 3, empty_hint="give one").tolist() == [2, 0, 1]
    assert encode_checked("ab" * 50, vocab, "--text", empty_hint="give one").shape == (100,)  # no limit given
    with pytest.raises(ArgumentValueError, match=r"^--text is empty; give one$"):
        encode_checked("", vocab, "--text", 3, empty_hint="give one")
    with pytest.raises(UnknownCharacters, match=r"^--text has characters it never had: 'z'; fix it$"):
        encode_checked("az", vocab, "--text", 3, empty_hint="", fix="fix it", never_saw="it never had")
    with pytest.raises(UnknownCharacters, match=r"^--text has characters the model never saw: 'z'; use only "
                                                r"characters from its training text$"):
        encode_checked("az", vocab, "--text", 3, empty_hint="")
    with pytest.raises(ArgumentValueError, match=r"^--text has 4 characters but the model's context "
                                                 r"\(model\.block_size\) is 3; shorten it to at most 3 characters$"):
        encode_checked("abca", vocab, "--text", 3, empty_hint="")
    with pytest.raises(ArgumentValueError, match=r"^too long$"):
        encode_checked("abca", vocab, "--text", 3, empty_hint="", too_long="too long")
    with pytest.raises(UnknownCharacters, match=r"^text has characters the model never saw: 'z'; use only "
                                                r"characters from its vocabulary$"):
        vocab.encode("z")
