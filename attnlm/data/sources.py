"""Where the text comes from: a file, a folder, a glob or a list of them, read as UTF-8 in chunks."""

from __future__ import annotations

import codecs
import glob
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from attnlm.errors import UserError

CHUNK_BYTES = 8 << 20  # read size: big enough for fast numpy work, small enough to keep memory flat
GLOB_CHARS = "*?["

Spec = str | Path | Sequence[str | Path]
Chunk = str | bytes  # bytes: pure ASCII, one byte a character


@dataclass(frozen=True)
class SourceFile:
    path: Path
    size: int
    mtime_ns: int


class NotText(Exception):
    """A file that cannot be trained on; `reason` completes "data file X ..." and `fix` says what to do."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason, self.fix = reason, fix


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


def _walk(folder: Path) -> list[Path]:
    """Every file under `folder`, recursively, in sorted order; hidden files and folders (.git...) left out."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return sorted(found)


def resolve(spec: Spec) -> tuple[list[SourceFile], bool]:
    """The files `spec` names, in order, each once; and whether it is one file named outright (then a bad
    file is an error, while files found in a folder or by a glob are skipped with a line each)."""
    paths: list[Path] = []
    items = entries(spec)
    for entry in items:
        path = Path(entry).expanduser()
        if path.is_file():
            paths.append(path)
        elif path.is_dir():
            found = _walk(path)
            if not found:
                raise UserError(f"data folder {entry} holds no files; put text files in it or set data.path elsewhere")
            paths += found
        elif any(c in entry for c in GLOB_CHARS):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(entry), recursive=True))
            files = [p for p in found if p.is_file()] + [f for p in found if p.is_dir() for f in _walk(p)]
            if not files:
                raise UserError(f"data.path pattern {entry} matches no files; check it (** spans folders)")
            paths += sorted(files)
        elif path.exists():
            raise UserError(f"data path {entry} is neither a file nor a folder; give text files")
        else:
            raise _missing(entry)
    seen: set[Path] = set()
    files = []
    for path in paths:
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            st = real.stat()
        except OSError as e:
            raise UserError(f"cannot read data file {path} ({e.strerror}); check that it exists and you may read it") from None
        files.append(SourceFile(real, st.st_size, st.st_mtime_ns))
    single = len(items) == 1 and Path(items[0]).expanduser().is_file()
    return files, single


def read_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES,
                on_read: Callable[[int], object] | None = None) -> Iterator[Chunk]:
    """The text of a UTF-8 file in chunks of about `chunk_bytes`, with \\r\\n read as \\n and a leading
    byte-order mark dropped; `on_read` is
    told the bytes of each read (for a progress bar). A chunk that is pure ASCII comes as the bytes read
    (one byte a character, valid UTF-8 as it is): decoding it would only cost time.

    Raises NotText for a file that is not UTF-8 or holds NUL bytes (a binary file).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes read before this chunk
    carry = False  # a trailing \r held back, in case the next chunk starts with \n
    try:
        with open(path, "rb") as f:
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
    files, _ = resolve(path)
    if len(files) != 1 or not Path(path).is_file():
        raise UserError(f"{path} is not a text file; give one UTF-8 text file")
    try:
        text = "".join(c if isinstance(c, str) else c.decode("ascii") for c in read_chunks(files[0].path))
    except NotText as e:
        raise UserError(f"data file {path} {e.reason}; {e.fix}") from None
    if not text:
        raise UserError(f"data file {path} is empty; give a text file with some text in it")
    if len(set(text)) < 2:
        raise UserError(f"data file {path} has a single distinct character; there is nothing to learn from it")
    return text
