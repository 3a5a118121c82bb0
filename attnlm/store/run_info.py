"""What produced a run: the merged config.yaml and run.json (torch, device, commit, command line, and what tells
the run's own config file and training data from edited ones)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from attnlm import disk
from attnlm.config import Config

if TYPE_CHECKING:
    from attnlm.data import Corpus

CONFIG_FILE = "config.yaml"
INFO_FILE = "run.json"
HASH_CHUNK = 1 << 24


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


def config_text(cfg: Config) -> str:
    """config.yaml as attnlm writes it."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_fingerprint(corpus: Corpus) -> dict[str, Any]:
    """What tells the ids a run trains on from other ones: the split sizes, a sha256 of each split (whose cost
    CPUs with SHA instructions keep low), and the preparation's key, which spares a resume the hashing while
    the same preparation is found again."""
    meta = corpus.meta or {}
    digests = []
    for name, ids in (("train", corpus.train), ("val", corpus.val)):
        path = corpus.folder / f"{name}.bin" if corpus.folder is not None else None
        if path is not None and path.is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(HASH_CHUNK):
                    digest.update(chunk)
            digests.append(digest.hexdigest())
        else:
            digests.append(_sha256(ids.numpy().tobytes()))
    return {"key": meta.get("key"), "train": len(corpus.train), "val": len(corpus.val), "sha256": digests}


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """run.json, or {} when it is missing or unreadable (it only informs)."""
    try:
        info = json.loads((run_dir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def config_written(run_dir: Path, text: str) -> bool:
    """Whether `text` is config.yaml as attnlm last wrote it (not edited since)."""
    return read_run_info(run_dir).get("config_sha256") == _sha256(text.encode("utf-8"))


def _write(path: Path, text: str) -> None:
    disk.atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_run_info(cfg: Config, run_dir: Path, corpus: Corpus | None = None) -> None:
    """The merged config, and what produced the run: torch version, device, commit, command line, the data."""
    import torch

    from attnlm import distributed
    from attnlm.device import resolve_device

    text = config_text(cfg)
    info = {"torch": str(torch.__version__), "device": str(resolve_device(cfg.train.device)),
            "git_commit": git_commit(Path(__file__).resolve().parent.parent),
            "argv": sys.argv,
            "processes": distributed.current().world, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config_sha256": _sha256(text.encode("utf-8")),
            "data": data_fingerprint(corpus) if corpus is not None else None}
    _write(run_dir / CONFIG_FILE, text)
    _write(run_dir / INFO_FILE, json.dumps(info, indent=2) + "\n")


def update_run_info(run_dir: Path, cfg: Config | None = None, data: dict[str, Any] | None = None) -> None:
    """Rewrite config.yaml with `cfg` and record it, and/or record `data`, keeping the rest of run.json."""
    info = read_run_info(run_dir)
    if cfg is not None:
        text = config_text(cfg)
        _write(run_dir / CONFIG_FILE, text)
        info["config_sha256"] = _sha256(text.encode("utf-8"))
    if data is not None:
        info["data"] = data
    _write(run_dir / INFO_FILE, json.dumps(info, indent=2) + "\n")
