"""Helpers shared by the tests: the real CLI in a subprocess, training runs and their outputs."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import locale
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import forked_cli
import pytest
import torch

from attnlm.store.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "shakespeare.txt"  # prepared by `make test` (attnlm data shakespeare)
SMALL_CHARS = 60_000

# Tiny model and short epochs: a whole CLI training run takes a few seconds on 2 cores. Drawing the attention
# images (matplotlib) would cost more than the training itself, so only the shared trained_run draws them.
TINY = [
    "--set", "model.block_size=32", "--set", "model.n_layer=2", "--set", "model.n_head=2",
    "--set", "model.n_embd=32", "--set", "train.batch_size=16", "--set", "train.epochs=3",
    "--set", "train.steps_per_epoch=30", "--set", "train.lr=3e-3", "--set", "train.warmup_steps=5",
    "--set", "log.sample_chars=40", "--set", "log.attention_images=false",
]


# One thread per process: the model is tiny, so extra threads only spin against the other tests (2.5x less CPU
# measured), and pytest runs one worker per core. Results are bit-exact for a fixed thread count, and every run
# these tests compare uses this one.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a test's CLI process: a 100-column terminal, one thread (ONE_THREAD)."""
    return {**os.environ, "COLUMNS": "100", **ONE_THREAD, **(extra or {})}


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 300,
            env: dict[str, str] | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
    """`python -m attnlm ARGS` as a user would run it, capturing output: in a fork of a warm process
    (forked_cli.py), or with `fresh` (or ATTNLM_TEST_FRESH=1) in a new interpreter, for what depends on start-up."""
    command = [sys.executable, "-m", "attnlm", *args]
    if fresh or os.environ.get("ATTNLM_TEST_FRESH") == "1":
        result = subprocess.run(command, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout,
                                env=cli_env(env))
    else:
        result = _run_forked(command, list(args), cwd or ROOT, cli_env(env), timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"attnlm {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@functools.cache
def _fork_server() -> multiprocessing.context.ForkServerContext:
    """This worker's fork server, started with the first forked run and kept until the worker exits."""
    forks = multiprocessing.get_context("forkserver")
    forks.set_forkserver_preload(["forked_cli", *forked_cli.PRELOAD])
    return forks


def _run_forked(command: list[str], args: list[str], cwd: Path, env: dict[str, str],
                timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="attnlm-cli-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        out.touch()
        err.touch()
        child = _fork_server().Process(target=forked_cli.main_in_fork, args=(args, str(cwd), env, str(out), str(err)))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(command, timeout, _text(out), _text(err))
        return subprocess.CompletedProcess(command, child.exitcode, _text(out), _text(err))


def _text(path: Path) -> str:
    """A file's bytes decoded as subprocess.run(text=True) decodes a pipe (universal newlines included)."""
    return io.TextIOWrapper(io.BytesIO(path.read_bytes()), encoding=locale.getpreferredencoding(False)).read()


STEPS = 90  # TINY: 3 epochs x 30 steps
# print_every=1 logs every step's loss, which is what the bit-for-bit comparisons read.
LOG_EVERY_STEP = ["--set", "log.print_every=1"]




def train_args(corpus: Path, runs: Path, name: str, *extra: str) -> list[str]:
    return ["train", "--config", "configs/tiny.yaml", *TINY, *LOG_EVERY_STEP, "--set", f"data.path={corpus}",
            "--set", f"log.dir={runs}", "--set", "log.timestamp=false", "--name", name, *extra]


class RunsCode:
    """Unpickling this calls os.system: a checkpoint holding it would run a shell command when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


_reference: dict[Path, Path] = {}


def reference_run(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """One uninterrupted run per test session, the yardstick of the resume and reproducibility tests."""
    if corpus not in _reference:
        runs = tmp_path_factory.mktemp("reference")
        run_cli(*train_args(corpus, runs, "reference"), check=True)
        _reference[corpus] = runs / "reference"
    return _reference[corpus]


def start(*args: str) -> subprocess.Popen:
    """`python -m attnlm ARGS` in the background, its output kept in pipes."""
    return subprocess.Popen([sys.executable, "-m", "attnlm", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []


def last_logged_step(run: Path) -> int:
    """The step of the newest complete step line (a line being written right now is skipped)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    step = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError):
            pass
    return step


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen, timeout: float = 60,
             poll: float = 0.005) -> None:
    """Poll until `condition()` holds; fail (killing `proc`) if training exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training exited {proc.returncode} while waiting for {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    wait_for(lambda: last_logged_step(run) >= step, f"step {step}", proc, timeout)


def step_losses(run: Path) -> list[tuple[int, float]]:
    return [(row["step"], row["loss"]) for row in metrics(run) if row["kind"] == "step"]


def epoch_results(run: Path) -> list[tuple]:
    """What an epoch row says about the model (its timings naturally differ between runs). The Observation is
    in it: after a resume, what attention did in the first epoch is read against the saved epoch before."""
    keys = ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "observation")
    return [tuple(row[k] for k in keys) for row in metrics(run) if row["kind"] == "epoch"]


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


def optimizer_states(saved: dict) -> list[tuple[int, dict]]:
    """(parameter index, moments) of a saved optimizer: AdamW's, or with train.optimizer=muon AdamW's then Muon's."""
    parts = [saved] if "state" in saved else [saved["adamw"], saved["muon"]]
    return [item for part in parts for item in sorted(part["state"].items())]


def assert_same_training(run: Path, reference: Path, steps: int = STEPS) -> None:
    """Same per-step losses, epoch results, final weights and optimizer moments, bit for bit."""
    losses, expected = step_losses(run), step_losses(reference)
    assert [s for s, _ in losses] == list(range(1, steps + 1)), "each step must be logged exactly once"
    assert losses == expected
    assert epoch_results(run) == epoch_results(reference)
    for name in ("last.pt", "best.pt"):
        got, want = load_checkpoint(run / "checkpoints" / name), load_checkpoint(reference / "checkpoints" / name)
        assert_same_tensors(got["model"], want["model"], name)
        for (_, s1), (_, s2) in zip(optimizer_states(got["optimizer"]), optimizer_states(want["optimizer"]),
                                    strict=True):
            assert_same_tensors(s1, s2, f"{name} optimizer state")
        assert got["state"]["step"] == want["state"]["step"] == steps


def snapshot(*roots: Path) -> dict[str, tuple[str, int]]:
    """path -> (sha256, mtime_ns) of every file under `roots`: compare two to see what a command changed."""
    files = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            try:
                files[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            except FileNotFoundError:  # a live run's temporary file, renamed into place since the listing
                continue
    return files
