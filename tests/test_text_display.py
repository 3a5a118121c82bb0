"""Text as people see it, in tables that fit the terminal: grapheme clusters, a BOM, unknown characters
counted, heat-map labels that are glyphs or code points, and the epoch, runs and attention tables at 50,
60, 80 and 120 columns with every number whole."""

from __future__ import annotations

import io
import json
import re
import unicodedata
import warnings
from pathlib import Path

import pytest
import torch
from rich.cells import cell_len
from rich.console import Console

from attnlm.api.evaluate import eval_
from attnlm.api.runs import runs
from attnlm.config import Config, ModelConfig
from attnlm.data import Corpus, Vocab, read_text
from attnlm.data.vocab import check_known
from attnlm.errors import UserError
from attnlm.inspection import plots
from attnlm.inspection.attention import char_groups, group_matrix, word_groups
from attnlm.inspection.attention_table import fitting_tables
from attnlm.labels import show_char
from attnlm.lm.model import AttnLM
from attnlm.training.epoch_table import EpochStats, EpochTable, observation
from attnlm.training.reporter import Reporter

WIDTHS = [50, 60, 80, 120]
ACCENT = "e\u0301"  # e + combining acute: one character on screen, two for the model


def console(width: int) -> Console:
    return Console(file=io.StringIO(), width=width, highlight=False, color_system=None)


def printed(c: Console) -> list[str]:
    return c.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_grapheme_clusters_stay_whole() -> None:
    text = f"a👍🏽{ACCENT}👨‍👩‍👧🇫🇷中 "
    groups = char_groups(text)
    assert [label for label, _ in groups] == ["a", "👍🏽", ACCENT, "👨‍👩‍👧", "🇫🇷", "中", "␣"]
    assert [p for _, ps in groups for p in ps] == list(range(len(text)))
    words = word_groups(f"Thumbs 👍🏽 and caf{ACCENT}, 中文!")
    assert [label for label, _ in words] == ["Thumbs", "👍🏽", "and", f"caf{ACCENT}", ",", "中文", "!"]
    w = torch.tril(torch.rand(len(text), len(text)))
    assert torch.allclose(group_matrix(w / w.sum(-1, keepdim=True), groups).sum(-1), torch.ones(len(groups)))
    # A code point that draws nothing on its own is named, not left blank.
    assert [show_char(c) for c in ("\u0301", "\u200d", "\u3000", " ", "中")] == ["U+0301", "U+200D", "U+3000", "␣", "中"]


def test_a_byte_order_mark_is_no_character(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffhello\r\nworld\n".encode())
    text = read_text(path)
    assert text == "hello\nworld\n" and "\ufeff" not in Vocab.from_text(text).chars


def test_unknown_characters_are_counted_and_the_file_named(trained_run: tuple[Path, object], tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"never saw: 'c' 'd' .* 'u' 'v' and 10 more; fix it$"):
        check_known("".join(chr(c) for c in range(ord("c"), ord("c") + 30)), Vocab("ab"), "the text", "fix it")
    data = tmp_path / "greek.txt"
    greek = "αβγδεζηθικλμνξοπρστυφχψω"
    data.write_text(greek * 3, encoding="utf-8")
    shown = " ".join(repr(c) for c in greek[:20])  # 24 letters, 20 listed
    with pytest.raises(UserError, match=rf"^--data {re.escape(str(data))} has characters the model never saw: {re.escape(shown)} "
                                        "and 4 more; evaluate on text written in the characters the model was trained on$"):
        eval_(run=str(trained_run[0]), checkpoint=None, data=data, device_name="cpu", console=console(80))


def stats(epoch: int, val_loss: float) -> EpochStats:
    return EpochStats(epoch, 40 * epoch, val_loss + 0.1, 0.4, val_loss, 0.4, 1e-3, 3.0, 3.0 * epoch, 1000.0)


def test_converged_only_after_several_flat_epochs() -> None:
    # Flat at a perplexity of ~2,600 after two short epochs: a plateau, not convergence.
    assert observation([stats(1, 7.86), stats(2, 7.85)], final=True) == "plateau: loss barely moves"
    flat = [stats(1, 2.0), stats(2, 1.6), stats(3, 1.595), stats(4, 1.592), stats(5, 1.590)]
    assert observation(flat, final=True).startswith("converged")
    assert observation(flat, final=False) == "plateau: loss barely moves"
    assert observation(flat[:4], final=True) == "plateau: loss barely moves"  # two flat epochs only


NOTES = ["starts learning, accuracy low", "loss decreases, accuracy improves",
         "plateau: loss barely moves; heads 0.1 and 1.0 attend to the previous character and to spaces",
         "converged: val loss flat for 3+ epochs"]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_epoch_table_fits_and_keeps_every_number_whole(width: int) -> None:
    c = console(width)
    table = EpochTable(c, epochs=12)
    rows = [EpochStats(e, 40 * e, 4.1234 / e, 0.3, 3.8138 / e, 0.478, 1e-3, [2.1, 25.9, 101.4, 9999.0][e - 1],
                       0.0, 1.0) for e in range(1, 5)]
    for row, note in zip(rows, NOTES, strict=True):
        table.add(row, note)
    lines = printed(c)
    assert all(cell_len(line) <= width for line in lines), "\n".join(lines)
    out = "\n".join(lines)
    assert "…" not in out
    for row in rows:
        for number in (f"{row.train_loss:.4f}", f"{row.val_loss:.4f}", f"{row.val_accuracy:.3f}"):
            assert re.search(rf"(^|\s){re.escape(number)}(\s|$)", out, re.M), number
    assert all(t in out for t in ("2.1s", "25.9s", "101s", "9999s"))
    words = " ".join(out.split())
    for note in NOTES:  # wrapped onto more lines where it must, never cut
        assert all(word in words for word in note.split()), note
    if width < 54:  # the compact layout: observations on their own lines
        assert any(line.strip() == NOTES[0] for line in lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_fit_the_terminal(width: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["shakespeare-20261123-193703", "tiny-20261123-180724", "x"]
    for i, name in enumerate(names):
        (tmp_path / "runs" / name / "checkpoints").mkdir(parents=True)
        row = {"kind": "epoch", "epoch": 8, "step": 2400 + i, "val_loss": 1.547 + i, "elapsed": 260.5}
        (tmp_path / "runs" / name / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    c = console(width)
    runs(root=Path("runs"), console=c)
    lines = printed(c)
    assert all(cell_len(line) <= width for line in lines), "\n".join(lines)
    out = "\n".join(lines)
    assert "…" not in out
    for i, name in enumerate(names):
        assert name in out and str(2400 + i) in out and f"{1.547 + i:.4f}" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_the_attention_table_fits_in_blocks_of_whole_numbers(width: int) -> None:
    text = "中文 👍🏽 and caf" + ACCENT + " in a rather long sentence"
    groups = char_groups(text)
    labels = [label for label, _ in groups]
    w = torch.rand(len(text), len(text)).tril()
    matrix = group_matrix(w / w.sum(-1, keepdim=True), groups)  # (G, G)
    c = console(width)
    tables = fitting_tables(c, matrix, labels, "attention probabilities")
    shown, expected_cells = [], 0
    for table in tables:
        c.print(table)
        columns = [column.header for column in table.columns[1:]]
        shown += columns
        expected_cells += table.row_count * len(columns)
    lines = printed(c)
    assert all(cell_len(line) <= width for line in lines), "\n".join(lines)
    assert [h.strip('"') for h in shown] == labels  # every column once, in order
    cells = [cell.strip() for line in lines if line.startswith("│") for cell in line.split("│")[2:-1]]
    assert len(cells) == expected_cells and all(re.fullmatch(r"0|1\.00?|0?\.\d\d", cell) for cell in cells), cells


def test_heat_map_labels_are_glyphs_or_code_points() -> None:
    """Each tick label matplotlib drew is a character some font in its family list has, or a U+ code point
    of a character no installed font has; drawn without a missing-glyph warning."""
    default_family, default_has = plots._default_font()
    # A character the default font lacks but a font matplotlib ships (STIX) has: drawn through the fallback.
    fallback = next(chr(cp) for family, has in plots._installed_fonts() if family != default_family
                    for cp in sorted(has) if 0x2000 <= cp < 0x3000 and cp not in default_has
                    and unicodedata.category(chr(cp)) == "Sm")  # a maths symbol, drawn on its own
    text = f"a{fallback}中👍🏽{ACCENT}"
    lettering = plots.Lettering(text)
    weights = torch.softmax(torch.randn(1, 2, len(text), len(text)), -1)[0]
    fig = plots._figure([weights], lettering, "")
    fonts = dict(plots._installed_fonts())
    fonts[default_family] = default_has
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    for tick in fig.axes[0].get_xticklabels() + fig.axes[0].get_yticklabels():
        label, families = tick.get_text(), tick.get_fontfamily()
        if re.fullmatch(r"U\+[0-9A-F]{4,6}", label):
            cp = int(label[2:], 16)
            assert show_char(chr(cp)) == label or not any(cp in fonts[f] for f in fonts)
        else:
            assert all(any(ord(ch) in fonts[f] for f in families) for ch in label), (label, families)
    assert labels[:2] == ["a", fallback] and labels[-2:] == ["e", "U+0301"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()  # without attnlm's filter: a glyph missing from every font would warn here
    assert not [w for w in caught if "missing" in str(w.message)], [str(w.message) for w in caught]


def test_an_optional_end_of_epoch_step_that_fails_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    vocab = Vocab("ab")
    model = AttnLM(ModelConfig(block_size=4, n_layer=1, n_head=1, n_embd=8), vocab.size)
    reporter = Reporter(Config(), console(80), model, Corpus(vocab, torch.zeros(8, dtype=torch.long),
                                                             torch.zeros(8, dtype=torch.long)), torch.zeros(4), True)

    def broken() -> None:
        raise RuntimeError("no font today")

    reporter.optional("epoch 3's attention images", broken)
    assert capsys.readouterr().err == ("warning: epoch 3's attention images failed (RuntimeError: no font today); "
                                       "training goes on\n")
