"""Where the text comes from: a file, a folder, a glob or a list of them, read as UTF-8 in chunks.

Only regular files are read. A folder is walked without following its links to folders (so no walk goes round
in circles or leaves the folder), and a link to a file is read only when its target lies inside the folder it
was found in; what is skipped (a named pipe, a socket, a device, a dangling or looping link, a link leading out)
is reported with one line each. Every file is opened so that it cannot block, even one swapped for a named
pipe after it was checked.
"""

from __future__ import annotations

import codecs
import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from attnlm.errors import UserError

CHUNK_BYTES = 8 << 20  # read size: big enough for fast numpy work, small enough to keep memory flat
GLOB_CHARS = "*?["

Spec = str | Path | Sequence[str | Path]
Chunk = str | bytes  # bytes: pure ASCII, one byte a character
# A file left out: (its path, why: completes "skipping PATH: it ...").
Skipped = tuple[str, str]


@dataclass(frozen=True)
class SourceFile:
    path: Path
    size: int
    mtime_ns: int


@dataclass
class Resolved:
    """The regular files a spec names (each once, by its real path), whether it is one file named outright
    (then a bad file is an error, while files found in a folder or by a glob are skipped with a line each),
    and what was left out while looking."""

    files: list[SourceFile]
    single: bool
    skipped: list[Skipped] = field(default_factory=list)


class NotText(Exception):
    """A file that cannot be trained on; `reason` completes "data file X ..." and `fix` says what to do."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason, self.fix = reason, fix


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, for "X is ...": a named pipe (FIFO), a socket, a device..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_regular(mode: int) -> str:
    kind = kind_of(mode)
    return kind if kind.startswith("not ") else f"{kind}, not a regular file"


# O_NONBLOCK: opening a named pipe waits for a writer, and a device may wait too; with it the open returns at
# once and fstat tells what was opened. It changes nothing for a regular file. Windows has neither flag nor pipes.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for binary reading, if it is a regular file (links followed); never blocks.

    Raises NotText for anything else (a named pipe, a socket, a device, a folder), OSError if it cannot be opened.
    The check is made on the opened file, so a file swapped for a pipe after an earlier check is refused too.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotText(f"is {_not_regular(mode)}", "give a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (NotText for anything else); with `limit`, NotText for a longer file rather
    than reading it."""
    with open_regular(path) as f:
        if limit is not None and os.fstat(f.fileno()).st_size > limit:
            raise NotText(f"is larger than {limit:,} bytes", "give the file it should be")
        return f.read()


def entries(spec: Spec) -> list[str]:
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not items:
        raise UserError("data.path is an empty list; give a text file, a folder or a glob")
    return [str(item) for item in items]


def describe(spec: Spec) -> str:
    """The sources as a user wrote them, for messages (a single path stays one word)."""
    items = entries(spec)
    return items[0] if len(items) == 1 else f"{items[0]} (+{len(items) - 1} more)"


def _missing(entry: str) -> UserError:
    hint = " (run `make data` or `attnlm data shakespeare`)" if Path(entry).name == "shakespeare.txt" else ""
    return UserError(f"data file not found: {entry}{hint}; set data.path to a UTF-8 text file")


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # on different drives (Windows)
        return False


def _broken_link(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "is a link that loops back on itself"
    if e.errno == errno.ENOENT:
        return "is a link to nothing (its target is missing)"
    return f"is a link that cannot be followed ({e.strerror})"


def _examine(path: Path, root: str, given: str) -> tuple[bool, str | None]:
    """Whether `path`, met inside the folder whose real path is `root` (written `given`), is a file to read,
    and if not why, or None where nothing is lost by leaving it (a link to a folder inside: its files are read
    where they are)."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            try:
                real = os.path.realpath(path, strict=True)
            except OSError as e:
                return False, _broken_link(e)
            if not _inside(real, root):
                return False, f"links outside {given} (to {real})"
            mode = os.stat(real).st_mode
            if stat.S_ISDIR(mode):
                loop = _inside(os.path.realpath(path.parent), real)
                return False, "links to a folder it is in (a loop)" if loop else None
    except OSError as e:
        return False, f"cannot be read ({e.strerror})"
    if stat.S_ISREG(mode):
        return True, None
    return False, f"is {_not_regular(mode)}"


def _walk(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """Every regular file under `folder`, recursively, in sorted order; hidden files and folders (.git...) left
    out. Links to folders are never entered; a link to a file is kept if its target is inside `folder`. What
    else is met is added to `skipped`."""
    root = os.path.realpath(folder)
    found = []

    def unreadable(e: OSError) -> None:
        skipped.append((str(e.filename), f"cannot be read ({e.strerror})"))

    # followlinks=False: a linked folder is listed among the folders but not entered; it is examined below.
    for top, dirs, files in os.walk(folder, onerror=unreadable):
        keep = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            path = Path(top) / name
            if path.is_symlink():
                _, why = _examine(path, root, str(folder))
                if why is not None:
                    skipped.append((str(path), why))
            else:
                keep.append(name)
        dirs[:] = keep
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(top) / name
            ok, why = _examine(path, root, str(folder))
            if ok:
                found.append(path)
            elif why is not None:
                skipped.append((str(path), why))
    return sorted(found)


def _glob(pattern: str) -> tuple[Path, list[Path]]:
    """The folder a pattern starts from (its part before the first wildcard) and the paths it matches, as
    glob.glob(recursive=True) finds them (hidden names only by a pattern starting with "."), except that links
    to folders are never entered: they are matched themselves, to be examined like any link."""
    parts = Path(pattern).parts
    first = next(i for i, p in enumerate(parts) if any(c in p for c in GLOB_CHARS))
    base = Path(*parts[:first]) if first else Path(".")
    found: list[Path] = []

    def visit(folder: Path, rest: tuple[str, ...]) -> None:
        if not rest:
            found.append(folder)
            return
        head, tail = rest[0], rest[1:]
        if head == "**" and not tail:
            found.append(folder)  # and all below it, which walking the folder finds
            return
        try:
            with os.scandir(folder) as it:
                listed = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        shown = [e for e in listed if not e.name.startswith(".") or head.startswith(".")]
        if head == "**":
            visit(folder, tail)
            for e in shown:
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                    visit(Path(e.path), rest)
            return
        for e in shown:
            if not fnmatch.fnmatch(e.name, head):
                continue
            if not tail:
                found.append(Path(e.path))
            elif e.is_dir(follow_symlinks=False):
                visit(Path(e.path), tail)
            elif e.is_symlink() and e.is_dir():
                found.append(Path(e.path))  # a linked folder the rest of the pattern would have entered

    visit(base, parts[first:])
    return base, sorted(set(found))


def _given(entry: str, path: Path) -> str:
    """The one line for a path named outright that is not a file or folder to read."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if os.path.islink(path):
            return f"data path {entry} {_broken_link(e)}; point it at a UTF-8 text file or set data.path elsewhere"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise _missing(entry) from None
        return f"cannot read data path {entry} ({e.strerror}); check that it exists and you may read it"
    return f"data path {entry} is {_not_regular(mode)}; set data.path to UTF-8 text files, a folder or a glob"


def resolve(spec: Spec) -> Resolved:
    """The regular files `spec` names, in order, each once (by its real path), and what was skipped on the way.

    A path named outright is followed wherever its links lead: it is the user's own choice. Inside a folder (or
    below a glob's fixed start) links are not followed out of it or into a folder; see _walk.
    """
    paths: list[Path] = []
    skipped: list[Skipped] = []
    items = entries(spec)
    single = False
    for entry in items:
        path = Path(entry).expanduser()
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISREG(mode):
            paths.append(path)
            single = len(items) == 1
        elif mode is not None and stat.S_ISDIR(mode):
            before = len(skipped)
            found = _walk(path, skipped)
            if not found and len(skipped) == before:
                raise UserError(f"data folder {entry} holds no files; put text files in it or set data.path elsewhere")
            paths += found
        elif mode is None and any(c in entry for c in GLOB_CHARS):
            before = len(skipped)
            base, matched = _glob(os.path.expanduser(entry))
            root = os.path.realpath(base)
            kept: list[Path] = []
            for p in matched:
                if p.is_dir() and not p.is_symlink():
                    kept += _walk(p, skipped)
                    continue
                ok, why = _examine(p, root, str(base))
                if ok:
                    kept.append(p)
                elif why is not None:
                    skipped.append((str(p), why))
            if not kept and len(skipped) == before:
                raise UserError(f"data.path pattern {entry} matches no files; check it (** spans folders)")
            paths += sorted(kept)
        else:
            raise UserError(_given(entry, path))
    seen: set[Path] = set()
    files = []
    for path in paths:
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            st = os.stat(real)
        except OSError as e:  # gone since it was found
            skipped.append((str(path), f"cannot be read ({e.strerror})"))
            continue
        if not stat.S_ISREG(st.st_mode):  # swapped since it was found
            skipped.append((str(path), f"is {_not_regular(st.st_mode)}"))
            continue
        files.append(SourceFile(real, st.st_size, st.st_mtime_ns))
    skipped = list(dict(skipped).items())  # each path once: a folder can be named twice
    if not files and not skipped:
        raise UserError(f"{describe(spec)} holds no files to read; give UTF-8 text files or set data.path elsewhere")
    if not files:
        path, why = skipped[0]
        more = f" (and {len(skipped) - 1} more skipped)" if len(skipped) > 1 else ""
        raise UserError(f"no readable file in {describe(spec)}: {path} {why}{more}; "
                        "give regular UTF-8 text files or set data.path elsewhere")
    return Resolved(files, single, skipped)


def read_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES,
                on_read: Callable[[int], object] | None = None) -> Iterator[Chunk]:
    """The text of a UTF-8 file in chunks of about `chunk_bytes`, with \\r\\n read as \\n and a leading
    byte-order mark dropped; `on_read` is
    told the bytes of each read (for a progress bar). A chunk that is pure ASCII comes as the bytes read
    (one byte a character, valid UTF-8 as it is): decoding it would only cost time.

    Raises NotText for a file that is not UTF-8 or holds NUL bytes (a binary file), or is no regular file.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes read before this chunk
    carry = False  # a trailing \r held back, in case the next chunk starts with \n
    try:
        with open_regular(path) as f:
            while True:
                raw = f.read(chunk_bytes)
                final = not raw
                pending = len(decoder.getstate()[0])  # the start of a character cut by the last read
                text: Chunk
                if raw.isascii() and not pending:
                    text, cr, crlf, nul = raw, b"\r", (b"\r\n", b"\n"), b"\x00"
                else:
                    try:
                        text = decoder.decode(raw, final=final)
                    except UnicodeDecodeError as e:
                        raise NotText(f"is not UTF-8 text (bad byte at offset {offset - pending + e.start})",
                                      "convert it to UTF-8") from None
                    cr, crlf, nul = "\r", ("\r\n", "\n"), "\x00"
                if offset == 0 and isinstance(text, str):
                    # A byte-order mark (Windows editors write one) is no character of the text.
                    text = text.removeprefix("\ufeff")
                offset += len(raw)
                if on_read is not None:
                    on_read(len(raw))
                if nul in text:
                    raise NotText("looks binary (contains NUL bytes)", "give a text file")
                if carry:
                    text = cr + text
                carry = not final and text.endswith(cr)
                if carry:
                    text = text[:-1]
                if cr in text:
                    text = text.replace(*crlf)
                if text:
                    yield text
                if final:
                    return
    except OSError as e:
        raise NotText(f"cannot be read ({e.strerror})", "check that you may read it") from None


def read_text(path: str | Path) -> str:
    """A whole (small) UTF-8 text file, refusing what cannot be trained on."""
    found = resolve(path)
    if not found.single:
        raise UserError(f"{path} is not a text file; give one UTF-8 text file")
    try:
        text = "".join(c if isinstance(c, str) else c.decode("ascii") for c in read_chunks(found.files[0].path))
    except NotText as e:
        raise UserError(f"data file {path} {e.reason}; {e.fix}") from None
    if not text:
        raise UserError(f"data file {path} is empty; give a text file with some text in it")
    if len(set(text)) < 2:
        raise UserError(f"data file {path} has a single distinct character; there is nothing to learn from it")
    return text
