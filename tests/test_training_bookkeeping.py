"""What the training loop records and keeps: the random streams a resume restores (dropout included), the
train accuracy of the epoch rows, which epoch best.pt holds, and the end of a run bounded by train.max_time.

Most runs are in-process Trainers of a few steps on the tiny model (as in test_accumulation.py); only the
real-time max_time run goes through the CLI."""

from __future__ import annotations

import errno
import io
import json
import math
import re
import signal
from pathlib import Path

import pytest
import torch
from rich.console import Console
from run_helpers import (
    assert_same_tensors,
    assert_same_training,
    load_checkpoint,
    metrics,
    run_cli,
    snapshot,
    step_losses,
    train_args,
)

from attnlm import disk
from attnlm.api.run import resume
from attnlm.config import load_config
from attnlm.data import BatchSampler
from attnlm.errors import MachineError, NumericalError
from attnlm.store import checkpoint as checkpoint_store
from attnlm.store.run_dir import new_run_dir
from attnlm.training import Trainer
from attnlm.training.loop import FIT_AFTER
from attnlm.training.schedule import learning_rate
from attnlm.training.state import TrainState

# The tiny model, short epochs, every step's loss in metrics.jsonl, no sample or TensorBoard (nothing here reads them).
TINY = ["model.block_size=32", "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "train.batch_size=16",
        "train.lr=3e-3", "train.warmup_steps=2", "train.eval_batch_size=256", "log.print_every=1",
        "log.sample_chars=0", "log.tensorboard=false"]

pytestmark = pytest.mark.usefixtures("one_thread")


def make_trainer(corpus: Path, runs: Path, *overrides: str, console: Console | None = None) -> Trainer:
    cfg = load_config("configs/tiny.yaml", [f"data.path={corpus}", f"log.dir={runs}", *TINY, *overrides])
    return Trainer(cfg, console or Console(quiet=True))


def epoch_rows(run: Path) -> list[dict]:
    return [row for row in metrics(run) if row["kind"] == "epoch"]


def weights_after_step(trainer: Trainer, step: int) -> dict[str, torch.Tensor]:
    """Filled with a copy of the model's weights as the optimizer's `step`-th update leaves them."""
    taken: dict[str, torch.Tensor] = {}
    count = [0]

    def hook(optimizer: object, args: object, kwargs: object) -> None:
        count[0] += 1
        if count[0] == step:
            taken.update({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    trainer.optimizer.register_step_post_hook(hook)
    return taken


# ----- 1. a resume restores every random stream, dropout's included -------------------------------------------
def test_run_with_dropout_stopped_mid_epoch_and_resumed_matches_uninterrupted_run(tmp_path: Path,
                                                                                   small_corpus: Path) -> None:
    """With model.dropout > 0 every step draws dropout masks from torch's generator: a resumed run continues
    that stream (and the batch sampler's) where the checkpoint left it, so its losses and weights are the
    uninterrupted run's, bit for bit."""
    schedule = ("model.dropout=0.1", "train.epochs=2", "train.steps_per_epoch=6")
    before = signal.getsignal(signal.SIGINT)  # pytest's default_int_handler, or SIG_IGN under `trap '' INT`
    whole = make_trainer(small_corpus, tmp_path, *schedule)
    assert whole.fit(new_run_dir(tmp_path, "whole", False, False)) == 0
    assert signal.getsignal(signal.SIGINT) is before  # fit gives back the handler it found

    printed = io.StringIO()
    stopped = make_trainer(small_corpus, tmp_path, *schedule, console=Console(file=printed, width=100))
    assert stopped.model.training and stopped.cfg.model.dropout == 0.1  # dropout is live in the steps
    updates = [0]

    def ctrl_c_during_step_4(optimizer: object, args: object, kwargs: object) -> None:
        updates[0] += 1
        if updates[0] == 4:
            # A real SIGINT, taken by the trainer's own handler (a default handler would end the test session).
            assert signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN)
            signal.raise_signal(signal.SIGINT)

    stopped.optimizer.register_step_post_hook(ctrl_c_during_step_4)
    run = new_run_dir(tmp_path, "stopped", False, False)
    assert stopped.fit(run, exit_process=False) == 130
    assert signal.getsignal(signal.SIGINT) is before  # also when a signal stopped it
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == 4
    assert [s for s, _ in step_losses(run)] == [1, 2, 3, 4]
    assert printed.getvalue().endswith(f"\nSIGINT: stopped at step 4 and saved {run}/checkpoints/last.pt; resume with: "
                                       f"attnlm train --resume {run}\n")

    assert resume(run, console=Console(quiet=True)).exit_code == 0
    assert step_losses(run) == step_losses(tmp_path / "whole")
    assert_same_training(run, tmp_path / "whole", steps=12)
    assert untimed_rows(run) == untimed_rows(tmp_path / "whole")  # every record once, as the whole run wrote it


# ----- 2. train accuracy ------------------------------------------------------------------------------------
def accuracy_run(corpus: Path, runs: Path, name: str, batch_size: int, accum: int) -> tuple[Path, list[dict]]:
    """Train 2 epochs of 3 steps (last.pt also every 2 steps, so an epoch's totals are folded more than once);
    returns the run and, per training forward pass, its input, its predictions and the batch the sampler drew
    for it (replayed from a copy of the sampler's generator)."""
    trainer = make_trainer(corpus, runs, f"train.batch_size={batch_size}", f"train.grad_accum_steps={accum}",
                           "train.epochs=2", "train.steps_per_epoch=3", "train.checkpoint_every=2")
    replay = BatchSampler(trainer.corpus.train, trainer.cfg.model.block_size, batch_size, seed=0)
    replay.set_state(trainer.sampler.state())
    forwards: list[dict] = []

    def record(module: torch.nn.Module, args: tuple, output: tuple) -> None:
        if module.training and torch.is_grad_enabled():  # a training step's forward, not an evaluation
            x, y = replay.next()
            forwards.append({"input": args[0].detach().clone(), "x": x, "y": y,
                             "predicted": output[0].detach().argmax(-1)})

    trainer.model.register_forward_hook(record)
    run = new_run_dir(runs, name, False, False)
    assert trainer.fit(run) == 0
    assert len(forwards) == 2 * 3 * accum
    for f in forwards:
        assert torch.equal(f["input"], f["x"]), "the replayed sampler must draw the batches training saw"
    return run, forwards


def test_epoch_train_accuracy_counts_correct_next_character_predictions_over_all_micro_batches(
        tmp_path: Path, small_corpus: Path) -> None:
    """The epoch row's train_accuracy is the share of the epoch's next-character predictions (every
    micro-batch of every step) whose argmax is the target, and its train_loss the mean of its steps' losses."""
    run, forwards = accuracy_run(small_corpus, tmp_path, "b8x4", batch_size=8, accum=4)
    rows = epoch_rows(run)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 3), (2, 6)]
    losses = step_losses(run)
    per_epoch = len(forwards) // 2
    for i, row in enumerate(rows):
        mine = forwards[i * per_epoch:(i + 1) * per_epoch]
        correct = sum(int((f["predicted"] == f["y"]).sum()) for f in mine)
        against_inputs = sum(int((f["predicted"] == f["x"]).sum()) for f in mine)
        assert correct != against_inputs  # the two counts can be told apart on these batches
        assert row["train_accuracy"] == correct / (per_epoch * 8 * 32), f"epoch {row['epoch']}"
        steps = [loss for step, loss in losses if i * 3 < step <= (i + 1) * 3]
        assert row["train_loss"] == pytest.approx(sum(steps) / 3, rel=1e-9), f"epoch {row['epoch']}"


def test_accumulated_micro_batches_report_the_accuracy_of_one_batch_as_large(tmp_path: Path,
                                                                             small_corpus: Path) -> None:
    """4 micro-batches of 8 see the very windows of one batch of 32 (test_accumulation.py), so the epochs'
    train accuracy is the same, up to a prediction flipped by the summation order of the gradients."""
    accumulated, _ = accuracy_run(small_corpus, tmp_path, "b8x4", batch_size=8, accum=4)
    whole, _ = accuracy_run(small_corpus, tmp_path, "b32x1", batch_size=32, accum=1)
    got = [r["train_accuracy"] for r in epoch_rows(accumulated)]
    want = [r["train_accuracy"] for r in epoch_rows(whole)]
    assert len(got) == len(want) == 2
    assert got == pytest.approx(want, abs=3 / (3 * 32 * 32))  # 3 predictions of an epoch's 3072
    assert all(0 < a < 0.5 for a in got)


def test_an_epochs_row_is_the_mean_of_its_steps_losses_and_its_own_rates() -> None:
    """The row from the running totals: loss per step, accuracy per prediction, tokens per second of training,
    and the task's loss and accuracy each in its own column."""
    state = TrainState(epoch=3, step=40, step_in_epoch=4)
    state.fold(loss_sum=10.0, correct=30, predictions=100, seconds=2.0)
    state.fold(loss_sum=12.0, correct=45, predictions=100, seconds=3.0)  # totals so far, counts and time added
    row = state.epoch_stats(val_loss=2.5, val_accuracy=0.4, lr=1e-3, eval_seconds=1.5, elapsed=99.0, task=(0.7, 0.9))
    assert (row.epoch, row.step, row.train_loss, row.train_accuracy) == (3, 40, 3.0, 45 / 200)
    assert (row.val_loss, row.val_accuracy, row.lr, row.elapsed) == (2.5, 0.4, 1e-3, 99.0)
    assert row.seconds == 6.5 and row.tokens_per_s == 200 / 5.0
    assert (row.val_task_loss, row.val_task_accuracy) == (0.7, 0.9)
    plain = state.epoch_stats(2.5, 0.4, 1e-3, 1.5, 99.0)
    assert plain.val_task_loss is None and plain.val_task_accuracy is None


# ----- 3. best.pt holds the best epoch ----------------------------------------------------------------------
def test_best_checkpoint_keeps_the_best_epoch_when_later_epochs_get_worse(tmp_path: Path, small_corpus: Path) -> None:
    """A warmup far too steep (0.1 more LR each step) makes every epoch worse than the one before: best.pt
    stays the first epoch's (its step, val loss and weights), and last.pt is the last epoch's."""
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=3", "train.steps_per_epoch=5", "train.lr=20",
                           "train.min_lr=0", "train.warmup_steps=200")
    first_epoch = weights_after_step(trainer, 5)
    run = new_run_dir(tmp_path, "worse", False, False)
    assert trainer.fit(run) == 0
    rows = epoch_rows(run)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 5), (2, 10), (3, 15)]
    val = [r["val_loss"] for r in rows]
    assert val[0] < val[1] < val[2], f"the run did not get worse: {val}"

    best = load_checkpoint(run / "checkpoints" / "best.pt")
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert best["state"]["step"] == 5 and best["state"]["best_epoch"] == 1 and best["state"]["best_val"] == val[0]
    assert_same_tensors(best["model"], first_epoch, "best.pt")
    assert last["state"]["step"] == 15 and last["state"]["best_epoch"] == 1 and last["state"]["best_val"] == val[0]
    assert_same_tensors(last["model"], trainer.model.state_dict(), "last.pt")
    assert not torch.equal(last["model"]["head.weight"], best["model"]["head.weight"])
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert (summary["best_epoch"], summary["best_val_loss"]) == (1, val[0])


def test_an_epoch_that_only_ties_the_best_val_loss_does_not_replace_best_pt(tmp_path: Path, small_corpus: Path) -> None:
    """With a learning rate too small to move any weight, epoch 2 ends with epoch 1's val loss exactly: not
    an improvement, so best.pt stays epoch 1's."""
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=2", "train.steps_per_epoch=3", "train.lr=1e-30",
                           "train.min_lr=0")
    run = new_run_dir(tmp_path, "tie", False, False)
    assert trainer.fit(run) == 0
    rows = epoch_rows(run)
    assert [r["step"] for r in rows] == [3, 6]
    assert rows[0]["val_loss"] == rows[1]["val_loss"]
    best = load_checkpoint(run / "checkpoints" / "best.pt")["state"]
    assert (best["step"], best["best_epoch"]) == (3, 1)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == 6


def test_resumed_run_that_gets_worse_keeps_the_earlier_sessions_best_pt(tmp_path: Path, small_corpus: Path) -> None:
    """Two improving epochs, then a resume to a third at a ruinous learning rate, then one to a fourth that
    recovers part of the loss: best.pt keeps epoch 2, weights and all, across the sessions (better than the
    epoch before is not better than the best)."""
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=2", "train.steps_per_epoch=5")
    run = new_run_dir(tmp_path, "resumed", False, False)
    assert trainer.fit(run) == 0
    epoch_2 = load_checkpoint(run / "checkpoints" / "best.pt")
    assert epoch_2["state"]["step"] == 10

    assert resume(run, ["train.epochs=3", "train.lr=1"], console=Console(quiet=True)).exit_code == 0
    val = [r["val_loss"] for r in epoch_rows(run)]
    assert len(val) == 3 and val[0] > val[1] and val[2] > val[1] + 0.1, val
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert (best["state"]["step"], best["state"]["best_epoch"], best["state"]["best_val"]) == (10, 2, val[1])
    assert_same_tensors(best["model"], epoch_2["model"], "best.pt")
    last = load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    assert (last["step"], last["best_epoch"]) == (15, 2)

    # A fourth epoch at a sane learning rate again recovers some of the loss, yet not enough to beat epoch 2.
    assert resume(run, ["train.epochs=4", "train.lr=3e-3", "train.min_lr=3e-3"], console=Console(quiet=True)).exit_code == 0
    val = [r["val_loss"] for r in epoch_rows(run)]
    assert len(val) == 4 and val[1] < val[3] < val[2], val
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert (best["state"]["step"], best["state"]["best_epoch"]) == (10, 2)
    assert_same_tensors(best["model"], epoch_2["model"], "best.pt")


# ----- 4. train.max_time ends the run -----------------------------------------------------------------------
def test_max_time_stops_at_the_step_boundary_where_the_clock_runs_out_and_closes_the_run(tmp_path: Path,
                                                                                         small_corpus: Path) -> None:
    """The budget is checked before every step: the run ends right there, the partial epoch is evaluated and
    recorded, last.pt and summary.json are written, and fit returns 0. The clock is replaced by one whose
    budget runs out after 7 steps, so the stop is exact."""
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=3", "train.steps_per_epoch=5", "train.max_time=3600")
    trainer.clock.out_of_time = lambda: trainer.state.step >= 7
    run = new_run_dir(tmp_path, "timed", False, False)
    assert trainer.fit(run) == 0
    assert [s for s, _ in step_losses(run)] == list(range(1, 8))
    rows = epoch_rows(run)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 5), (2, 7)]  # the partial epoch 2 is closed
    losses = [loss for _, loss in step_losses(run)]
    assert rows[1]["train_loss"] == pytest.approx(sum(losses[5:]) / 2, rel=1e-9)
    last = load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    assert (last["step"], last["epoch"], len(last["history"])) == (7, 3, 2)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert (summary["steps"], summary["epochs"]) == (7, 2)


def test_a_budget_that_runs_out_at_an_epoch_boundary_is_saved_as_spent(tmp_path: Path, small_corpus: Path) -> None:
    """The clock says the budget is spent only once the next epoch has begun, before its first step (an epoch's
    end is timed after that epoch's own check): nothing is left to evaluate, yet last.pt must say the budget is
    spent, or a resume would train on as if it were not."""
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=3", "train.steps_per_epoch=5", "train.max_time=3600")
    # As a real clock does when the reserve it keeps for the final epoch end grows once that end has been timed.
    trainer.clock.out_of_time = lambda: trainer.clock.epoch_end_seconds > 0
    run = new_run_dir(tmp_path, "boundary", False, False)
    assert trainer.fit(run) == 0
    assert [(r["epoch"], r["step"]) for r in epoch_rows(run)] == [(1, 5)]
    last = load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    assert (last["step"], last["spent_budget"]) == (5, 3600)
    assert trainer.finished()


def test_real_max_time_budget_ends_a_cli_run_cleanly_long_before_its_epochs(tmp_path: Path,
                                                                            small_corpus: Path) -> None:
    """A 1.5-second budget on a run of 100,000 epochs x 30 steps: the run ends by time with exit 0, its last
    (partial) epoch evaluated, last.pt and summary.json written."""
    result = run_cli(*train_args(small_corpus, tmp_path, "budget", "--set", "train.epochs=100000",
                                 "--set", "train.max_time=1.5", "--set", "log.tensorboard=false", "--set", "log.sample_chars=0"),
                     timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "budget"
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    rows = epoch_rows(run)
    assert 0 < summary["steps"] < 100_000 * 30
    # Real time is the point of this test (the exact stop is test_max_time_stops_at_the_step_boundary_...'s, on a
    # replaced clock): generous, as a loaded machine may overrun the budget by a step or an evaluation.
    assert summary["seconds"] < 1.5 + 10
    assert rows and rows[-1]["step"] == summary["steps"] and summary["epochs"] == len(rows)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == summary["steps"]


# ----- 6. a finished run stays finished ------------------------------------------------------------------------
@pytest.mark.parametrize("end, step", [(("train.epochs=1",), 4), (("train.epochs=3", "train.max_steps=5"), 5)],
                         ids=["epochs", "max_steps"])
def test_a_finished_run_resumed_trains_nothing_and_rewrites_nothing(tmp_path: Path, small_corpus: Path,
                                                                    end: tuple[str, ...], step: int) -> None:
    """A run that spent its epochs, or stopped at max_steps in the middle of an epoch, is finished: resuming it
    says so and leaves every file as it was."""
    trainer = make_trainer(small_corpus, tmp_path, "train.steps_per_epoch=4", *end)
    run = new_run_dir(tmp_path, "done", False, False)
    assert trainer.fit(run) == 0 and trainer.finished()
    before = snapshot(run)
    printed = io.StringIO()
    assert resume(run, console=Console(file=printed, width=300)).exit_code == 0
    assert printed.getvalue().strip().splitlines()[-1] == (
        f"{run} already finished (step {step}); to train it further raise train.epochs, train.max_steps or "
        "train.max_time with --set")
    after = snapshot(run)
    after.pop(str(run / ".lock"))  # the run's lock, which every command on a run folder takes
    assert after == before


# ----- 7. the loop's own records, read back ---------------------------------------------------------------------
TIMED = {"elapsed", "seconds", "tokens_per_s"}  # what depends on the machine's speed


def untimed_rows(run: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMED} for row in metrics(run)]


def test_every_step_row_logs_the_learning_rate_the_step_used_and_the_epoch_its_steps_mean_loss(
        tmp_path: Path, small_corpus: Path) -> None:
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=2", "train.steps_per_epoch=5", "train.warmup_steps=3")
    run = new_run_dir(tmp_path, "rows", False, False)
    assert trainer.fit(run) == 0
    steps = [row for row in metrics(run) if row["kind"] == "step"]
    assert [row["lr"] for row in steps] == pytest.approx(
        [learning_rate(trainer.cfg.train, i, trainer.total_steps) for i in range(10)], rel=1e-12)
    for epoch, row in enumerate(epoch_rows(run), start=1):
        losses = [s["loss"] for s in steps if s["epoch"] == epoch]
        # Summed in float64: the mean of the logged float32 losses to the last digits, not to float32's 7.
        assert row["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-13)


def test_fit_epochs_sizes_the_epochs_after_exactly_the_first_timed_steps(tmp_path: Path, small_corpus: Path) -> None:
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=1", f"train.steps_per_epoch={FIT_AFTER + 4}",
                           "train.fit_epochs=true", "train.max_time=3600")
    asked_at: list[int] = []
    fit = trainer.fit_epochs_to_budget

    def recorded() -> bool:
        asked_at.append(trainer._session_steps)
        return fit()

    trainer.fit_epochs_to_budget = recorded
    assert trainer.fit(new_run_dir(tmp_path, "fit", False, False)) == 0
    assert asked_at[0] == FIT_AFTER + 1  # the first step (compile) and FIT_AFTER timed ones after it
    assert trainer.state.fitted_steps_per_epoch == FIT_AFTER + 4  # the hour fits the configured length


def test_a_step_that_goes_non_finite_is_named_by_its_own_number(tmp_path: Path, small_corpus: Path) -> None:
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=1", "train.steps_per_epoch=6")
    forwards = [0]

    def poison_the_third(module: torch.nn.Module, args: tuple, output: tuple) -> tuple:
        if module.training:
            forwards[0] += 1
            if forwards[0] == 3:
                return (output[0] * float("nan"), *output[1:])
        return output

    trainer.model.register_forward_hook(poison_the_third)
    run = new_run_dir(tmp_path, "nan", False, False)
    with pytest.raises(NumericalError, match=r"^non-finite loss at step 3; training stopped before saving or "
                                             r"logging it \(no checkpoint was written yet\)"):
        trainer.fit(run)
    assert [s for s, _ in step_losses(run)] == [1, 2]


@pytest.mark.parametrize("which", ["best.pt", "last.pt"])
def test_a_full_disk_at_a_checkpoint_ends_in_one_line_naming_what_it_needed_and_what_is_left(
        tmp_path: Path, small_corpus: Path, monkeypatch: pytest.MonkeyPatch, which: str) -> None:
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=3", "train.steps_per_epoch=4")
    written: list[str] = []
    real_write = checkpoint_store.atomic_write

    def full_after_the_first_epoch(path: Path, write: object, size: int | None = None) -> None:
        written.append(path.name)
        if written.count(which) > 1:  # epoch 1's went through; epoch 2 improves on it, so best.pt is written again
            raise disk.write_error(path, OSError(errno.ENOSPC, "No space left on device"), size)
        real_write(path, write, size)

    monkeypatch.setattr(checkpoint_store, "atomic_write", full_after_the_first_epoch)
    run = new_run_dir(tmp_path, "full", False, False)
    with pytest.raises(MachineError) as refused:
        trainer.fit(run)
    needed = disk.size_text(trainer.checkpoint_size)
    assert re.fullmatch(
        rf"could not write {run}/checkpoints/{re.escape(which)} \({re.escape(needed)} needed\): the disk is full "
        rf"\(ENOSPC\); the last good checkpoint {run}/checkpoints/last\.pt \(step 4\) is intact: free some space, "
        rf"then resume with: attnlm train --resume {run}", str(refused.value)), str(refused.value)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == 4


def test_an_error_of_the_terminal_that_is_no_machine_fault_is_raised_as_it_is(tmp_path: Path,
                                                                               small_corpus: Path) -> None:
    class Refusing(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.EBADF, "Bad file descriptor")

    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=1", "train.steps_per_epoch=2",
                           console=Console(file=Refusing()))
    with pytest.raises(OSError) as raised:
        trainer.fit(new_run_dir(tmp_path, "ebadf", False, False))
    assert raised.value.errno == errno.EBADF and not isinstance(raised.value, MachineError)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_task_run_records_the_loss_and_accuracy_of_the_predictable_part(tmp_path: Path, precision: str) -> None:
    cfg = load_config("configs/induction.yaml", [f"log.dir={tmp_path}", "train.epochs=1", "train.steps_per_epoch=3",
                                                 "log.sample_chars=0", "log.tensorboard=false",
                                                 f"train.precision={precision}"])
    run = new_run_dir(tmp_path, "task", False, False)
    assert Trainer(cfg, Console(quiet=True)).fit(run) == 0
    (row,) = epoch_rows(run)
    assert 0 < row["val_task_loss"] < 10 and 0 <= row["val_task_accuracy"] <= 1
    assert row["val_task_loss"] != row["val_loss"]  # its own part of the sequences, not the whole


def test_a_bf16_run_evaluates_under_autocast(tmp_path: Path, small_corpus: Path) -> None:
    trainer = make_trainer(small_corpus, tmp_path, "train.epochs=1", "train.steps_per_epoch=2", "train.precision=bf16")
    assert trainer.bf16
    assert trainer.fit(new_run_dir(tmp_path, "bf16", False, False)) == 0
    (row,) = epoch_rows(tmp_path / "bf16")
    assert math.isfinite(row["val_loss"])
