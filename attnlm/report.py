"""What the user sees in the terminal: the epoch table, its Observation column and the loss chart."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table


@dataclass
class EpochStats:
    epoch: int
    step: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float  # wall time of this epoch, evaluation included
    elapsed: float  # wall time since training started
    tokens_per_s: float

    def to_dict(self) -> dict:
        return {"kind": "epoch", **asdict(self)}


def observation(history: list[EpochStats], final: bool) -> str:
    """A one-line reading of the newest epoch, written from the numbers."""
    cur = history[-1]
    if len(history) == 1:
        return "starts learning, accuracy low" if cur.val_accuracy < 0.5 else "starts learning"
    prev = history[-2]
    val_change = (prev.val_loss - cur.val_loss) / prev.val_loss  # > 0 means better
    if cur.val_loss > prev.val_loss and cur.train_loss < prev.train_loss:
        return "overfitting: val up, train down"
    if cur.val_loss > prev.val_loss:
        return "worse: val and train loss rise"
    if val_change > 0.01:
        acc = "accuracy improves" if cur.val_accuracy > prev.val_accuracy else "accuracy flat"
        return f"loss decreases, {acc}"
    if final:
        return "converged: loss flattened out"
    return "plateau: loss barely moves"


class EpochTable:
    """Prints the table one row per epoch, so it grows in a terminal and in a log file alike."""

    # Widths add up to 80 columns with padding, so a plain 80-column terminal or log shows it whole.
    COLUMNS = (("Epoch", 5), ("Loss ↓", 6), ("Val loss ↓", 10), ("Accuracy ↑", 10), ("Observation", 34), ("Time", 5))
    WIDTH = sum(width for _, width in COLUMNS) + 2 * (len(COLUMNS) - 1)

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows = 0

    def _table(self, header: bool) -> Table:
        table = Table(box=None, show_header=header, show_edge=False,
                      pad_edge=False, padding=(0, 1))
        for name, width in self.COLUMNS:
            justify = "left" if name == "Observation" else "right"
            table.add_column(name, width=width, min_width=width, max_width=width, justify=justify,
                             no_wrap=True, overflow="ellipsis")
        return table

    def add(self, stats: EpochStats, note: str) -> None:
        if self.rows == 0:
            self.console.print(self._table(header=True))
            self.console.print("─" * self.WIDTH)
        table = self._table(header=False)
        table.add_row(str(stats.epoch), f"{stats.train_loss:.4f}", f"{stats.val_loss:.4f}",
                      f"{stats.val_accuracy:.3f}", note, _duration(stats.seconds))
        self.console.print(table)
        self.rows += 1


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 100 else f"{seconds:.0f}s"


def loss_chart(losses: list[float], width: int = 40, max_rows: int = 20) -> str:
    """An ASCII bar per epoch (`1.2 |****`): the longest bar is the highest loss."""
    if not losses:
        return ""
    step = max(1, -(-len(losses) // max_rows))
    shown = list(enumerate(losses, start=1))[::step]
    if shown[-1][0] != len(losses):
        shown.append((len(losses), losses[-1]))
    lo, hi = min(losses), max(losses)
    span = hi - lo
    lines = ["Val loss"]
    for epoch, value in shown:
        bar = width // 2 if span == 0 else round((value - lo) / span * width)
        lines.append(f"{epoch:>4} {value:7.4f} |{'*' * bar}")
    return "\n".join(lines)
