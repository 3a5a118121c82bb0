"""`attnlm export`: write a run's model as a folder usable outside attnlm."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from attnlm.errors import UserError
from attnlm.store.run_dir import resolve_checkpoint


def export(*, run: Path, out: Path | None, console: Console) -> None:
    from attnlm.store.export import default_out
    from attnlm.store.export import export as write_export
    from attnlm.store.exported import WEIGHTS

    if not run.exists():
        raise UserError(f"run folder or checkpoint not found: {run}; `attnlm runs` lists the runs")
    checkpoint = resolve_checkpoint(str(run), None) if run.is_dir() else run
    out = out or default_out(run)
    meta = write_export(checkpoint, out)
    source = meta["source"]
    what = f"step {source['step']}" + (f", val loss {source['val_loss']:.4f}" if source["val_loss"] is not None else "")
    console.print(f"exported {checkpoint} ({what}) to {out}: {WEIGHTS} "
                  f"({(out / WEIGHTS).stat().st_size / 1e6:.2f} MB), config.json, vocab.json, model.py", highlight=False)
