"""The cache of prepared corpora: one folder per set of sources and settings, found again by a key made of
the sources' paths, sizes and modification times (and, for small files, a hash of their content).

A folder is built under a temporary name and renamed into place once complete, while a lock keeps other
processes (the ranks of a torchrun job, a second training) from preparing the same sources at the same
time: they wait and then use the finished folder. A killed preparation leaves only a temporary folder,
never one that could be taken for a finished cache; the next preparation removes it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attnlm import disk, locks
from attnlm.data.memmap import read_meta
from attnlm.data.sources import NotText, SourceFile, read_regular
from attnlm.disk import TEMP_PREFIX
from attnlm.errors import MachineError, UserError

HASHED_BELOW = 1 << 20  # files this small are also keyed by content: an edit can keep size and mtime


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/attnlm/data, i.e. ~/.cache/attnlm/data: one place however many runs use a corpus."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnlm" / "data"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode("utf-8")).hexdigest()


def _content_hash(source: SourceFile) -> str | None:
    if source.size >= HASHED_BELOW:
        return None
    try:
        return hashlib.blake2b(read_regular(source.path), digest_size=16).hexdigest()
    except (OSError, NotText):
        return None  # reported when it is read for real


def lineage(files: list[SourceFile], separator: str, val_fraction: float) -> str:
    """What stays the same when the files change: their paths and the settings."""
    return _digest([[str(f.path) for f in files], separator, val_fraction])


def fingerprints(files: list[SourceFile]) -> list[tuple[int, int, str | None]]:
    """What tells a changed file from an unchanged one."""
    return [(f.size, f.mtime_ns, _content_hash(f)) for f in files]


def key(line: str, prints: list[tuple[int, int, str | None]], vocab: str | None) -> str:
    """A preparation's identity: the sources, their state, and the vocabulary when a model's was imposed."""
    return _digest([line, vocab, prints])


def machine_error(what: Path, e: OSError, fix: str, size: int | None = None) -> UserError | MachineError:
    """A refused write: the machine's fault (disk full, read-only: exit 4), or a folder that cannot be (exit 2)."""
    if not disk.is_fault(e):
        return UserError(f"cannot write prepared data to {what} ({e.strerror or e}); {fix}")
    needed = f" ({disk.size_text(size)} needed)" if size else ""
    return MachineError(f"cannot write prepared data to {what}{needed}: {disk.reason(e)}", fix)


class Cache:
    """Prepared corpora under `root`, named `<slug>-<key prefix>` so a person can tell them apart."""

    def __init__(self, root: Path, slug: str) -> None:
        self.root = root
        self.slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", slug).strip("._")[:40] or "corpus"

    def folder(self, key: str) -> Path:
        return self.root / f"{self.slug}-{key[:16]}"

    def find(self, key: str) -> tuple[Path, dict[str, Any]] | None:
        folder = self.folder(key)
        meta = read_meta(folder)
        return (folder, meta) if meta is not None else None

    @contextmanager
    def lock(self, line: str) -> Iterator[None]:
        """Held while these sources are prepared; a second process blocks here until the first is done."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = locks.open_lock_file(self.root / f".{self.slug}-{line[:16]}.lock")
        except OSError as e:
            raise machine_error(self.root, e, "set data.cache_dir to a folder you can write to") from None
        try:
            locks.lock(fd)
            yield
        finally:
            locks.release(fd)

    def build(self, key: str, line: str, write: Callable[[Path], dict[str, Any]],
              size: int | None = None) -> tuple[Path, dict[str, Any]]:
        """Run `write(folder)` into a temporary folder and rename it into place (call with the lock held);
        `size`: about the bytes it writes, named when the disk refuses them."""
        for leftover in self.root.glob(f"{TEMP_PREFIX}{line[:16]}-*"):
            shutil.rmtree(leftover, ignore_errors=True)  # from a killed preparation: nobody else writes here now
        folder = self.folder(key)
        tmp = self.root / f"{TEMP_PREFIX}{line[:16]}-{os.getpid()}"
        try:
            tmp.mkdir()
            meta = write(tmp)
            if folder.exists():  # an unreadable or incomplete folder of the same key: replaced
                shutil.rmtree(folder)
            os.rename(tmp, folder)
            disk.fsync_folder(self.root)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            fix = "free some disk space" if e.errno == errno.ENOSPC else "set data.cache_dir to a folder you can write to"
            raise machine_error(self.root, e, fix, size) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._drop_superseded(folder, meta)
        return folder, meta

    def _drop_superseded(self, keep: Path, meta: dict[str, Any]) -> None:
        """Older preparations of the same sources and settings (the files have changed since) are of no more
        use. A process still reading one keeps its memory map: removing the files does not take the pages
        from under it."""
        same = ("lineage", "imposed_vocab")
        for folder in self.root.glob(f"{self.slug}-*"):
            other = read_meta(folder) if folder != keep and folder.is_dir() else None
            if other is not None and all(other.get(k) == meta.get(k) for k in same):
                shutil.rmtree(folder, ignore_errors=True)


def write_folder(out: Path, write: Callable[[Path], dict[str, Any]], size: int | None = None) -> dict[str, Any]:
    """`attnlm data prepare --out DIR`: the same temporary-folder-then-rename, into a folder of the user's."""
    if out.exists():
        raise UserError(f"{out} already exists; remove it or choose another --out (nothing was overwritten)")
    parent = out.parent
    for leftover in parent.glob(f"{TEMP_PREFIX}{out.name}-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = parent / f"{TEMP_PREFIX}{out.name}-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        meta = write(tmp)
        os.rename(tmp, out)
        disk.fsync_folder(parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise machine_error(out, e, "free some disk space" if e.errno == errno.ENOSPC
                            else "choose an --out you can write to", size) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _alive(pid: int) -> bool:
    if os.name != "posix":  # Windows' os.kill(pid, 0) would end that process, not probe it: keep its folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
