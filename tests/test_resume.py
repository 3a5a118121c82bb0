"""Exact resume: a run stopped by signals and resumed equals an uninterrupted run, bit for bit (CPU)."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

from run_helpers import (
    STEPS,
    assert_same_tensors,
    assert_same_training,
    epoch_results,
    load_checkpoint,
    optimizer_states,
    run_cli,
    snapshot,
    start,
    step_losses,
    train_args,
    wait_for_step,
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def test_run_stopped_by_signals_and_resumed_matches_uninterrupted_run(tmp_path: Path, small_corpus: Path,
                                                                       reference: Path) -> None:
    """Two stops, wherever the signals land: by SIGINT early in epoch 1, then by SIGTERM in the resumed run."""
    run = tmp_path / "stopped"
    stops = [(8, signal.SIGINT, 130), (50, signal.SIGTERM, 143)]
    resumed_from = 0
    for i, (at, sig, code) in enumerate(stops):
        proc = start(*train_args(small_corpus, tmp_path, "stopped")) if i == 0 else start("train", "--resume", str(run))
        wait_for_step(run, max(at, resumed_from + 2), proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == code, out + err
        assert "Traceback" not in out + err
        assert f"{sig.name} received: finishing the current step" in err
        stopped = int(re.search(rf"{sig.name}: stopped at step (\d+) and saved", out).group(1))
        assert f"resume with: attnlm train --resume {run}\n" in out
        payload = load_checkpoint(run / "checkpoints" / "last.pt")
        assert payload["state"]["step"] == stopped > resumed_from
        assert step_losses(run)[-1][0] == stopped  # every finished step is logged, none after the checkpoint
        resumed_from = stopped
    result = run_cli("train", "--resume", str(run), check=True)
    assert f"resuming {run}" in result.stdout and f"from step {resumed_from}" in result.stdout

    assert_same_training(run, reference)
    # TensorBoard: one point per step across the sessions' event files, equal to the uninterrupted run's.
    got, want = EventAccumulator(str(run)), EventAccumulator(str(reference))
    got.Reload()
    want.Reload()
    for tag, steps in (("loss/train_step", list(range(1, STEPS + 1))), ("loss/val", [30, 60, 90])):
        assert [e.step for e in got.Scalars(tag)] == steps, tag
        assert [e.value for e in got.Scalars(tag)] == [e.value for e in want.Scalars(tag)], tag


def test_resuming_a_finished_run_changes_nothing(tmp_path: Path, reference: Path) -> None:
    run = tmp_path / "finished"
    shutil.copytree(reference, run)
    before = snapshot(run)
    result = run_cli("train", "--resume", str(run))
    assert result.returncode == 0, result.stderr
    assert f"{run} already finished (step {STEPS}); to train it further raise train.epochs" in result.stdout
    assert snapshot(run) == before


def test_max_steps_stop_ends_the_run_and_raising_it_continues_the_same_batches(tmp_path: Path,
                                                                                small_corpus: Path) -> None:
    """max_steps is the end of a run: the partial epoch is evaluated and closed, and the LR schedule was
    annealed to it. Raising it on --resume continues the run on a longer schedule, so only within warmup
    (where the LR does not depend on the horizon) can it equal a run planned that long from the start;
    there it must, step for step and weight for weight."""
    warm = ("--set", "train.warmup_steps=60", "--set", "log.sample_chars=0")
    run_cli(*train_args(small_corpus, tmp_path, "planned", *warm, "--set", "train.max_steps=45"), check=True)
    run_cli(*train_args(small_corpus, tmp_path, "extended", *warm, "--set", "train.max_steps=20"), check=True)
    run = tmp_path / "extended"
    assert [(e[0], e[1]) for e in epoch_results(run)] == [(1, 20)]  # the partial epoch was closed
    result = run_cli("train", "--resume", str(run), "--set", "train.max_steps=45", check=True)
    assert "from step 20" in result.stdout
    planned = tmp_path / "planned"
    assert step_losses(run) == step_losses(planned)
    assert [s for s, _ in step_losses(run)] == list(range(1, 46))
    assert [(e[0], e[1]) for e in epoch_results(run)] == [(1, 20), (2, 45)]  # epochs: 1-20, then 21-45
    assert_same_tensors(load_checkpoint(run / "checkpoints" / "last.pt")["model"],
                        load_checkpoint(planned / "checkpoints" / "last.pt")["model"], "last.pt")


def test_muon_run_stopped_and_resumed_matches_uninterrupted_run(tmp_path: Path, small_corpus: Path) -> None:
    """With train.optimizer=muon the checkpoint carries both optimizers (Muon's momentum, AdamW's moments)."""
    muon = ("--set", "train.optimizer=muon", "--set", "train.epochs=2", "--set", "log.tensorboard=false",
            "--set", "log.sample_chars=0")
    run_cli(*train_args(small_corpus, tmp_path, "whole", *muon), check=True)
    run = tmp_path / "stopped"
    proc = start(*train_args(small_corpus, tmp_path, "stopped", *muon))
    wait_for_step(run, 8, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["optimizer"]
    assert set(saved) == {"adamw", "muon"}
    assert all("momentum_buffer" in s for _, s in optimizer_states(saved["muon"]))
    wrong = run_cli("train", "--resume", str(run), "--set", "train.optimizer=adamw")
    assert wrong.returncode == 2 and "was trained with train.optimizer=muon, not adamw" in wrong.stderr
    run_cli("train", "--resume", str(run), check=True)
    assert_same_training(run, tmp_path / "whole", steps=60)
