"""A run's records: metrics.jsonl (a row per step and epoch) and summary.json, read and rewound on resume."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from attnlm.disk import atomic_write

METRICS_FILE = "metrics.jsonl"


SUMMARY_FILE = "summary.json"


@dataclass
class RunSummary:
    path: Path
    epochs: int
    steps: int
    best_val: float | None
    seconds: float
    finished: bool


def read_metrics(folder: Path) -> list[dict]:
    path = folder / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything before it is good
    return rows


def rewind_metrics(folder: Path, step: int) -> None:
    """Cut metrics.jsonl back to the rows logged up to `step`, the step of the checkpoint a run resumes from.

    Rows after that step come from work the resumed run redoes, and a kill can leave a half-written last
    line that would hide every row appended after it. Rewriting the file (atomically) rather than
    de-duplicating when reading keeps it exactly what an uninterrupted run writes, for every reader.
    """
    path = folder / METRICS_FILE
    if not path.is_file():
        return
    keep = [json.dumps(row) + "\n" for row in read_metrics(folder) if row.get("step", 0) <= step]
    atomic_write(path, lambda f: f.write("".join(keep).encode("utf-8")))


def run_summary(folder: Path) -> RunSummary:
    rows = [r for r in read_metrics(folder) if r.get("kind") == "epoch"]
    vals = [r["val_loss"] for r in rows]
    finished = (folder / SUMMARY_FILE).exists()
    seconds = rows[-1]["elapsed"] if rows else 0.0
    if finished:
        try:  # the whole run, as its final report printed it, not just up to the last evaluation
            seconds = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))["seconds"]
        except (OSError, ValueError, KeyError):
            pass
    return RunSummary(
        path=folder,
        epochs=len(rows),
        steps=rows[-1]["step"] if rows else 0,
        best_val=min(vals) if vals else None,
        seconds=seconds,
        finished=finished,
    )
