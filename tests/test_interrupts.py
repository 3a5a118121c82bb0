"""Interrupts, kills and numerical faults never cost more than the steps since the last checkpoint."""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from run_helpers import (
    ONE_THREAD,
    ROOT,
    assert_same_training,
    last_logged_step,
    load_checkpoint,
    run_cli,
    snapshot,
    start,
    step_losses,
    train_args,
    wait_for,
    wait_for_step,
)

from attnlm.disk import TEMP_PREFIX


def test_second_ctrl_c_exits_at_once_and_leaves_a_whole_checkpoint(tmp_path: Path, small_corpus: Path) -> None:
    # 40 micro-batches per step make a step long enough for the second Ctrl-C to land inside it.
    args = train_args(small_corpus, tmp_path, "twice", "--set", "train.grad_accum_steps=40",
                      "--set", "train.epochs=1", "--set", "train.steps_per_epoch=5", "--set", "train.checkpoint_every=1")
    run, err_path = tmp_path / "twice", tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "attnlm", *args], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=err, text=True, env={**os.environ, **ONE_THREAD})
        wait_for_step(run, 2, proc)
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "SIGINT received" in err_path.read_text(), "the first SIGINT to be noticed", proc, poll=0.0002)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    stderr = err_path.read_text()
    assert proc.returncode == 130
    assert f"SIGINT again: exiting now; resume from the last checkpoint with: attnlm train --resume {run}\n" in stderr
    assert "stopped at step" not in out, "the second Ctrl-C must not wait for the step to finish"
    assert "Traceback" not in out + stderr
    # Resuming after an abrupt exit is proven by the SIGKILL test; here: the checkpoint is whole and current.
    # A step is logged just before its checkpoint is written; the exit may have come in between.
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last_logged_step(run) - 1 <= payload["state"]["step"] <= last_logged_step(run)


def test_sigkill_at_any_moment_never_leaves_a_torn_checkpoint(tmp_path: Path, small_corpus: Path,
                                                                reference: Path) -> None:
    """Kill -9 a training that saves every step, half the time while a checkpoint is being written."""
    run = tmp_path / "killed"
    folder = run / "checkpoints"
    rng = random.Random(5)
    kills, torn_saves, saved_step = 0, 0, 0
    # At least 4 kills; more (up to 8, which leaves steps to spare) until one has provably landed inside a save
    # and left its temp file.
    while kills < 4 or (torn_saves == 0 and kills < 8):
        if kills == 0:
            proc = start(*train_args(small_corpus, tmp_path, "killed", "--set", "train.checkpoint_every=1"))
        else:
            proc = start("train", "--resume", str(run))
        # Lines past the checkpoint's step + 1 can only come from this process: it has made progress.
        wait_for_step(run, saved_step + 3, proc)
        if kills % 2 == 0:
            old = set(folder.glob(TEMP_PREFIX + "*"))
            wait_for(lambda old=old: bool(set(folder.glob(TEMP_PREFIX + "*")) - old), "a checkpoint write", proc, poll=0.0002)
        else:
            time.sleep(rng.uniform(0, 0.05))  # real time is the point: a kill at an arbitrary moment of the training
        logged = last_logged_step(run)
        proc.kill()
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        torn_saves += bool(list(folder.glob(TEMP_PREFIX + "*")))
        last = load_checkpoint(folder / "last.pt")["state"]  # raises on a truncated or corrupt file
        if (folder / "best.pt").exists():
            # best.pt is never older than what last.pt believes is the best epoch (it may be newer).
            assert load_checkpoint(folder / "best.pt")["state"]["best_epoch"] >= last["best_epoch"]
        else:
            assert last["best_epoch"] == 0
        saved_step = last["step"]
        assert saved_step >= logged - 1, "checkpoint_every=1 must lose at most one step"
    assert torn_saves, "no kill landed inside a checkpoint write"

    run_cli("train", "--resume", str(run), check=True)
    assert not list(folder.glob(TEMP_PREFIX + "*")), "resume must clean up the temp files of killed saves"
    # Checkpointing every step and being killed repeatedly changes nothing about the training itself.
    assert_same_training(run, reference)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path, reference: Path) -> None:
    run = tmp_path / "diverges"
    shutil.copytree(reference, run)
    before = snapshot(run / "checkpoints")
    # One more epoch at an absurd learning rate: the first update blows the weights up, the next loss is inf/nan.
    result = run_cli("train", "--resume", str(run), "--set", "train.epochs=4", "--set", "train.lr=1e30")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        rf"error: non-finite (loss|gradient norm) at step 9[12]; training stopped before saving or logging it "
        rf"\(last good checkpoint: {re.escape(str(run))}/checkpoints/last\.pt\); lower train\.lr or raise "
        rf"train\.warmup_steps", lines[0]), lines[0]
    assert snapshot(run / "checkpoints") == before
    # The guard reads a step's verdict one step later (no host sync per step on CUDA), yet nothing of the
    # non-finite step was logged: every logged loss is finite and the log stops before the step named.
    logged = step_losses(run)
    assert all(math.isfinite(loss) for _, loss in logged)
    assert logged[-1][0] < int(re.search(r"at step (\d+)", lines[0]).group(1))


def test_a_run_in_training_cannot_be_resumed_or_overwritten_at_the_same_time(tmp_path: Path, small_corpus: Path) -> None:
    # Endless (it is stopped with Ctrl-C below), so it is still training whatever the machine's speed.
    args = train_args(small_corpus, tmp_path, "busy", "--set", "train.checkpoint_every=5",
                      "--set", "train.epochs=100000")
    proc = start(*args)
    run = tmp_path / "busy"
    try:
        wait_for(lambda: (run / "checkpoints" / "last.pt").is_file(), "the first checkpoint", proc)
        before = snapshot(run)
        for extra in (["train", "--resume", str(run)], [*args, "--overwrite"]):
            result = run_cli(*extra)
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip().splitlines() == [
                f"error: run {run} is being trained by another attnlm process right now; "
                "let it finish or stop it (Ctrl-C) first"]
        assert run.is_dir() and proc.poll() is None  # the live run was neither deleted nor disturbed
        # Every file it had is still there (its temporary files, renamed into place meanwhile, aside).
        assert {f for f in snapshot(run) if TEMP_PREFIX not in f} >= {f for f in before if TEMP_PREFIX not in f}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert proc.returncode == 130
    resumed = run_cli("train", "--resume", str(run), "--set", "train.epochs=1")  # the lock went with the process
    assert resumed.returncode == 0, resumed.stderr
