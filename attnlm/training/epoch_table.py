"""What the user sees in the terminal: the epoch table, its Observation column and the loss chart.

The attention half of the Observation column comes from attnlm.inspection.attention_stats.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from attnlm.terminal import print_whole


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
    observation: str = ""  # what the table's Observation column said: the loss reading, then attention's
    # With data.task: the validation loss and accuracy on the predictable part alone (the rest is random).
    val_task_loss: float | None = None
    val_task_accuracy: float | None = None

    def to_dict(self) -> dict:
        row = {"kind": "epoch", **asdict(self)}
        if self.val_task_loss is None:  # a run on text: its rows keep the keys they always had
            del row["val_task_loss"], row["val_task_accuracy"]
        return row

    def task_note(self) -> str | None:
        """The Observation's line on the predictable part of a task, or None on text."""
        if self.val_task_loss is None or self.val_task_accuracy is None:
            return None
        return f"predictable part: loss {self.val_task_loss:.4f}, accuracy {self.val_task_accuracy:.3f}"


FLAT = 0.01  # an epoch whose val loss moves less than 1 % (relative) is flat
CONVERGED_AFTER = 3  # flat epochs in a row before the end of training counts as converged


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
    if val_change > FLAT:
        acc = "accuracy improves" if cur.val_accuracy > prev.val_accuracy else "accuracy flat"
        return f"loss decreases, {acc}"
    if final and flat_epochs(history) >= CONVERGED_AFTER:
        return f"converged: val loss flat for {CONVERGED_AFTER}+ epochs"
    return "plateau: loss barely moves"


def flat_epochs(history: list[EpochStats]) -> int:
    """How many of the last epochs in a row moved the val loss by less than FLAT."""
    n = 0
    for prev, cur in zip(reversed(history[:-1]), reversed(history[1:]), strict=True):
        if abs(prev.val_loss - cur.val_loss) > FLAT * prev.val_loss:
            break
        n += 1
    return n


def join_notes(loss_note: str, *notes: str | None) -> str:
    """The Observation cell: the loss reading, then a line for each further note there is (the predictable part of
    a task, what attention did)."""
    return "\n".join([loss_note, *(note for note in notes if note)])


class EpochTable:
    """Prints the table one row per epoch, so it grows in a terminal and in a log file alike.

    Every row is its own rich Table with the same column widths, picked once from the console's width when
    the header is printed. Numbers are never cut: their columns are as wide as their values; the Observation
    column takes what is left, up to OBS_MAX, and wraps onto more lines when it must. Narrower than the
    full headers allow, the headers shorten; narrower still, the compact layout prints each observation on
    a line of its own under its numbers.
    """

    # (header, width): a loss below 10 and a time below 10000 s fit; a rarer, wider value widens its row.
    WIDE = (("Epoch", 5), ("Loss ↓", 6), ("Val loss ↓", 10), ("Accuracy ↑", 10), ("Time", 5))
    SHORT = (("Ep", 2), ("Loss", 6), ("Val", 6), ("Acc", 5), ("Time", 5))
    OBS_MIN, OBS_MAX = 20, 48  # an observation narrower than OBS_MIN wraps into too many lines
    GAP = 2  # between columns: one space of padding on each side

    def __init__(self, console: Console, epochs: int = 1) -> None:
        self.console = console
        self.epochs = epochs  # the most epochs the run can reach: sets the Epoch column's width
        self.rows = 0
        self.columns: list[tuple[str, int]] = []
        self.stacked = False

    def layout(self, width: int) -> tuple[list[tuple[str, int]], bool]:
        """(columns, stacked) for a console `width` columns wide."""
        digits = len(str(self.epochs))
        for numbers, stacked in ((self.WIDE, False), (self.SHORT, False), (self.SHORT, True)):
            cols = [(name, max(w, digits) if i == 0 else w) for i, (name, w) in enumerate(numbers)]
            fixed = sum(w for _, w in cols) + self.GAP * len(cols)  # with the Observation column's gap
            if stacked or width - fixed >= self.OBS_MIN:
                if not stacked:
                    cols.insert(4, ("Observation", min(self.OBS_MAX, width - fixed)))
                return cols, stacked
        raise AssertionError("unreachable: the stacked layout always fits")

    def width(self) -> int:
        return sum(w for _, w in self.columns) + self.GAP * (len(self.columns) - 1)

    def _table(self, header: bool, widths: list[int]) -> Table:
        table = Table(box=None, show_header=header, show_edge=False, pad_edge=False, padding=(0, 1))
        for (name, _), width in zip(self.columns, widths, strict=True):
            note = name == "Observation"
            table.add_column(name, width=width, min_width=width, max_width=width,
                             justify="left" if note else "right", no_wrap=not note, overflow="fold")
        return table

    def add(self, stats: EpochStats, note: str) -> None:
        if self.rows == 0:
            self.columns, self.stacked = self.layout(self.console.width)
            print_whole(self.console, self._table(header=True, widths=[w for _, w in self.columns]), self.width())
            self.console.print("─" * min(self.width(), self.console.width))
        numbers = [str(stats.epoch), f"{stats.train_loss:.4f}", f"{stats.val_loss:.4f}", f"{stats.val_accuracy:.3f}",
                   _duration(stats.seconds)]
        cells = numbers[:4] + ([] if self.stacked else [note]) + numbers[4:]
        # A value wider than planned (a loss of 100 or more) widens its column for this row, taken from
        # the Observation column where it can give: the row shifts a little, nothing is cut.
        widths = [w if name == "Observation" else max(w, len(cell))
                  for (name, w), cell in zip(self.columns, cells, strict=True)]
        if not self.stacked:
            extra = sum(widths) - sum(w for _, w in self.columns)
            widths[4] = max(self.OBS_MIN // 2, widths[4] - extra)
        table = self._table(header=False, widths=widths)
        table.add_row(*cells)
        print_whole(self.console, table, sum(widths) + self.GAP * (len(widths) - 1))
        if self.stacked and note:
            indent = self.columns[0][1] + self.GAP
            self.console.print(Padding(Text(note), (0, 0, 0, indent), expand=False), soft_wrap=False)
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
