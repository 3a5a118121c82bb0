"""Same config and seed on CPU, same run; the run folder says what produced it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch
from run_helpers import (
    ROOT,
    STEPS,
    assert_same_training,
    load_checkpoint,
    run_cli,
    step_losses,
    train_args,
)

from attnlm.store.run_info import git_commit


def test_same_config_and_seed_give_identical_losses_and_weights(tmp_path: Path, small_corpus: Path,
                                                                reference: Path) -> None:
    run_cli(*train_args(small_corpus, tmp_path, "again"), check=True)
    assert len(step_losses(reference)) == STEPS
    assert_same_training(tmp_path / "again", reference)


def test_run_folder_records_torch_version_device_and_git_commit(reference: Path) -> None:
    info = json.loads((reference / "run.json").read_text(encoding="utf-8"))
    assert info["torch"] == torch.__version__
    assert info["device"] == "cpu"
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        assert info["git_commit"] is None
        return
    # "+dirty" marks uncommitted changes to tracked files. The commit is HEAD as of the run, which is HEAD now
    # or one of its ancestors when someone committed while the tests ran.
    commit = info["git_commit"].removesuffix("+dirty")
    assert len(commit) == 40
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=ROOT, capture_output=True)
    assert ancestor.returncode == 0, f"{commit} is not a commit of this checkout's history"
    meta = load_checkpoint(reference / "checkpoints" / "last.pt")["meta"]
    assert meta["torch"] == torch.__version__ and meta["device"] == "cpu"


def test_git_commit_is_none_outside_a_git_checkout(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
