"""The learning-rate schedules: warmup, then cosine or warmup-stable-decay, by steps or by time."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from attnlm.config import TrainConfig, load_config
from attnlm.errors import UserError
from attnlm.store.checkpoint import load_checkpoint
from attnlm.training import Trainer
from attnlm.training import clock as clock_module
from attnlm.training.schedule import learning_rate


def test_warmup_then_cosine_to_min_lr() -> None:
    t = TrainConfig(lr=1e-2, min_lr=1e-3, warmup_steps=10)
    assert learning_rate(t, 0, 110) == pytest.approx(1e-3)  # 1/10 of the way up
    assert learning_rate(t, 9, 110) == pytest.approx(1e-2)
    assert learning_rate(t, 60, 110) == pytest.approx((1e-2 + 1e-3) / 2)  # half way down the cosine
    assert learning_rate(t, 110, 110) == pytest.approx(1e-3)


def test_wsd_holds_the_peak_then_decays_linearly() -> None:
    t = TrainConfig(lr=1e-2, min_lr=0.0, warmup_steps=10, schedule="wsd", decay_fraction=0.4)
    total = 110  # 100 steps after warmup: hold for 60, decay over the last 40
    assert learning_rate(t, 10, total) == pytest.approx(1e-2)
    assert learning_rate(t, 70, total) == pytest.approx(1e-2)
    assert learning_rate(t, 90, total) == pytest.approx(0.5e-2)
    assert learning_rate(t, 110, total) == pytest.approx(0.0)


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_past_the_end_of_its_steps_or_its_time_the_rate_stays_at_its_floor(schedule: str) -> None:
    """A run that goes on past its planned steps (max_steps raised on resume) or over its time budget stays
    annealed: the cosine must not climb back up."""
    t = TrainConfig(lr=1e-2, min_lr=1e-4, warmup_steps=10, schedule=schedule)
    assert learning_rate(t, 150, 110) == pytest.approx(1e-4)
    assert learning_rate(t, 20, 110, time_progress=1.5) == pytest.approx(1e-4)


def test_one_step_after_warmup_is_the_whole_decay() -> None:
    t = TrainConfig(lr=1e-2, min_lr=1e-3, warmup_steps=10)
    assert learning_rate(t, 10, 11) == pytest.approx(1e-2)  # the decay's first step: the peak
    assert learning_rate(t, 11, 11) == pytest.approx(1e-3)  # and its last: the floor
    assert learning_rate(t, 10, 10) == pytest.approx(1e-2)  # no steps after warmup: no division by zero


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_time_progress_anneals_a_run_bounded_by_time(schedule: str) -> None:
    t = TrainConfig(lr=1e-2, min_lr=1e-4, warmup_steps=10, schedule=schedule, max_time=60)
    # Few steps done, but the time budget is used up: the LR is already at its floor.
    assert learning_rate(t, 20, 100_000, time_progress=1.0) == pytest.approx(1e-4)
    assert learning_rate(t, 20, 100_000, time_progress=0.0) > 0.9e-2
    lrs = [learning_rate(t, 20, 100_000, time_progress=p / 10) for p in range(11)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False)) and not math.isclose(lrs[0], lrs[-1])


class FakeTime:
    """The time module as attnlm.training.clock sees it: perf_counter() reads `now`, which only the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """The training clock's time source, replaced: the budget arithmetic is checked to the exact number."""
    fake = FakeTime()
    monkeypatch.setattr(clock_module, "time", fake)
    return fake


def test_time_budget_schedule_starts_after_the_first_step(small_corpus: Path, one_thread: None,
                                                          fake_time: FakeTime) -> None:
    """The first step (torch.compile's, with train.compile) does not eat into the schedule."""
    cfg = load_config("configs/tiny.yaml", [f"data.path={small_corpus}", "train.max_time=1000", "log.tensorboard=false"])
    trainer = Trainer(cfg, Console(quiet=True))  # the session starts at 0
    clock = trainer.clock
    fake_time.now = 100.0  # as if set-up had taken 100 s
    assert clock.progress() == 0.0

    def compile_takes_30_s(module: object, args: object) -> None:
        fake_time.now += 30.0

    hook = trainer.model.register_forward_pre_hook(compile_takes_30_s)
    trainer.step()
    hook.remove()
    assert trainer.state.startup == 130.0  # set-up and the whole first step
    assert clock.progress() == 0.0
    # 450 s later: 450 of the 870 s left after start-up are used (no step timed yet, so nothing is reserved).
    fake_time.now += 450.0
    assert clock.reserve() == 0.0
    assert clock.progress() == 450 / 870


def test_muon_takes_the_blocks_matrices_and_the_schedule_scales_both_optimizers(small_corpus: Path,
                                                                                 one_thread: None) -> None:
    cfg = load_config("configs/tiny.yaml", [f"data.path={small_corpus}", "log.tensorboard=false",
                                            "train.optimizer=muon", "train.lr=3e-3", "train.muon_lr=0.03"])
    trainer = Trainer(cfg, Console(quiet=True))
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    on_muon = {names[id(p)] for g in trainer.optimizer.muon.param_groups for p in g["params"]}
    on_adamw = {names[id(p)] for g in trainer.optimizer.adamw.param_groups for p in g["params"]}
    assert on_muon == {n for n, p in trainer.model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    assert on_muon.isdisjoint(on_adamw) and on_muon | on_adamw == set(names.values())
    assert {"tok_emb.weight", "head.weight"} <= on_adamw  # embeddings and head stay on AdamW
    trainer.step()  # warmup step 1 of 10: both peaks scaled by 1/10
    assert trainer.optimizer.adamw.param_groups[0]["lr"] == pytest.approx(3e-4)
    assert trainer.optimizer.muon.param_groups[0]["lr"] == pytest.approx(3e-3)


def test_embedding_lr_gives_the_embeddings_their_own_peak(small_corpus: Path, one_thread: None) -> None:
    base = [f"data.path={small_corpus}", "log.tensorboard=false", "train.optimizer=muon", "train.lr=3e-3"]
    trainer = Trainer(load_config("configs/tiny.yaml", [*base, "train.embedding_lr=0.015"]), Console(quiet=True))
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    groups = [{names[id(p)] for p in g["params"]} for g in trainer.optimizer.adamw.param_groups]
    assert groups[-1] == {"tok_emb.weight", "pos_emb.weight"}  # tiny.yaml has learned positions
    assert all("tok_emb.weight" not in g for g in groups[:-1]) and "head.weight" in groups[0]
    trainer.step()  # warmup step 1 of 10
    assert trainer.optimizer.adamw.param_groups[-1]["lr"] == pytest.approx(1.5e-3)
    assert trainer.optimizer.adamw.param_groups[0]["lr"] == pytest.approx(3e-4)  # what the table reports
    # Unset, the embeddings stay in AdamW's decayed group: the optimizer (and its saved state) is as before.
    plain = Trainer(load_config("configs/tiny.yaml", base), Console(quiet=True))
    assert len(plain.optimizer.adamw.param_groups) == 2
    with pytest.raises(UserError, match="'train.embedding_lr' must be positive or null"):
        load_config("configs/tiny.yaml", [*base, "train.embedding_lr=0"])


def test_muon_matches_torch_muon_in_bf16_and_iterates_in_fp32_where_bf16_is_emulated() -> None:
    """attnlm's Muon is torch.optim.Muon with the Newton-Schulz dtype as a choice: in bf16 the same update bit
    for bit; in fp32 (CPUs without native bf16 matmuls) the same direction to within bf16's rounding."""
    from attnlm.training.optim import Muon

    torch.manual_seed(0)
    # Tall, square, wide: both sides of the transpose; two of a shape go through Newton-Schulz as one stack.
    shapes = [(384, 128), (128, 128), (128, 512), (384, 128), (128, 128)]
    start = [torch.randn(s) * 0.02 for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(3)]

    def run(make: type, **kwargs: object) -> list[torch.Tensor]:
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make(params, lr=0.02, momentum=0.95, weight_decay=0.01, **kwargs)
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            opt.step()
        return [p.detach() for p in params]

    theirs = run(torch.optim.Muon)
    ours_bf16 = run(Muon, ns_dtype=torch.bfloat16)
    ours_fp32 = run(Muon, ns_dtype=torch.float32)
    for t, b, f, s in zip(theirs, ours_bf16, ours_fp32, start, strict=True):
        assert torch.equal(t, b)
        moved_t, moved_f = t - s, f - s
        assert torch.nn.functional.cosine_similarity(moved_t.flatten(), moved_f.flatten(), dim=0) > 0.99
        assert not torch.equal(t, f)  # the fp32 path really iterated in fp32


def test_the_time_budget_keeps_room_for_one_more_step_and_the_final_evaluation() -> None:
    """A run under max_time stops before the step that would cross the line, leaving the final evaluation's
    cost free: estimated from the step time until an evaluation has been timed, then that evaluation's."""
    from attnlm.training.clock import Clock
    from attnlm.training.state import TrainState

    clock = Clock(100.0, TrainState(), distributed=False)
    clock.eval_steps = 5.0  # the evaluation costs about five training steps
    clock.step_seconds = 2.0
    assert not clock.over_budget(87.9) and clock.over_budget(88.0)  # 88 + 2 (a step) + 10 (5 steps) = 100
    clock.epoch_end_seconds = 3.0  # an epoch's end (evaluation, checkpoints) was timed: it replaces the estimate
    assert not clock.over_budget(94.9) and clock.over_budget(95.0)
    assert not Clock(None, TrainState(), distributed=False).over_budget(1e9)


def test_fit_epochs_sizes_the_epochs_to_the_budget_and_a_resume_keeps_them(small_corpus: Path, tmp_path: Path,
                                                                            one_thread: None, fake_time: FakeTime) -> None:
    """train.fit_epochs: after the first timed steps the epochs shrink so that all of them and their ends fit
    max_time (again after each epoch, with its end's real cost); the length goes into the checkpoint, and a
    resumed run keeps it. train.steps_per_epoch stays the upper bound."""
    cfg = load_config("configs/tiny.yaml", [f"data.path={small_corpus}", "train.max_time=100", "train.epochs=4",
                                            "train.steps_per_epoch=1000", "train.fit_epochs=true",
                                            "log.tensorboard=false"])
    trainer = Trainer(cfg, Console(quiet=True))  # the session starts at 0
    trainer.run_dir = tmp_path
    st, clock = trainer.state, trainer.clock
    assert not trainer.fit_epochs_to_budget()  # nothing timed yet
    for _ in range(11):
        trainer.step()
    st.step = st.step_in_epoch = 11
    fake_time.now = 10.0  # as if the steps had taken a second each
    clock.step_seconds, clock.eval_steps = 1.0, 2.0  # and an evaluation two steps' time
    assert trainer.fit_epochs_to_budget()
    # 100 s - 10 s - 4 epoch ends x 2 s - one step's margin = 81 steps left: (11 + 81) // 4 per epoch.
    assert trainer.steps_per_epoch == 23 and trainer.total_steps == 4 * 23
    clock.epoch_end_seconds = 6.0  # an epoch's end took longer than estimated: the next fit shortens the epochs
    assert trainer.fit_epochs_to_budget() and trainer.steps_per_epoch == (11 + (100 - 10 - 4 * 6) - 1) // 4 == 19
    (tmp_path / "checkpoints").mkdir()
    trainer.save()
    resumed = Trainer(cfg, Console(quiet=True), resume=load_checkpoint(tmp_path / "checkpoints" / "last.pt"))
    assert resumed.steps_per_epoch == 19
    fake_time.now = 0.0
    clock.step_seconds, clock.epoch_end_seconds = 1e-3, 1e-3  # a fast machine: the configured length fits
    assert trainer.fit_epochs_to_budget() and trainer.steps_per_epoch == 1000
    # The last epoch is fitted too, and never cut below the steps it has taken and the one under way.
    st.epoch, fake_time.now = 4, 10.0
    clock.step_seconds, clock.epoch_end_seconds = 1.0, 2.0
    assert trainer.fit_epochs_to_budget() and trainer.steps_per_epoch == 11 + (100 - 10 - 2) - 1 == 98
    fake_time.now = 99.0  # the budget is spent: this epoch ends after the next step
    assert trainer.fit_epochs_to_budget() and trainer.steps_per_epoch == 12
    st.epoch = 5  # every epoch is done: nothing is left to fit
    assert not trainer.fit_epochs_to_budget() and trainer.steps_per_epoch == 12
