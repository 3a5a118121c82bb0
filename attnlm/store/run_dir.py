"""Run folders: creating them without ever clobbering one, finding them, summarising them."""

from __future__ import annotations

import glob
import os
import re
import shutil
import time
from pathlib import Path

from attnlm import disk, locks
from attnlm.errors import MachineError, UserError


class RunFolderExists(UserError):
    """A new run named after a folder that is already there. Said in Python's words; `cli_message` says it in
    the command line's."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"run folder {folder} already exists; continue it with attnlm.resume('{folder}'), "
                         "replace it with overwrite=True, or pick another name")
        self.cli_message = (f"run folder {folder} already exists; continue it with --resume {folder}, "
                            "replace it with --overwrite, or pick another --name")


def new_run_dir(root: str | Path, name: str, timestamp: bool, overwrite: bool) -> Path:
    """Create `<root>/<name>[-YYYYmmdd-HHMMSS]`, refusing to reuse an existing folder unless asked."""
    folder = Path(root) / (f"{name}-{time.strftime('%Y%m%d-%H%M%S')}" if timestamp else name)
    if folder.exists():
        if not overwrite:
            raise RunFolderExists(folder)
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


STAMP = re.compile(r"-\d{8}-\d{6}")  # what log.timestamp adds to a run's name


def named_run(run: str | Path) -> Path:
    """The run folder `run` names: itself where it exists, else the newest `RUN-YYYYMMDD-HHMMSS` beside it, as
    log.timestamp names a run, so that `--run runs/induction` finds the latest run trained with `--name induction`."""
    folder = Path(run)
    if folder.exists() or not folder.name:
        return folder
    stamped = [p for p in folder.parent.glob(glob.escape(folder.name) + "-*")
               if STAMP.fullmatch(p.name[len(folder.name):]) and p.is_dir()]
    return max(stamped, key=lambda p: p.name) if stamped else folder


def list_run_dirs(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / "checkpoints").is_dir()), key=lambda p: p.stat().st_mtime)


def check_resumable(run_dir: Path, start_afresh: str) -> None:
    """A run folder with a last.pt to resume from, checked before anything is locked or read; `start_afresh`
    says how in the caller's words (`--config FILE --overwrite`, `attnlm.train(config, overwrite=True)`)."""
    try:
        found, last = run_dir.is_dir(), (run_dir / "checkpoints" / "last.pt").is_file()
    except OSError as e:  # a name too long for the file system, a loop of links
        raise UserError(f"cannot read run folder {run_dir} ({e.strerror}); `attnlm runs` lists the runs") from None
    if not found:
        raise UserError(f"run folder not found: {run_dir}; `attnlm runs` lists the runs")
    if not last:
        raise UserError(f"{run_dir} has no checkpoints/last.pt to resume from (it was stopped before its first "
                        f"checkpoint); start it afresh with {start_afresh}")


def resolve_checkpoint(run: str | None, checkpoint: str | None, root: str | Path = "runs",
                       train_one: str = "`attnlm train --config configs/tiny.yaml`") -> Path:
    """The checkpoint a command should read: --checkpoint (a file, or a folder `attnlm export` wrote), else
    best.pt of --run (or the export folder it names), else the newest run."""
    if checkpoint and run:
        raise UserError("give either --run or --checkpoint, not both")
    if checkpoint:
        if not Path(checkpoint).exists():  # said here in the CLI's words; load() says it in Python's
            raise UserError(f"checkpoint not found: {checkpoint}; pass --run DIR or --checkpoint FILE of a trained run")
        return Path(checkpoint)
    if run:
        folder = named_run(run)
        if not folder.is_dir():
            raise UserError(f"run folder not found: {folder}; `attnlm runs` lists the runs")
        from attnlm.store.exported import is_export

        if is_export(folder):
            return folder
    else:
        runs = [p for p in list_run_dirs(root) if any((p / "checkpoints").glob("*.pt"))]
        if not runs:
            raise UserError(f"no trained run under {root}/; train one first with {train_one}")
        folder = runs[-1]
    for name in ("best.pt", "last.pt"):
        if (folder / "checkpoints" / name).is_file():
            return folder / "checkpoints" / name
    raise UserError(f"run {folder} has no checkpoint yet (checkpoints/best.pt or last.pt); train it first")


