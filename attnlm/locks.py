"""Exclusive file locks that the operating system drops when the process ends, however it ends (so a killed
process never leaves a stale lock): flock where fcntl exists (Linux, macOS), msvcrt's byte-range lock on
Windows (what the filelock package uses there). Nothing POSIX-only is imported at start-up."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

# msvcrt.locking's answers when another process holds the byte.
_HELD_ELSEWHERE = {errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}


def open_lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def try_lock(fd: int) -> bool:
    """Take the lock if no other process holds it; False (at once) if one does."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt

    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as e:
        if e.errno in _HELD_ELSEWHERE:
            return False
        raise
    return True


def lock(fd: int) -> None:
    """Take the lock, waiting for as long as another process holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while not try_lock(fd):  # msvcrt's own blocking mode gives up after 10 s
        time.sleep(0.05)


def release(fd: int) -> None:
    """Give the lock back and close the file."""
    if fcntl is None:  # Windows: unlock before closing (closing alone frees the byte only eventually)
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    os.close(fd)
