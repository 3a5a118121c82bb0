"""Data-parallel training through the real torchrun: 2 CPU processes over gloo."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from run_helpers import ROOT, TINY, metrics, run_cli, step_losses, wait_for_step

from attnlm.config import load_config
from attnlm.data import BatchSampler
from attnlm.distributed import rank_seed
from attnlm.store.checkpoint import load_checkpoint
from attnlm.store.run_dir import new_run_dir
from attnlm.training import Trainer

STEPS = 45  # 3 epochs x 15
# Per rank: 2 micro-batches of 8, so a step sees 2 x 2 x 8 = 32 sequences, like one process with 2 x 16.
PER_RANK = ["--set", "train.batch_size=8", "--set", "train.grad_accum_steps=2", "--set", "train.steps_per_epoch=15",
            "--set", "log.sample_chars=0", "--set", "log.print_every=1"]
SINGLE = ["--set", "train.batch_size=16", *PER_RANK[2:]]
TORCHRUN = Path(sys.executable).parent / "torchrun"


pytestmark = pytest.mark.usefixtures("one_thread")


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    # --standalone: a rendezvous on a free local port, so concurrent test runs do not collide.
    return [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", "-m", "attnlm", *args]


def ddp_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}


def run_torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ddp_env())


def start_torchrun(*args: str) -> subprocess.Popen:
    return subprocess.Popen(torchrun(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ddp_env())


def train(corpus: Path, runs: Path, *extra: str) -> list[str]:
    return ["train", "--config", "configs/tiny.yaml", *TINY, *PER_RANK, "--set", f"data.path={corpus}",
            "--set", f"log.dir={runs}", *extra]


def rank_tracebacks(output: str) -> list[str]:
    """Stack frames in attnlm's own code: a rank that crashed instead of reporting (torchrun's frames are its own)."""
    return [line for line in output.splitlines() if line.strip().startswith("File ") and "attnlm/" in line]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted 2-process run with a timestamped folder name."""
    runs = tmp_path_factory.mktemp("ddp")
    result = run_torchrun(*train(small_corpus, runs, "--name", "ddp"))
    assert result.returncode == 0, result.stdout + result.stderr
    folders = list(runs.iterdir())
    assert len(folders) == 1, f"the ranks must share one run folder, got {folders}"
    return folders[0], result


class RankStreams:
    """The windows both ranks of a 2-process run draw, as one batch: rank 0's rows, then rank 1's."""

    def __init__(self, data: torch.Tensor, block_size: int, batch_size: int, seed: int, world: int) -> None:
        self.samplers = [BatchSampler(data, block_size, batch_size, rank_seed(seed, r)) for r in range(world)]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(s.next() for s in self.samplers), strict=True)
        return torch.cat(xs), torch.cat(ys)

    def state(self) -> torch.Tensor:  # what the trainer saves in its checkpoints
        return self.samplers[0].state()


def test_two_processes_train_like_one_process_with_the_same_global_batch(
        ddp_run: tuple[Path, subprocess.CompletedProcess], small_corpus: Path, tmp_path: Path) -> None:
    run, result = ddp_run
    assert re.match(r"ddp-\d{8}-\d{6}$", run.name)
    # Only rank 0 reports and writes: one table, one event file, each step logged once.
    assert result.stdout.count("Epoch  Loss") == 1, result.stdout
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert [s for s, _ in step_losses(run)] == list(range(1, STEPS + 1))
    assert json.loads((run / "run.json").read_text())["processes"] == 2
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    streams = ckpt["rng"]["ranks"]
    assert len(streams) == 2 and not torch.equal(streams[0]["data"], streams[1]["data"])

    # The same 45 steps in this process, one batch of 2 x 16 made of exactly the windows the two ranks drew.
    one = single_process_run(small_corpus, tmp_path, "one", RankStreams)
    for (step, got), (_, want) in zip(step_losses(run), step_losses(one), strict=True):
        assert got == pytest.approx(want, rel=1e-5), f"step {step}"
    weights = load_checkpoint(one / "checkpoints" / "last.pt")["model"]
    for name, value in ckpt["model"].items():  # also: the same keys as a single-process checkpoint
        torch.testing.assert_close(value, weights[name], rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")

    # A plain single process drawing its own windows for the same global batch ends at about the same loss.
    plain = single_process_run(small_corpus, tmp_path, "plain")
    val, plain_val = ([r["val_loss"] for r in metrics(folder) if r["kind"] == "epoch"] for folder in (run, plain))
    assert abs(val[-1] - plain_val[-1]) < 0.05, (val, plain_val)


def single_process_run(corpus: Path, runs: Path, name: str, sampler: type | None = None) -> Path:
    """The 2-process run's config on one process with 2 x 16 per step, in this process, optionally with `sampler`."""
    cfg = load_config("configs/tiny.yaml", [a for a in TINY + SINGLE if a != "--set"] + [
        f"data.path={corpus}", f"log.dir={runs}", "log.tensorboard=false"])
    trainer = Trainer(cfg, Console(quiet=True))
    if sampler is not None:
        trainer.sampler = sampler(trainer.corpus.train, cfg.model.block_size, 8, cfg.train.seed, world=2)
    assert trainer.fit(new_run_dir(runs, name, False, False)) == 0
    return runs / name


def test_distributed_run_stopped_then_resumed_matches_the_uninterrupted_run(
        ddp_run: tuple[Path, subprocess.CompletedProcess], small_corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "stopped"
    proc = start_torchrun(*train(small_corpus, tmp_path, "--name", "stopped", "--set", "log.timestamp=false"))
    wait_for_step(run, 6, proc, timeout=90)
    proc.send_signal(signal.SIGTERM)  # to torchrun, which forwards it to both ranks
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, out + err
    assert out.count("SIGTERM: stopped at step") == 1, out + err
    assert f"resume with: torchrun --standalone --nproc_per_node=2 -m attnlm train --resume {run}" in out
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"]
    assert 6 <= stopped_at < STEPS

    resumed = run_torchrun("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # Each rank continued its own batch stream: the same losses and weights as never stopping, bit for bit.
    reference, _ = ddp_run
    assert step_losses(run) == step_losses(reference)
    got, want = load_checkpoint(run / "checkpoints" / "last.pt"), load_checkpoint(reference / "checkpoints" / "last.pt")
    for name in want["model"]:
        assert torch.equal(got["model"][name], want["model"][name]), name


def test_resuming_with_another_number_of_processes_is_refused(ddp_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    run, _ = ddp_run
    result = run_cli("train", "--resume", str(run))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: this run was trained by 2 process(es) and this job has 1; each process resumes its own batch stream, "
        "so resume it with torchrun with 2 processes in all (--nnodes x --nproc_per_node), or start a new run")


def test_user_error_under_torchrun_is_one_line_and_fails_the_job(tmp_path: Path, small_corpus: Path) -> None:
    result = run_torchrun(*train(small_corpus, tmp_path, "--set", "train.global_batch_size=40"))
    assert result.returncode != 0
    message = ("error: train.global_batch_size (40) must be a multiple of train.batch_size x processes = 8 x 2 = 16; "
               "change one of them")
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [message]
    assert f"traceback : {message}" in result.stderr, "torchrun's failure report names the cause"
    assert not rank_tracebacks(result.stderr) and not list(tmp_path.glob("*/checkpoints")), result.stderr


def test_a_rank_that_dies_ends_the_whole_job(tmp_path: Path, small_corpus: Path) -> None:
    run = tmp_path / "killed"
    proc = start_torchrun(*train(small_corpus, tmp_path, "--name", "killed", "--set", "log.timestamp=false",
                                 "--set", "train.epochs=50"))
    wait_for_step(run, 3, proc, timeout=90)
    victim = ranks_of(proc.pid)[1]
    os.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    # Real time is the point here: gloo's collective timeout is 30 minutes, so a surviving rank left waiting on
    # its dead peer would take that long. 45 s is generous for torchrun to notice and stop the job on a loaded
    # machine, and still far below any timeout.
    assert time.monotonic() - started < 45, "the surviving rank must not wait out a collective timeout"
    root_cause = err.split("Root Cause")[-1]
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)", root_cause) and "SIGKILL" in root_cause, err
    assert not rank_tracebacks(err), err


def ranks_of(torchrun_pid: int) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != torchrun_pid:
                continue
            env = dict(item.split("=", 1) for item in (entry / "environ").read_bytes().decode().split("\0") if "=" in item)
            found[int(env["RANK"])] = int(entry.name)
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return found
