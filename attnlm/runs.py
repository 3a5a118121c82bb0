"""Run folders: creating them without ever clobbering one, finding them, summarising them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from attnlm import disk, locks
from attnlm.checkpoint import atomic_write
from attnlm.config import Config, save_config
from attnlm.errors import MachineError, UserError

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


def new_run_dir(root: str | Path, name: str, timestamp: bool, overwrite: bool) -> Path:
    """Create `<root>/<name>[-YYYYmmdd-HHMMSS]`, refusing to reuse an existing folder unless asked."""
    folder = Path(root) / (f"{name}-{time.strftime('%Y%m%d-%H%M%S')}" if timestamp else name)
    if folder.exists():
        if not overwrite:
            raise UserError(
                f"run folder {folder} already exists; continue it with --resume {folder}, "
                "replace it with --overwrite, or pick another --name"
            )
        if folder.is_dir():
            unlock_run(lock_run(folder))  # never delete a run that is training right now
        try:
            shutil.rmtree(folder)
        except OSError as e:
            raise disk.write_error(folder, e) from None
    try:
        (folder / "checkpoints").mkdir(parents=True)
    except OSError as e:
        if disk.is_fault(e):  # a full disk, a read-only one: the machine's doing (exit 4)
            raise MachineError(f"cannot create run folder {folder}: {disk.reason(e)}",
                               "set log.dir to a folder on a disk you can write to") from None
        # log.dir is a file, or names a folder that cannot be made
        raise UserError(f"cannot create run folder {folder} ({e.strerror}); set log.dir to a folder you can write to") from None
    return folder


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (0 if there is none): what deleting it frees."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def lock_run(folder: Path) -> int:
    """Hold an exclusive lock on a run folder for the rest of this process, so two trainings (a run and a
    resume of it, or two resumes) can never write one run's checkpoints at once. The OS drops the lock when
    the process ends, however it ends, so a killed run never leaves a stale lock behind (attnlm.locks)."""
    try:
        fd = locks.open_lock_file(folder / ".lock")
    except OSError as e:  # a read-only or full disk: nothing could be written into this run anyway
        raise disk.write_error(folder / ".lock", e) from None
    if not locks.try_lock(fd):
        os.close(fd)
        raise UserError(f"run {folder} is being trained by another attnlm process right now; "
                        "let it finish or stop it (Ctrl-C) first") from None
    return fd


def unlock_run(lock: int) -> None:
    """Give back a lock_run lock: a notebook that trains a run and then resumes it lives in one process."""
    locks.release(lock)


def git_commit(cwd: Path) -> str | None:
    """The project's commit (with `+dirty` for uncommitted changes), when it is a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def list_run_dirs(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / "checkpoints").is_dir()), key=lambda p: p.stat().st_mtime)


def resolve_checkpoint(run: str | None, checkpoint: str | None, root: str | Path = "runs") -> Path:
    """The checkpoint a command should read: --checkpoint (a file, or a folder `attnlm export` wrote), else
    best.pt of --run (or the export folder it names), else the newest run."""
    if checkpoint and run:
        raise UserError("give either --run or --checkpoint, not both")
    if checkpoint:
        return Path(checkpoint)
    if run:
        folder = Path(run)
        if not folder.is_dir():
            raise UserError(f"run folder not found: {folder}; `attnlm runs` lists the runs")
        from attnlm.export import is_export

        if is_export(folder):
            return folder
    else:
        runs = [p for p in list_run_dirs(root) if any((p / "checkpoints").glob("*.pt"))]
        if not runs:
            raise UserError(f"no trained run under {root}/; train one first with `attnlm train --config configs/tiny.yaml`")
        folder = runs[-1]
    for name in ("best.pt", "last.pt"):
        if (folder / "checkpoints" / name).is_file():
            return folder / "checkpoints" / name
    raise UserError(f"run {folder} has no checkpoint yet (checkpoints/best.pt or last.pt); train it first")


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


def summarise(folder: Path) -> RunSummary:
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


def write_run_info(cfg: Config, run_dir: Path) -> None:
    """The merged config, and what produced the run: torch version, device, commit, command line."""
    import torch

    from attnlm import distributed
    from attnlm.device import resolve_device

    info = {"torch": str(torch.__version__), "device": str(resolve_device(cfg.train.device)),
            "git_commit": git_commit(Path(__file__).resolve().parent.parent),
            "argv": sys.argv,
            "processes": distributed.current().world, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = run_dir / "config.yaml"
    try:
        save_config(cfg, path)
        path = run_dir / "run.json"
        path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise disk.write_error(path, e) from None
