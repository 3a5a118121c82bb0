"""`attnlm attention`: the attention probability table, and optionally its graph and heat maps."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from attnlm.api.model import load_for_inspection
from attnlm.errors import UserError


def attention(*, run: str | None, checkpoint: str | None, config: Path | None, overrides: list[str], text: str,
              layer: int, head: int | None, mean: bool, words: bool, graph: Path | None, min_weight: float,
              heatmap: Path | None, device: str, console: Console, baseline: bool | None = None,
              all_heads: bool = False, heatmap_difference: bool = False) -> None:
    """`baseline` None: the "vs uniform" table with --words (where a word's share misleads most), not per
    character. `all_heads`: the heat map is every layer and head; else it shows what the table shows."""
    from attnlm.checks import check_index, check_png
    from attnlm.inspection import attention as view
    from attnlm.inspection import graph as dot_graph
    from attnlm.inspection.attention_table import fitting_tables
    from attnlm.inspection.baseline import uniform_grouped
    from attnlm.inspection.trace import encode_text
    from attnlm.terminal import natural_width, print_whole

    if mean and head is not None:
        raise UserError("give --head H (one head) or --mean (the average of all heads), not both")
    if not 0.0 <= min_weight < 1.0:
        raise UserError(f"--min-weight must be in [0, 1), got {min_weight}")
    for flag, given in (("--all-heads", all_heads), ("--heatmap-vs-uniform", heatmap_difference)):
        if given and heatmap is None:
            raise UserError(f"{flag} changes the heat map; add --heatmap FILE.png")
    if graph is not None:
        dot_graph.check_graph_path(graph)  # before any work, so a typo costs nothing
    if heatmap is not None:
        check_png("--heatmap", heatmap)
    model = load_for_inspection(run, checkpoint, config, overrides, device)
    source, cfg = model.source, model.config.model
    check_index("--layer", layer, cfg.n_layer, "layer")
    head = None if mean else (head or 0)
    if head is not None:
        check_index("--head", head, cfg.n_head, "head")
    encode_text(text, model.vocab, cfg.block_size, "--text")  # in the CLI's words: Model.attention names `text`
    weights = list(model.attention(text))  # per layer (H, T, T)
    matrix = view.select(weights, layer, head)  # (T, T)
    groups = view.word_groups(text) if words else view.char_groups(text)
    if len(groups) < len(text):  # a column per word or per grapheme cluster, not per code point
        matrix = view.group_matrix(matrix, groups)
    labels = [label for label, _ in groups]
    which = f"layer {layer}, " + ("mean of all heads" if head is None else f"head {head}")
    console.print(f"attention of {source}, {which}", highlight=False)
    if words:
        console.print("words: a column sums the word's characters, a row averages them", highlight=False)
    elif len(groups) < len(text):
        joined = " ".join(f"{label} ({len(positions)})" for label, positions in groups if len(positions) > 1)
        console.print(f"characters the model reads as several code points, shown as one: {joined}; a column "
                      "sums its code points, a row averages them", highlight=False)
    tables = fitting_tables(console, matrix, labels, f"attention probabilities on {text!r}")
    for table in tables:
        print_whole(console, table, natural_width(console, table))  # the blocks' widths were estimated
    console.print("rows: the token asking; columns: the token it attends to; each row sums to 1, the future is 0",
                  highlight=False)
    cut = len(tables)
    if baseline if baseline is not None else words:
        uniform = uniform_grouped(groups)  # (G, G): what an even spread over the visible characters gives
        unit = "word" if words else "character"
        differences = fitting_tables(console, matrix, labels, f"vs uniform: learned - uniform (uniform) on {text!r}",
                                     uniform)
        for table in differences:
            print_whole(console, table, natural_width(console, table))
        console.print(f"uniform: a head that spreads each row evenly, 1/(i+1) to each of the i+1 characters "
                      f"row i sees{', so a word gets its visible characters / (i+1)' if words else ''}; "
                      f"+ above chance (blue), - below (red): the {unit}s this head prefers and avoids",
                      highlight=False)
        cut = max(cut, len(differences))
    if cut > 1:
        print(f"note: the table is cut into {cut} blocks of columns to fit this terminal's {console.width} "
              "columns; --words, a shorter --text or --heatmap FILE.png show it whole", file=sys.stderr)
    if graph is not None:
        dot = dot_graph.to_dot(matrix, labels, min_weight, f"{text!r}: {which}, edges above {min_weight:g}")
        dot_path, drawn, note = dot_graph.write_graph(dot, graph)
        console.print(f"wrote {dot_path}" + (f" and {drawn}" if drawn else ""), highlight=False)
        if note:
            print(f"note: {note}", file=sys.stderr)
    if heatmap is not None:
        from attnlm.inspection.plots import write_heatmaps

        path = write_heatmaps(weights, text, heatmap, all_heads=all_heads, layer=layer, head=head,
                              words=view.word_groups(text) if words else None, difference=heatmap_difference)
        console.print(f"wrote {path}", highlight=False)
