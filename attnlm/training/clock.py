"""Training wall time across the sessions of one run, and the train.max_time budget."""

from __future__ import annotations

import time

from attnlm.training.state import TrainState


class Clock:
    """How long a run has trained (earlier sessions included), how much of its time budget that is, and
    whether the budget is spent.

    Under torchrun every rank reads rank 0's clock as of the last step (`agree`), so the learning rate and
    the max_time stop are the same on every rank; a single process reads its own clock.
    """

    def __init__(self, budget: float | None, state: TrainState, distributed: bool) -> None:
        self.budget = budget
        self.state = state
        self.distributed = distributed
        self.started = time.perf_counter()
        self.started_up = False  # whether this session's first step (and compile) is done
        self.last_eval_seconds = 0.0  # the latest evaluation's cost (the epoch table's Time includes it)
        self.epoch_end_seconds = 0.0  # the latest epoch's end: evaluation, checkpoints, probe, sample, images
        # Before any evaluation has run, its cost is estimated from the step time: a forward-only pass measured
        # under half a training step per token across batch sizes and contexts, so half is a safe estimate.
        self.eval_steps = 0.0  # the final evaluation's cost in training steps: 0.5 x its tokens / a step's
        self.step_seconds = 0.0  # recent steps' duration (moving average): the step that would cross the line is not begun
        self._step_began: float | None = None
        self._agreed_clock, self._agreed_out_of_time = 0.0, False

    def start(self) -> None:
        """This session starts now."""
        self.started = time.perf_counter()

    def session(self) -> float:
        """Seconds since this session started, by this process's own clock."""
        return time.perf_counter() - self.started

    def elapsed(self) -> float:
        """Training seconds of the whole run: earlier sessions plus this one."""
        return self.state.elapsed + (self._agreed_clock if self.distributed else self.session())

    def over_budget(self, clock: float) -> bool:
        """Whether `clock` seconds of this session exhaust train.max_time. Room is kept for one more step and
        the final evaluation, so the whole run, evaluation included, fits the budget."""
        return bool(self.budget) and self.state.elapsed + clock + self.reserve() >= self.budget

    def reserve(self) -> float:
        """Seconds kept free at the end of the budget: one step, and the final epoch's end."""
        return self.step_seconds + self.epoch_end()

    def epoch_end(self) -> float:
        """What an epoch's end costs: as the last one took, or before any has ended, its evaluation
        estimated from the step time."""
        return self.epoch_end_seconds or self.eval_steps * self.step_seconds

    def steps_per_epoch_to_fit(self, epochs_left: int, steps_done: int) -> int | None:
        """The epoch length at which the current epoch (`steps_done` steps in) and the `epochs_left - 1` after
        it, each with its end, finish within the budget, one step kept as a margin; None before a step has
        been timed. By this process's own clock (under torchrun, rank 0's answer is the one taken)."""
        if not self.budget or not self.step_seconds:
            return None
        now = self.state.elapsed + self.session()
        steps_left = max(0.0, (self.budget - now - epochs_left * self.epoch_end()) / self.step_seconds - 1)
        return int((steps_done + steps_left) // epochs_left)

    def out_of_time(self) -> bool:
        if self.distributed:
            return self._agreed_out_of_time  # rank 0's verdict at the last step
        return self.over_budget(self.session())

    def agree(self, clock: float, out_of_time: bool) -> None:
        """Take rank 0's clock and budget verdict as of this step (torchrun)."""
        self._agreed_clock, self._agreed_out_of_time = clock, out_of_time

    def step_begins(self) -> None:
        self._step_began = time.perf_counter()

    def step_done(self) -> None:
        """A step ended: count this session's first (which holds torch.compile) as start-up time, and fold
        the others into the step time."""
        if not self.started_up:
            self.state.startup += self.elapsed() - self.state.elapsed
            self.started_up = True
        elif self._step_began is not None:
            seconds = time.perf_counter() - self._step_began
            self.step_seconds = seconds if not self.step_seconds else 0.9 * self.step_seconds + 0.1 * seconds

    def progress(self) -> float:
        """The share of the max_time budget used, counted from the end of each session's first step.
        That step holds torch.compile, which can take a sizeable share of a short budget (far less with a warm
        compile cache): counted in, it would spend part of the schedule's high learning rate on no steps at all."""
        if not self.budget or not self.started_up:
            return 0.0
        start, end = self.state.startup, self.budget - self.reserve()  # annealed by the time training stops
        return max(0.0, (self.elapsed() - start) / max(1e-9, end - start))
