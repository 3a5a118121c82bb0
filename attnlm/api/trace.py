"""`attnlm trace`: one attention head's data flow, stage by stage, on a trained or fresh model."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from attnlm.api.model import load_for_inspection


def trace(*, run: str | None, checkpoint: str | None, config: Path | None, overrides: list[str], text: str,
          layer: int, head: int, device: str, console: Console, query: int | None = None, row: bool = False) -> None:
    from attnlm.checks import check_index
    from attnlm.inspection.trace import encode_text, render

    model = load_for_inspection(run, checkpoint, config, overrides, device)
    cfg = model.config.model
    # In the CLI's words first: Model.trace names them as Python's arguments.
    check_index("--layer", layer, cfg.n_layer, "layer")
    check_index("--head", head, cfg.n_head, "head")
    ids = encode_text(text, model.vocab, cfg.block_size, "--text")
    if query is not None:
        check_index("--query", query, len(ids), "position", f"the text ({text!r})")
    render(model.trace(text, layer, head, query), console, model.source, row=row)
