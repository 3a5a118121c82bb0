"""A run that train.max_time ended stays ended: every checkpoint holds the training time so far, and resuming a
run whose budget is spent trains nothing, unless the budget is raised."""

from __future__ import annotations

import json
from pathlib import Path

from run_helpers import run_cli, train_args

from attnlm.store.checkpoint import load_checkpoint

BUDGET = ["--set", "train.epochs=100000", "--set", "log.tensorboard=false", "--set", "log.sample_chars=0"]


def last_state(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")["state"]


def test_a_run_ended_by_its_time_budget_is_finished_and_a_raised_budget_continues_it(tmp_path: Path,
                                                                                   small_corpus: Path) -> None:
    done = run_cli(*train_args(small_corpus, tmp_path, "budget", *BUDGET, "--set", "train.max_time=1.5"), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "budget"
    state = last_state(run)
    assert state["spent_budget"] == 1.5
    # The training time is saved, not only that of earlier processes. Real time is the point of this run (a real
    # 1.5 s budget through the CLI): the bound is generous, as a loaded machine may overrun by a step or an evaluation.
    assert 0 < state["elapsed"] < 1.5 + 10
    summary = (run / "summary.json").read_bytes()

    again = run_cli("train", "--resume", str(run), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{run} already finished (step {state['step']})" in again.stdout
    assert "train.max_time" in again.stdout
    assert last_state(run)["step"] == state["step"] and (run / "summary.json").read_bytes() == summary

    # Raised to 3 s beyond the time already spent, so a loaded machine that overran 1.5 s still has steps to take.
    raised = round(state["elapsed"] + 3, 1)
    longer = run_cli("train", "--resume", str(run), "--set", f"train.max_time={raised}", timeout=120)
    assert longer.returncode == 0, longer.stdout + longer.stderr
    resumed = last_state(run)
    assert resumed["step"] > state["step"] and resumed["spent_budget"] == raised
    assert resumed["elapsed"] > state["elapsed"]
    assert json.loads((run / "summary.json").read_text(encoding="utf-8"))["steps"] == resumed["step"]


def test_every_checkpoint_holds_the_training_time_so_far(tmp_path: Path, small_corpus: Path) -> None:
    """An epoch-end checkpoint (the one a killed run resumes from) counts this process's training time too."""
    done = run_cli(*train_args(small_corpus, tmp_path, "timed", "--set", "train.epochs=2"), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "timed"
    best, last = (load_checkpoint(run / "checkpoints" / name)["state"] for name in ("best.pt", "last.pt"))
    assert last["spent_budget"] == 0  # no budget ended it
    assert last["elapsed"] > 0 and best["elapsed"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    # Saved just after the last epoch's row was written, so at least that row's elapsed time.
    assert last["elapsed"] >= epochs[-1]["elapsed"]
