"""Observations on what attention learned: statistics and phrases from attention matrices built by hand,
the probe's per-epoch files, and the two-line Observation cell of the epoch table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from attnlm.data import Vocab
from attnlm.errors import UserError
from attnlm.inspection.attention_stats import AttentionStats, describe, measure
from attnlm.inspection.probe import default_probe, epoch_files, epoch_path, load_epoch, save_epoch
from attnlm.training.epoch_table import EpochStats, EpochTable, join_notes

TEXT = "to be or not to be, that is"  # T = 27, spaces at 2, 5, 8, 12, 15, 19, 24


def uniform(T: int) -> torch.Tensor:
    """Each query spreads its weight evenly over itself and every earlier character: (T, T)."""
    return torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]


def blend(pattern: torch.Tensor, share: float, T: int) -> torch.Tensor:
    """`share` of every row (but the first) on the pattern, the rest spread uniformly; rows sum to 1."""
    w = (1 - share) * uniform(T) + share * pattern
    w[0] = uniform(T)[0]
    return w


def previous_char(T: int) -> torch.Tensor:
    p = torch.zeros(T, T)
    p[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    return p


def last_space(text: str) -> torch.Tensor:
    """All weight on the last space before the query (where there is one), else on the query itself."""
    T = len(text)
    p = torch.eye(T)
    last = -1
    for i, c in enumerate(text):
        if last >= 0:
            p[i] = 0.0
            p[i, last] = 1.0
        if c == " ":
            last = i
    return p


def stack(*heads: torch.Tensor) -> torch.Tensor:
    """One layer of heads: (1, H, T, T)."""
    return torch.stack(heads)[None]


def test_entropy_distance_and_shares_of_known_matrices() -> None:
    T = len(TEXT)
    stats = measure(stack(uniform(T), previous_char(T), torch.eye(T)), TEXT)
    flat, prev, self_ = stats.heads
    # A uniform row i has entropy log2(i + 1) and looks back i / 2 characters on average.
    assert flat.entropy == pytest.approx(sum(math.log2(i + 1) for i in range(1, T)) / (T - 1))
    assert flat.distance == pytest.approx(sum(i / 2 for i in range(1, T)) / (T - 1))
    assert flat.prev == pytest.approx(sum(1 / (i + 1) for i in range(1, T)) / (T - 1))
    assert (prev.entropy, prev.distance, prev.prev, prev.self) == pytest.approx((0.0, 1.0, 1.0, 0.0))
    assert (self_.entropy, self_.distance, self_.self) == pytest.approx((0.0, 0.0, 1.0))
    assert [h.name for h in stats.heads] == ["head 0.0", "head 0.1", "head 0.2"]
    assert stats.entropy == pytest.approx(flat.entropy / 3)


def test_the_last_space_share_leaves_out_spaces_that_are_also_the_previous_character() -> None:
    stats = measure(stack(last_space(TEXT)), TEXT)
    [head] = stats.heads
    assert head.space == pytest.approx(1.0)  # on every row where the last space is not just behind
    assert head.prev < 0.3
    assert measure(stack(uniform(4)), "abcd").heads[0].space is None  # no space at all: no reading


def test_a_head_that_finds_a_pattern_is_named() -> None:
    T = len(TEXT)
    before = measure(stack(uniform(T), uniform(T)), TEXT)
    after = measure(stack(uniform(T), blend(previous_char(T), 0.8, T)), TEXT)
    assert describe(before, after) == "head 0.1 reads the previous char"
    spaces = measure(torch.stack([stack(uniform(T))[0], stack(blend(last_space(TEXT), 0.7, T))[0]]), TEXT)
    assert describe(before, spaces) == "head 1.0 reads the last space"
    first = torch.zeros(T, T)
    first[:, 0] = 1.0
    assert describe(None, measure(stack(first), TEXT)) == "head 0.0 rests on the first char"
    assert describe(None, measure(stack(torch.eye(T)), TEXT)) == "head 0.0 attends to itself"
    # A third each on itself and the two characters before it: no single character, but only nearby ones.
    near = sum(torch.diag(torch.ones(T - k), -k) for k in range(3))
    near = near / near.sum(-1, keepdim=True)
    [local] = measure(stack(near), TEXT).heads
    assert local.distance == pytest.approx((0 + 0.5 + 25 * 1.0) / 26) and local.prev < 0.5
    assert describe(before, measure(stack(near), TEXT)) == "head 0.0 looks only 1.0 chars back"
    assert describe(None, measure(stack(uniform(8)), "a b c de")) is None  # a uniform head on a short text is not local
    # Already there the epoch before: not news, and nothing else moved.
    assert describe(after, after) is None


def test_sharpening_and_spreading_are_reported_with_the_entropy() -> None:
    T = len(TEXT)
    broad = measure(stack(uniform(T)), TEXT)
    # A third of each row on the previous character: sharper, but below the pattern threshold.
    sharper = measure(stack(blend(previous_char(T), 0.35, T)), TEXT)
    assert sharper.heads[0].patterns() == {}
    phrase = describe(broad, sharper)
    assert phrase == f"attention sharpens: {broad.entropy:.1f}→{sharper.entropy:.1f} bits"
    assert describe(sharper, broad) == f"attention spreads: {sharper.entropy:.1f}→{broad.entropy:.1f} bits"
    assert describe(None, broad) is None  # the first epoch has nothing to compare with
    barely = measure(stack(blend(previous_char(T), 0.02, T)), TEXT)
    assert describe(broad, barely) is None
    assert len(phrase) <= 34


def test_measure_refuses_mismatched_text() -> None:
    with pytest.raises(ValueError, match="27 characters"):
        measure(stack(uniform(27)), "short")


def test_the_observation_cell_keeps_the_loss_reading_and_adds_attention_on_a_second_line() -> None:
    console = Console(record=True, width=100, color_system=None)
    table = EpochTable(console)
    stats = EpochStats(1, 30, 2.5, 0.3, 2.4, 0.31, 1e-3, 1.2, 1.2, 1000.0)
    table.add(stats, join_notes("loss decreases, accuracy improves", "head 1.2 reads the last space"))
    table.add(stats, join_notes("plateau: loss barely moves", None))
    lines = console.export_text().splitlines()
    assert "loss decreases, accuracy improves" in lines[2] and lines[3].strip() == "head 1.2 reads the last space"
    assert "plateau" in lines[4] and len(lines) == 5
    assert max(len(line.rstrip()) for line in lines) <= table.width()


def test_probe_defaults_to_a_line_of_validation_and_its_epoch_files_round_trip(tmp_path: Path) -> None:
    text = "ng of a line\n\nKING.\nSo shaken as we are, so wan with care\nFind we"
    vocab = Vocab.from_text(text)
    probe = vocab.decode(default_probe(vocab.encode(text), vocab, block_size=16))
    assert probe == "So shaken as we "  # past the cut-off line, the blank one and the name, as long as the context
    assert vocab.decode(default_probe(vocab.encode("no newline at all here"), vocab, 16)) == "no newline at al"
    weights = [torch.softmax(torch.randn(2, 16, 16).masked_fill(torch.ones(16, 16).triu(1).bool(), -math.inf), -1)
               for _ in range(3)]
    save_epoch(epoch_path(tmp_path, 2), 2, 60, probe, weights)
    saved = load_epoch(epoch_path(tmp_path, 2))
    assert (saved.epoch, saved.step, saved.text) == (2, 60, probe)
    assert torch.allclose(saved.weights, torch.stack(weights), atol=1e-3)  # fp16 on disk
    assert (saved.weights.triu(1) == 0).all()
    assert epoch_path(tmp_path, 2).stat().st_size < 6000
    assert epoch_files(tmp_path) == {2: epoch_path(tmp_path, 2)}
    epoch_path(tmp_path, 3).write_bytes(b"cut sho")
    with pytest.raises(UserError, match="epoch-003.pt is not a readable probe attention file"):
        load_epoch(epoch_path(tmp_path, 3))


def test_stats_serialise() -> None:
    stats = measure(stack(uniform(5)), "ab cd")
    d = stats.to_dict()
    assert d["entropy"] == pytest.approx(stats.entropy) and d["heads"][0]["layer"] == 0
    assert isinstance(stats, AttentionStats) and "no single pattern" in stats.heads[0].summary()
