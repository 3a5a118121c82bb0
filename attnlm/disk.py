"""Writing to disk: atomic writes, the free space a run needs, and one line for every write the machine refused.

Light on purpose (no torch): the CLI uses it to word a failed write to standard output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from attnlm.errors import MachineError, UserError

# Temporary files and folders start with this; what a killed process left behind is recognised by it.
TEMP_PREFIX = ".tmp-"

_FREE = "free some space"
_WRITABLE = "make it writable again"
# errno -> (what happened, what the user does about it). EDQUOT is missing from some platforms' errno.
FAULTS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", _FREE),
    getattr(errno, "EDQUOT", -1): ("the disk quota is exceeded", "free some space within your quota"),
    errno.EFBIG: ("the file is larger than the file system allows", "use a larger disk"),
    errno.EROFS: ("the file system is read-only", _WRITABLE),
    errno.EACCES: ("permission denied", _WRITABLE),
    errno.EPERM: ("the operation is not permitted", _WRITABLE),
    errno.EIO: ("the disk reported an input/output error", "check the disk"),
}
# A bad path the user typed, rather than a fault of the machine.
USER_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL}


def size_text(n: int) -> str:
    """Bytes the way `df -h` users read them: 405 KB, 9.9 MB, 1.2 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{n} bytes"


def is_fault(e: OSError) -> bool:
    """Whether a failed write is the machine's doing (full, read-only, broken), not a bad path."""
    return e.errno in FAULTS


def missing_folder(path: Path) -> Path | None:
    """The outermost of `path`'s folders that no longer exists (the one that was deleted), if any."""
    folder = path.parent
    if folder.exists():
        return None
    while not folder.parent.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def write_error(path: str | Path, e: OSError, size: int | None = None) -> MachineError | UserError:
    """One line for a write that failed: what, how much it needed, why, and what to do about it."""
    if e.errno in USER_ERRNOS:
        return UserError(f"could not write {path}: {e.strerror or e}; give a file in a folder you can write to")
    if e.errno == errno.ENOENT and (gone := missing_folder(Path(path))) is not None:
        return MachineError(f"could not write {path}: the folder {gone} no longer exists (it was deleted)")
    needed = f" ({size_text(size)} needed)" if size else ""
    return MachineError(f"could not write {path}{needed}: {reason(e)}", fix=fix_for(e))


def reason(e: OSError) -> str:
    """What the machine said, in words and by name: `the disk is full (ENOSPC)`."""
    code = errno.errorcode.get(e.errno or 0)
    what = FAULTS[e.errno][0] if e.errno in FAULTS else e.strerror or str(e)
    return what + (f" ({code})" if code else "")


def fix_for(e: OSError) -> str:
    return FAULTS[e.errno][1] if e.errno in FAULTS else "check the disk"


def make_folder(path: Path) -> None:
    """Make the folder of an output file the user named; a refusal is worded like any refused write."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None


def free_bytes(folder: Path) -> int:
    """Bytes this user may still write on the file system that holds `folder` (or would hold it, once made)."""
    folder = folder.absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_room(folder: Path, needed: int, what: str, fix: str) -> None:
    """Refuse before starting work that would need `needed` bytes under `folder` and could not get them."""
    free = free_bytes(folder)
    if free < needed:
        raise MachineError(f"not enough disk space for {folder}: its disk has {size_text(free)} free and {what} "
                           f"needs about {size_text(needed)}", fix)


def stdout_refused(e: OSError) -> MachineError:
    """The one line for a write fault that nothing else worded: every file is written through this module, so
    what is left is standard output redirected into a full or read-only place (`attnlm sample > out.txt`).
    Standard output is silenced first, so the interpreter's own flush at exit cannot fail a second time."""
    silence_stdout()
    return MachineError(f"could not write standard output: {reason(e)}", fix_for(e))


def silence_stdout() -> None:
    """After standard output refused a write: point it at the null device, so Python's own flush at exit
    does not fail again and print a traceback of its own below our one line."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):  # stdout has no file descriptor (replaced by a test harness): nothing to flush
        pass


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], size: int | None = None) -> None:
    """Call `write(file)` on a temp file in the same folder, fsync it, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a truncated one. A write the
    machine refuses (disk full, read-only, the folder deleted) removes the temp file, leaves the old file
    as it was and raises MachineError naming `path` and `size`, the bytes it needed. The folder must exist
    already: a folder deleted while in use is never recreated in parts.
    """
    tmp: str | None = None
    file: _Recorder | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if os.name == "posix":  # mkstemp makes 0600; give the file ordinary permissions (Windows has no modes)
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(fd, 0o666 & ~umask)
            file = _Recorder(f)
            write(file)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_folder(path.parent)  # make the rename itself durable
    except OSError as e:
        raise write_error(path, e, size) from None
    except Exception:
        if file is not None and file.error is not None:  # torch.save words a refused write as a zip-position error
            raise write_error(path, file.error, size) from None
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):  # on a file system gone read-only, remove_leftovers does it later
                Path(tmp).unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make the renames inside `folder` durable (a no-op on Windows, which cannot open a folder as a file)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Recorder:
    """A file that remembers the OSError of a refused write: torch.save reports one as `RuntimeError:
    unexpected pos 1113792 vs 1113680`, and the user needs to read "the disk is full" instead."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def remove_leftovers(folder: Path) -> None:
    """Delete temp files left by a save that was killed before its rename."""
    for tmp in folder.glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(OSError):  # a read-only disk: the run stops at its first write, and says why
            tmp.unlink(missing_ok=True)
