"""The trainer's checkpoints on disk: writing best.pt and last.pt, making sure the disk has room for them
before a run starts, and the one line that tells the user what is left when the machine refuses a write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnlm import disk
from attnlm.errors import MachineError
from attnlm.store.checkpoint import save_checkpoint


def write(payload: dict[str, Any], folder: Path, best: bool, size: int) -> None:
    """last.pt, and best.pt too when this epoch is the best so far; `size` is named if the disk refuses it."""
    # best.pt first: a kill between the two writes then leaves last.pt before this epoch's end, and the
    # resumed run redoes that end and writes best.pt again. In the other order the resumed run would
    # believe best.pt holds this epoch while it holds an older one.
    if best:
        save_checkpoint(payload, folder / "best.pt", size)
    save_checkpoint(payload, folder / "last.pt", size)


def check_room(folder: Path, size: int, resume_command: str | None, freed: int) -> None:
    """Refuse to start a run whose disk cannot hold the checkpoints it adds: best.pt, last.pt and the
    temporary copy that replaces one of them whole (fewer for a resumed run, `resume_command` given, that has
    them already). `freed`: bytes that --overwrite deletes before the run starts."""
    resumed = resume_command is not None
    names = [n for n in ("best.pt", "last.pt") if not (resumed and (folder / "checkpoints" / n).is_file())]
    names.append(f"the temporary copy that replaces {'one of them' if names else 'best.pt or last.pt'} whole")
    what = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    count = len(names)
    fix = (f"free some space, then resume with: {resume_command}" if resumed
           else "free some space or set log.dir to a folder on a larger disk")
    each = disk.size_text(size)
    disk.check_room(folder, count * size - freed,
                    f"this run ({count} checkpoint{'s' if count > 1 else ''} of {each}: {what})", fix)


def machine_fault(e: MachineError, run_dir: Path, saved_step: int | None, resume_command: str) -> MachineError:
    """The refused write, and what the user still has: the last good checkpoint and how to go on from it."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.parent.is_dir():
        return MachineError(f"{e.problem}; nothing could be saved and nothing was recreated in its place: "
                            "train the run again from the start")
    fix = e.fix or "check the disk"
    if saved_step is None or not last.is_file():
        return MachineError(f"{e.problem}; no checkpoint was saved yet: {fix}, then run the same command "
                            "again with --overwrite")
    return MachineError(f"{e.problem}; the last good checkpoint {last} (step {saved_step}) is intact: "
                        f"{fix}, then resume with: {resume_command}")
