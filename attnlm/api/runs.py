"""`attnlm runs`: the runs under a folder, or one run's epoch table and what its attention learned."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from attnlm.errors import UserError
from attnlm.store.metrics import run_summary
from attnlm.store.run_dir import list_run_dirs
from attnlm.terminal import print_fitting


def runs(*, root: Path, console: Console, run: Path | None = None) -> None:
    if run is not None:
        run_detail(run, console)
        return
    folders = list_run_dirs(root)
    if not folders:
        console.print(f"no runs under {root}/ yet; start one with `attnlm train --config configs/tiny.yaml`")
        return
    rows = []
    for folder in folders:
        s = run_summary(folder)
        rows.append((folder.name, str(s.epochs), str(s.steps), f"{s.best_val:.4f}" if s.best_val is not None else "-",
                     f"{s.seconds:.1f}s", "finished" if s.finished else "resumable" if s.steps else "no epoch yet"))
    # Boxed where it fits; then without the box; then one run per two lines, so a narrow terminal still
    # shows every name and number whole.
    boxed = Table(title=f"runs in {root}/")
    plain = Table(title=f"runs in {root}/", title_justify="left", box=None, pad_edge=False)
    for table in (boxed, plain):
        table.add_column("run", no_wrap=True)
        for column in ("epochs", "steps", "best val", "time"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("status", no_wrap=True)
        for row in rows:
            table.add_row(*row)
    lines = [Text(f"runs in {root}/")]
    for name, epochs, steps, best, seconds, status in rows:
        plural = "s" if epochs != "1" else ""
        lines += [Text(name, style="bold", no_wrap=True, overflow="ignore"),
                  Text(f"  {epochs} epoch{plural}, {steps} steps, best val {best}, {seconds}, {status}")]
    stacked = Group(*lines)
    print_fitting(console, [boxed, plain, stacked])


def run_detail(folder: Path, console: Console) -> None:
    """One run: its epoch table as training printed it (Observation included) and what each head learned."""
    import dataclasses

    from attnlm.inspection.attention_stats import measure
    from attnlm.inspection.probe import epoch_files, load_epoch
    from attnlm.store.metrics import read_metrics
    from attnlm.training.epoch_table import EpochStats, EpochTable

    if not (folder / "checkpoints").is_dir():
        raise UserError(f"{folder} is not a run folder (it has no checkpoints/); `attnlm runs` lists the runs")
    s = run_summary(folder)
    best = f", best val loss {s.best_val:.4f}" if s.best_val is not None else ""
    status = "finished" if s.finished else "resumable" if s.steps else "no epoch yet"
    console.print(f"run {folder}: {status}, {s.epochs} epochs, {s.steps} steps{best}, {s.seconds:.1f}s", highlight=False)
    names = {f.name for f in dataclasses.fields(EpochStats)}
    rows = [r for r in read_metrics(folder) if r.get("kind") == "epoch"]
    if rows:
        table = EpochTable(console)
        for row in rows:
            stats = EpochStats(**{k: v for k, v in row.items() if k in names})
            table.add(stats, stats.observation)
    files = epoch_files(folder)
    if not files:
        return
    epoch, path = max(files.items())
    saved = load_epoch(path)
    if len(saved.text) < 2:
        return
    console.print(f"\nwhat attention learned by epoch {epoch}, on the probe {saved.text!r}:", highlight=False)
    for head in measure(saved.weights, saved.text).heads:
        console.print(f"  {head.summary()}", highlight=False)
