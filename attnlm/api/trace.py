"""`attnlm trace`: one attention head's data flow, stage by stage, on a trained or fresh model."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from attnlm.api.model import load_for_inspection


def trace(*, run: str | None, checkpoint: str | None, config: Path | None, overrides: list[str], text: str,
          layer: int, head: int, device: str, console: Console) -> None:
    from attnlm.inspection.trace import render

    model = load_for_inspection(run, checkpoint, config, overrides, device)
    render(model.trace(text, layer, head), console, model.source)
