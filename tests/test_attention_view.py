"""Attention views: the table, the DOT graph, heat maps and TensorBoard images, on real models and files."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from run_helpers import run_cli

from attnlm.config import ModelConfig
from attnlm.data import Vocab
from attnlm.errors import UserError
from attnlm.inspection.attention import attention_weights, group_matrix, word_groups
from attnlm.inspection.baseline import uniform_attention, uniform_grouped
from attnlm.inspection.graph import to_dot, write_graph
from attnlm.inspection.plots import difference_limit, head_images, heatmap_figure, heatmap_panels, write_heatmaps
from attnlm.inspection.probe import probe_ids
from attnlm.lm.model import AttnLM
from attnlm.training.tensorboard_log import TBLogger

# Seed 003's table: rows = the token asking, columns = the token attended to.
SEED_LABELS = ["I", "love", "tennis", "."]
SEED_TABLE = torch.tensor([[0.7, 0.2, 0.06, 0.04], [0.1, 0.8, 0.05, 0.05], [0.05, 0.1, 0.75, 0.1], [0.1, 0.2, 0.05, 0.65]])

VALUE = r'"(?:[^"\\]|\\.)*"|[^\s,\];]+'
ATTR = re.compile(rf"\s*(\w+)\s*=\s*({VALUE})\s*,?")


def parse_attrs(text: str) -> dict[str, str]:
    attrs, pos = {}, 0
    while pos < len(text):
        m = ATTR.match(text, pos)
        assert m, f"bad attribute list at {text[pos:]!r}"
        value = m.group(2)
        attrs[m.group(1)] = re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith('"') else value
        pos = m.end()
    return attrs


def parse_dot(dot: str) -> tuple[dict[str, dict], list[tuple[str, str, dict]]]:
    """A strict reader for the DOT that attnlm writes: every line must be a known statement."""
    lines = dot.strip().splitlines()
    assert lines[0] == "digraph attention {" and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        line = line.strip()
        if m := re.fullmatch(r"(t\d+) -> (t\d+) \[(.*)\];", line):
            edges.append((m.group(1), m.group(2), parse_attrs(m.group(3))))
        elif m := re.fullmatch(r"(t\d+) \[(.*)\];", line):
            nodes[m.group(1)] = parse_attrs(m.group(2))
        elif m := re.fullmatch(r"(node|edge) \[(.*)\];", line):
            parse_attrs(m.group(2))
        else:
            assert re.fullmatch(rf"(\w+=({VALUE});\s*)+", line), f"not a DOT statement: {line!r}"
    for a, b, _ in edges:
        assert a in nodes and b in nodes
    return nodes, edges


def tiny_model() -> tuple[AttnLM, Vocab]:
    torch.manual_seed(0)
    vocab = Vocab.from_text("I love tennis. And you?")
    return AttnLM(ModelConfig(block_size=16, n_layer=2, n_head=2, n_embd=16), vocab.size).eval(), vocab


def test_dot_has_one_edge_per_weight_above_the_threshold() -> None:
    nodes, edges = parse_dot(to_dot(SEED_TABLE, SEED_LABELS, min_weight=0.1))
    assert [nodes[f"t{i}"]["label"] for i in range(4)] == SEED_LABELS
    shown = {(a, b): attrs for a, b, attrs in edges if attrs.get("style") != "invis"}
    # 0.1 itself is not above the threshold: love -> I and tennis -> love/. are left out.
    assert set(shown) == {("t0", "t0"), ("t0", "t1"), ("t1", "t1"), ("t2", "t2"), ("t3", "t1"), ("t3", "t3")}
    assert shown[("t3", "t1")]["label"] == "0.20" and shown[("t1", "t1")]["label"] == "0.80"
    widths = {k: float(v["penwidth"]) for k, v in shown.items()}
    assert widths[("t1", "t1")] > widths[("t0", "t0")] > widths[("t3", "t1")]
    _, all_edges = parse_dot(to_dot(SEED_TABLE, SEED_LABELS, min_weight=0.0))
    assert sum(1 for *_, attrs in all_edges if attrs.get("style") != "invis") == 16
    if shutil.which("dot"):  # Graphviz itself agrees that it parses, where it is installed
        done = subprocess.run(["dot", "-Tcanon"], input=to_dot(SEED_TABLE, SEED_LABELS), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_dot_labels_survive_quotes_and_backslashes() -> None:
    nodes, _ = parse_dot(to_dot(torch.eye(3), ['"', "\\", "a b"], title='say "hi"'))
    assert [n["label"] for n in nodes.values()] == ['"', "\\", "a b"]


def test_words_group_characters_and_rows_still_sum_to_one() -> None:
    text = "I love tennis."
    groups = word_groups(text)
    assert [g[0] for g in groups] == SEED_LABELS
    assert sorted(p for g in groups for p in g[1]) == list(range(len(text)))
    assert [g[0] for g in word_groups("Oh, don't!  ")] == ["Oh", ",", "don't", "!"]
    model, vocab = tiny_model()
    w = attention_weights(model, vocab.encode(text))[1][0]  # (T, T)
    g = group_matrix(w, groups)  # (4, 4)
    assert torch.allclose(g.sum(-1), torch.ones(4), atol=1e-6)
    assert (g.triu(1) == 0).all()
    # "." is one character: its row is that character's row, summed over each word's characters.
    assert torch.allclose(g[3, 1], w[13, 1:6].sum()) and torch.allclose(g[3, 3], w[13, 13])
    # "love" (with its space, positions 1-5) averages its characters' rows.
    assert torch.allclose(g[1, 0], w[1:6, 0].mean())


def test_weights_shown_are_the_weights_self_attention_returns() -> None:
    model, vocab = tiny_model()
    ids = vocab.encode("I love tennis.")
    x = model.embed(ids[None])  # (1, T, C)
    with torch.no_grad():
        for layer, weights in enumerate(attention_weights(model, ids)):  # (H, T, T)
            block = model.blocks[layer]
            for h in range(2):
                _, expected = block.attn.head(h)(block.norm1(x), return_weights=True)
                assert torch.allclose(weights[h], expected[0], atol=1e-6)
            x, _ = block(x)


def test_graph_and_heatmap_files(tmp_path: Path) -> None:
    model, vocab = tiny_model()
    text = "I love tennis."
    weights = attention_weights(model, vocab.encode(text))
    png = write_heatmaps(weights, text, tmp_path / "heat.png")
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[0] > 400 and pixels.shape[1] > 400 and pixels.std() > 10
    with pytest.raises(UserError, match="ending in .png"):
        write_heatmaps(weights, text, tmp_path / "heat.jpg")
    with pytest.raises(UserError, match="use .dot"):
        write_graph("digraph {}", tmp_path / "g.pdf")
    dot_path, drawn, note = write_graph(to_dot(SEED_TABLE, SEED_LABELS), tmp_path / "g.svg")
    assert dot_path == tmp_path / "g.dot" and parse_dot(dot_path.read_text())
    if shutil.which("dot"):
        assert drawn == tmp_path / "g.svg" and "<svg" in drawn.read_text() and note is None
    else:
        assert drawn is None and "apt-get install graphviz" in note


def test_heat_maps_show_the_tables_selection() -> None:
    model, vocab = tiny_model()
    text = "I love tennis."
    weights = attention_weights(model, vocab.encode(text))  # per layer (2, 14, 14)
    [[(title, w)]] = heatmap_panels(weights, 1, 1)
    assert title == "layer 1, head 1" and torch.equal(w, weights[1][1])
    [[(title, w)]] = heatmap_panels(weights, 1, None)
    assert title == "layer 1, mean of all heads" and torch.allclose(w, weights[1].mean(0))
    groups = word_groups(text)
    [[(_, w)]] = heatmap_panels(weights, 0, 1, groups)
    assert torch.allclose(w, group_matrix(weights[0][1], groups))  # (4, 4), as the word table
    [[(_, w)]] = heatmap_panels(weights, 0, 1, groups, difference=True)
    assert torch.allclose(w, group_matrix(weights[0][1], groups) - uniform_grouped(groups))
    [[(_, w)]] = heatmap_panels(weights, 0, None, difference=True)
    assert torch.allclose(w, weights[0].mean(0) - uniform_attention(14))
    grid = heatmap_panels(weights, None)
    assert [[name for name, _ in row] for row in grid] == [[f"layer {L}, head {h}" for h in (0, 1)] for L in (0, 1)]
    assert torch.equal(grid[1][0][1], weights[1][0])


def test_heat_map_captions_and_colour_legends() -> None:
    model, vocab = tiny_model()
    text = "I love tennis."
    weights = attention_weights(model, vocab.encode(text))

    def described(fig) -> tuple[str, list[str], list[tuple[str, str]], object]:
        *panels, legend = fig.axes  # the colour bar is the figure's last axes
        return (" ".join(fig._suptitle.get_text().split()), [ax.get_title() for ax in panels],  # wrapped to fit
                [(ax.get_xlabel(), ax.get_ylabel()) for ax in panels], legend)

    title, panels, axes, legend = described(heatmap_figure(weights, text, all_heads=False, layer=1, head=1))
    assert title == "character attention on 'I love tennis.'" and panels == ["layer 1, head 1"]
    assert axes == [("attended character", "query character")]
    assert legend.get_ylabel() == "attention probability" and legend.get_ylim() == (0.0, 1.0)

    fig = heatmap_figure(weights, text, all_heads=False, layer=0, head=None, words=word_groups(text))
    title, panels, axes, legend = described(fig)
    assert title == "word attention on 'I love tennis.'" and panels == ["layer 0, mean of all heads"]
    assert axes == [("attended word", "query word")]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == SEED_LABELS

    fig = heatmap_figure(weights, text, all_heads=False, layer=0, head=0, words=word_groups(text), difference=True)
    title, _, _, legend = described(fig)
    limit = difference_limit(heatmap_panels(weights, 0, 0, word_groups(text), difference=True))
    assert title == "word attention - uniform on 'I love tennis.'"
    assert legend.get_ylabel() == "attention probability - uniform" and legend.get_ylim() == (-limit, limit)
    assert fig.axes[0].images[0].cmap.name.startswith("RdBu")  # diverging, white at 0

    title, panels, axes, legend = described(heatmap_figure(weights, text))  # every layer and head
    assert panels == [f"layer {L}, head {h}" for L in (0, 1) for h in (0, 1)]
    assert legend.get_ylabel() == "attention probability"
    # The diverging scale ends at the first of 0.05 ... 1 that holds the largest difference.
    assert [difference_limit([[("", torch.tensor([[d]]))]]) for d in (0.01, -0.07, 0.19, 0.3, -0.9)] == \
        [0.05, 0.1, 0.2, 0.5, 1.0]


def test_probe_images_read_back_from_the_event_file(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, vocab = tiny_model()
    model.train()
    ids = vocab.encode("I love tennis.")
    images = head_images(attention_weights(model, ids), "I love tennis.")
    assert model.training  # the trainer's mode is left alone
    assert list(images) == [f"attention/layer_{layer}/head_{head}" for layer in (0, 1) for head in (0, 1)]
    logger = TBLogger(tmp_path, enabled=True)
    for tag, image in images.items():
        assert image.dim() == 3 and image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1
        # Drawn at about TensorBoard's card width, so the card shows the glyphs at their own size.
        assert 380 <= image.shape[2] <= 440 and image.shape[1] <= 440
        logger.image(tag, image, step=7)
    logger.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == sorted(images)
    for tag, image in images.items():
        [event] = events.Images(tag)
        assert event.step == 7 and (event.height, event.width) == tuple(image.shape[1:])
        decoded = torch.from_numpy(np.array(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB")))
        assert torch.equal(decoded.permute(2, 0, 1), (image * 255).round().to(torch.uint8))
    # Different heads attend differently, so their pictures differ.
    assert not torch.equal(images["attention/layer_0/head_0"], images["attention/layer_1/head_1"])


def test_probe_text_defaults_to_validation_and_is_checked() -> None:
    vocab = Vocab.from_text("abc ")
    val = torch.arange(40) % 4
    assert torch.equal(probe_ids(None, vocab, val, 16), val[:16])  # no newline: from the start
    assert vocab.decode(probe_ids("a cab", vocab, val, 16)) == "a cab"
    for text, message in (("", "empty"), ("abz", "'z'"), ("a" * 17, "more than model.block_size = 16")):
        with pytest.raises(UserError, match=message):
            probe_ids(text, vocab, val, 16)


def table_rows(stdout: str, labels: list[str]) -> torch.Tensor:
    """The printed table's rows, in order of `labels`: lines like '│ "love" │ 0.29 │ 0.71 │ 0 │ 0 │'."""
    cells = [line.split("│")[1:-1] for line in stdout.splitlines() if line.startswith("│")]
    by_label = {row[0].strip(): [float(c) for c in row[1:]] for row in cells}
    return torch.tensor([by_label[f'"{label}"'] for label in labels])


def vs_uniform_rows(stdout: str, labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(learned - uniform, uniform) of the printed vs-uniform table: cells like '+0.07 (0.36)', the future '0'."""
    part = stdout[stdout.index("vs uniform: learned - uniform"):]
    cells = [line.split("│")[1:-1] for line in part.splitlines() if line.startswith("│")]
    by_label = {row[0].strip(): [c.strip() for c in row[1:]] for row in cells}
    pairs = [[re.fullmatch(r"([+-]?\d\.\d\d) \((\d\.\d\d)\)|(0)", c).groups() for c in by_label[f'"{label}"']]
             for label in labels]
    difference = torch.tensor([[float(d or 0) for d, _, _ in row] for row in pairs])
    uniform = torch.tensor([[float(u or 0) for _, u, _ in row] for row in pairs])
    return difference, uniform


def test_attention_cli_words_table_graph_and_heatmap(trained_run: tuple[Path, object], tmp_path: Path) -> None:
    run_dir, _ = trained_run
    result = run_cli("attention", "--run", str(run_dir), "--text", "I love tennis.", "--words", "--layer", "1", "--mean",
                     "--graph", str(tmp_path / "g.svg"), "--heatmap", str(tmp_path / "h.png"), "--min-weight", "0.05",
                     env={"PATH": str(Path(sys.executable).parent)}, check=True)  # a PATH without Graphviz
    table = table_rows(result.stdout.split("vs uniform")[0], SEED_LABELS)  # (4, 4) as printed, two decimals
    # In word mode the vs-uniform table comes by default: "." sees I, love, tennis, . by their lengths 1, 5, 7, 1.
    difference, uniform = vs_uniform_rows(result.stdout, SEED_LABELS)
    assert uniform[3].tolist() == pytest.approx([0.07, 0.36, 0.50, 0.07])
    assert torch.allclose(uniform, uniform_grouped(word_groups("I love tennis.")), atol=0.005)
    assert torch.allclose(difference, table - uniform, atol=0.0151)  # each printed value rounded once
    assert "+ above chance (blue), - below (red)" in result.stdout
    assert torch.allclose(table.sum(-1), torch.ones(4), atol=0.021)
    assert (table.triu(1) == 0).all() and (table.tril() > 0).sum() == 10
    nodes, edges = parse_dot((tmp_path / "g.dot").read_text())
    assert [n["label"] for n in nodes.values()] == SEED_LABELS
    shown = {(a, b) for a, b, attrs in edges if attrs.get("style") != "invis"}
    above = {(f"t{i}", f"t{j}") for i in range(4) for j in range(4) if table[i, j] > 0.055}
    assert above <= shown and all(int(a[1:]) >= int(b[1:]) for a, b in shown)  # only earlier tokens
    assert not (tmp_path / "g.svg").exists()
    assert "Graphviz is not installed" in result.stderr and "apt-get install graphviz" in result.stderr
    assert np.asarray(Image.open(tmp_path / "h.png")).shape[0] > 250  # one word-level heat map, as the table


def test_attention_cli_heat_map_follows_the_selection(trained_run: tuple[Path, object], tmp_path: Path) -> None:
    run_dir, _ = trained_run
    text = ("--run", str(run_dir), "--text", "I love tennis.")
    result = run_cli("attention", *text, "--layer", "1", "--head", "1", "--heatmap", str(tmp_path / "one.png"),
                     check=True)
    assert "vs uniform" not in result.stdout  # per character only with --baseline
    run_cli("attention", *text, "--no-baseline", "--all-heads", "--heatmap", str(tmp_path / "all.png"), check=True)
    one, every = (Image.open(tmp_path / name).size for name in ("one.png", "all.png"))
    assert every[0] > 1.5 * one[0] and every[1] > 1.5 * one[1]  # a 2 x 2 grid against one heat map
    result = run_cli("attention", *text, "--baseline", "--heatmap-vs-uniform", "--heatmap", str(tmp_path / "d.png"),
                     check=True)
    labels = ["I", "␣", "l", "o", "v", "e", "␣", "t", "e", "n", "n", "i", "s", "."]
    part = result.stdout[result.stdout.index("vs uniform"):]
    row = next(line for line in part.splitlines() if line.startswith("│") and line.split("│")[1].strip() == ".")
    assert len(row.split("│")[2:-1]) == len(labels)  # the character table, compact: "+.07" cells
    assert all(re.fullmatch(r"[+-]\.\d\d|\.00", c.strip()) for c in row.split("│")[2:-1])
    assert (tmp_path / "d.png").is_file()
    for flag in ("--all-heads", "--heatmap-vs-uniform"):
        result = run_cli("attention", *text, flag)
        assert result.returncode == 2
        assert result.stderr.strip() == f"error: {flag} changes the heat map; add --heatmap FILE.png"


def test_attention_cli_user_errors(trained_run: tuple[Path, object], tmp_path: Path) -> None:
    run_dir, _ = trained_run
    result = run_cli("attention", "--run", str(run_dir), "--text", "I love tennis.", "--graph", str(tmp_path / "g.txt"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: --graph {tmp_path / 'g.txt'}: unknown extension '.txt'; "
                                                  "use .dot (Graphviz source), .svg or .png"]
    result = run_cli("attention", "--run", str(run_dir), "--text", "x" * 40)
    assert result.returncode == 2 and "shorten it to at most 32 characters" in result.stderr
    assert "Traceback" not in result.stderr


def test_trained_run_logs_attention_images(trained_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = trained_run
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == [f"attention/layer_{layer}/head_{head}" for layer in (0, 1) for head in (0, 1)]
    for tag in events.Tags()["images"]:
        shots = events.Images(tag)
        assert len(shots) == 3  # one per epoch of TINY
        assert shots[0].encoded_image_string != shots[-1].encoded_image_string  # attention changed while training
    # The same attention, as numbers, for the explorer's epoch slider: a few KB per epoch.
    files = sorted((run_dir / "attention").glob("epoch-*.pt"))
    assert [f.name for f in files] == ["epoch-001.pt", "epoch-002.pt", "epoch-003.pt"]
    assert all(f.stat().st_size < 8000 for f in files)
    # Beside them, the small model's weights after each epoch, which replay any text (log.epoch_weights auto).
    assert sorted(f.name for f in (run_dir / "attention").glob("model-*.pt")) == [f"model-00{e}.pt" for e in (1, 2, 3)]
