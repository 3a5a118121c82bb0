"""What produced a run: the merged config.yaml and run.json (torch, device, commit, command line)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from attnlm import disk
from attnlm.config import Config, save_config


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
