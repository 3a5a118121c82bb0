"""Shared fixtures: a small real corpus, the real CLI in a subprocess, one trained run per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "shakespeare.txt"  # prepared by `make test` (attnlm data shakespeare)
SMALL_CHARS = 60_000

# Tiny model and short epochs: a whole CLI training run takes a few seconds on 2 cores.
TINY = [
    "--set", "model.block_size=32", "--set", "model.n_layer=2", "--set", "model.n_head=2",
    "--set", "model.n_embd=32", "--set", "train.batch_size=16", "--set", "train.epochs=3",
    "--set", "train.steps_per_epoch=30", "--set", "train.lr=3e-3", "--set", "train.warmup_steps=5",
    "--set", "log.sample_chars=40",
]


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 60k characters of the default corpus: real text, small enough for fast tests."""
    if not CORPUS.is_file():
        pytest.fail(f"{CORPUS} is missing: run `make data` (make test does it)")
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(CORPUS.read_text(encoding="utf-8")[:SMALL_CHARS], encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m attnlm ARGS` exactly as a user would, capturing output."""
    full_env = {**os.environ, "COLUMNS": "100", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "attnlm", *args], cwd=cwd or ROOT, capture_output=True,
                            text=True, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"attnlm {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """One real training run through the CLI, shared by the tests that only read it."""
    runs = tmp_path_factory.mktemp("runs")
    result = run_cli("train", "--config", "configs/tiny.yaml", *TINY, "--set", f"data.path={small_corpus}",
                     "--set", f"log.dir={runs}", "--name", "shared", "--set", "log.timestamp=false", check=True)
    return runs / "shared", result


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Path:
    """The uninterrupted run that the resume, interrupt, error and reproducibility tests compare against."""
    from run_helpers import reference_run  # imported here: run_helpers itself imports this module

    return reference_run(tmp_path_factory, small_corpus)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """In-process training on one thread: on 2 shared cores two threads wait on each other (measured 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
