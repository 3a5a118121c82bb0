"""The training loop: set-up, the step, epochs and interrupts. Checkpoints are written by
attnlm.training.checkpoints, time is kept by attnlm.training.clock, and everything shown or logged goes
through attnlm.training.reporter."""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console

from attnlm import disk, distributed
from attnlm.config import Config, resolve_accumulation
from attnlm.data import BatchSampler, steps_per_epoch
from attnlm.data.tasks import STEPS_PER_EPOCH, TaskData, TaskSampler
from attnlm.device import autocast
from attnlm.errors import MachineError
from attnlm.inspection.probe import probe_ids
from attnlm.lm.evaluation import eval_result, evaluate, evaluate_task
from attnlm.store.checkpoint import estimate_size
from attnlm.store.metrics import SUMMARY_FILE, rewind_metrics
from attnlm.training import checkpoints
from attnlm.training.build import build_for_training, compile_blocks
from attnlm.training.clock import Clock
from attnlm.training.guard import NonFiniteGuard
from attnlm.training.interrupts import EXIT_SIGNAL, stop_requests
from attnlm.training.optim import build_optimizer, skip_update_if
from attnlm.training.reporter import Reporter
from attnlm.training.schedule import learning_rate
from attnlm.training.state import TrainState, checkpoint_payload, restore, rng_states

# Steps timed (after the first, which holds torch.compile) before train.fit_epochs sizes the epochs.
FIT_AFTER = 10

class Trainer:
    def __init__(self, cfg: Config, console: Console, resume: dict[str, Any] | None = None) -> None:
        self.dist = distributed.current()
        self.cfg = cfg = resolve_accumulation(cfg, self.dist.world)
        self.run_dir = Path(cfg.log.dir)  # set by fit()
        built = build_for_training(cfg, resume)
        self.corpus, self.model, self.device, self.bf16 = built.corpus, built.model, built.device, built.bf16
        self.task = self.corpus if isinstance(self.corpus, TaskData) else None  # data.task: generated data
        self.checkpoint_size = estimate_size(self.model)  # named when a disk refuses it
        t = cfg.train
        seed = distributed.rank_seed(t.seed, self.dist.rank)
        if self.task is not None:
            # A task shows its own job on the probe; a text given as log.probe_text is checked like any other.
            probe = self.task.task.probe(t.seed) if cfg.log.probe_text is None else \
                probe_ids(cfg.log.probe_text, self.task.vocab, self.task.windows[0], cfg.model.block_size)
            self.sampler: BatchSampler | TaskSampler = self.task.sampler(t.batch_size, seed)
            self._epoch_cap = t.steps_per_epoch or STEPS_PER_EPOCH
        else:
            # Checked now, not after the first epoch: a bad probe text should stop the run before it starts.
            probe = probe_ids(cfg.log.probe_text, self.corpus.vocab, self.corpus.val, cfg.model.block_size)
            self.sampler = BatchSampler(self.corpus.train, cfg.model.block_size, t.batch_size, seed)
            self._epoch_cap = t.steps_per_epoch or steps_per_epoch(
                len(self.corpus.train), t.batch_size * t.grad_accum_steps * self.dist.world, cfg.model.block_size)
        self.optimizer = build_optimizer(self.model, cfg.train, self.device)
        self.guard = NonFiniteGuard(self.device)
        self.state = TrainState()
        self._set_epoch_length(self._epoch_cap)
        self._received_stop: int | None = None
        self._agreed_stop: int | None = None
        if self.dist.rank:
            torch.manual_seed(distributed.rank_seed(t.seed, self.dist.rank))  # its own dropout masks
        if resume:
            self._restore(resume)
            self._set_epoch_length(self.state.fitted_steps_per_epoch or self._epoch_cap)  # as the run left off
        self._session_steps = 0
        self._saved_step = self.state.step if resume else None  # of last.pt, the checkpoint a resume starts from
        self.clock = Clock(t.max_time, self.state, self.dist.active)
        evaluated = (self.task.predictions if self.task is not None else
                     min(len(self.corpus.val), t.eval_chars or len(self.corpus.val))) / self.dist.world  # per rank
        self.clock.eval_steps = 0.5 * evaluated / (t.batch_size * t.grad_accum_steps * cfg.model.block_size)
        self.compiled = compile_blocks(self.model, self.device, t.compile, self.bf16, console)
        self.train_model = distributed.wrap(self.dist, self.model, self.device)
        self.resumed = resume is not None
        self.reporter = Reporter(cfg, console, self.model, self.corpus, probe, self.dist.is_main)

    # ----- checkpoints -------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        # The training time so far goes into every checkpoint, so a run resumed from any of them (after a kill,
        # or once it is finished) keeps its time budget and its time-based schedule where they were.
        state = dataclasses.replace(self.state, elapsed=self.clock.elapsed())
        return checkpoint_payload(self.cfg, self.corpus.vocab.chars, self.model, self.optimizer, state,
                                  rng_states(self.sampler, self.device), self.device, self.bf16)

    def _set_epoch_length(self, steps: int) -> None:
        """Epochs of `steps` steps from the current one on (the earlier ones are done, whatever their length)."""
        t, st = self.cfg.train, self.state
        self.steps_per_epoch = steps
        self.total_steps = st.step - st.step_in_epoch + (t.epochs - st.epoch + 1) * steps
        if t.max_steps:
            self.total_steps = min(self.total_steps, t.max_steps)

    def fit_epochs_to_budget(self) -> bool:
        """train.fit_epochs: shorten the epochs so that every one left, its end (evaluation, checkpoints,
        pictures) included, finishes within max_time; never beyond train.steps_per_epoch. Done once the first
        FIT_AFTER steps after the compile step are timed, and again after each epoch with its end's real
        cost. True when it set a length now. Under torchrun rank 0's figures decide for every rank."""
        t, st = self.cfg.train, self.state
        epochs_left = t.epochs - st.epoch + 1  # the current one included
        fits = self.clock.steps_per_epoch_to_fit(epochs_left, st.step_in_epoch) if epochs_left >= 1 else None
        if not t.fit_epochs or fits is None:
            return False  # off, over, or no step timed yet
        fitted = max(st.step_in_epoch + 1, min(self._epoch_cap, fits))
        st.fitted_steps_per_epoch = fitted = distributed.broadcast(self.dist, fitted)
        self._set_epoch_length(fitted)
        return True

    def _restore(self, payload: dict[str, Any]) -> None:
        ranks = payload["rng"].get("ranks")
        distributed.check_world(self.dist, len(ranks) if ranks else 1)
        self.state = restore(payload, self.model, self.optimizer, self.sampler, self.device, self.dist.rank)

    def save(self, best: bool = False) -> None:
        self.guard.check(self._last_checkpoint)
        payload = self._payload()
        if self.dist.active:
            # Only rank 0 writes, but every rank's batch stream must resume where it stopped.
            payload["rng"]["ranks"] = distributed.gather(self.dist, rng_states(self.sampler, self.device))
            if not self.dist.is_main:
                return
        checkpoints.write(payload, self.run_dir / "checkpoints", best, self.checkpoint_size)
        self._saved_step = self.state.step

    def check_room(self, folder: Path, freed: int = 0) -> None:
        """Refuse to start unless the disk holds the checkpoints this run adds (training.checkpoints)."""
        if self.resumed and self.finished():
            return  # nothing will be written
        resume_command = distributed.resume_command(self.dist, folder) if self.resumed else None
        checkpoints.check_room(folder, self.checkpoint_size, resume_command, freed)

    # ----- one step ----------------------------------------------------------------------------
    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step (over grad_accum_steps micro-batches): (mean loss, correct predictions)."""
        t, st = self.cfg.train, self.state
        self.clock.step_begins()
        lr = learning_rate(t, st.step, self.total_steps, self.clock.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's matrices have their own peak (train.muon_lr)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for micro in range(t.grad_accum_steps):
            x, y = self.sampler.next()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            # DDP decides at forward time whether this backward all-reduces: only the last micro-batch does.
            with distributed.sync_gradients(self.train_model, micro == t.grad_accum_steps - 1), \
                    autocast(self.device, self.bf16):
                logits, _ = self.train_model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            (loss / t.grad_accum_steps).backward()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(-1) == y).sum()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip or math.inf)
        loss_sum, correct, grad_norm = self._agree(loss_sum, correct, grad_norm)
        self.guard.check(self._last_checkpoint)  # the step before's verdict, long arrived by now
        skip_update_if(self.optimizer, self.guard.watch(st.step + 1, loss_sum, grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_grad_norm = grad_norm  # the reporter logs it every log.print_every steps
        self.clock.step_done()
        return loss_sum / t.grad_accum_steps, correct

    @property
    def _last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def _agree(self, loss_sum: torch.Tensor, correct: torch.Tensor,
               grad_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Under torchrun: the step's loss, accuracy and grad norm over all ranks, and the decisions every
        rank must take together (stop on a signal, max_time); a single process keeps its own values."""
        if not self.dist.active:
            return loss_sum, correct, grad_norm
        clock = self.clock.session()
        agreed = distributed.agree_step(self.dist, loss_sum, correct, grad_norm, self._received_stop, clock,
                                        self.clock.over_budget(clock))
        self.clock.agree(agreed.clock, agreed.out_of_time)
        if self._agreed_stop is None:
            self._agreed_stop = agreed.stop_signal
        return agreed.loss_sum, agreed.correct, agreed.grad_norm

    @property
    def stop_signal(self) -> int | None:
        # Signals land on each rank at a slightly different moment; ranks acting on their own would part
        # ways (one saving, one stepping) and wait forever in collectives that never match.
        return self._agreed_stop if self.dist.active else self._received_stop

    def _record_signal(self, signum: int | None) -> None:
        self._received_stop = signum

    # ----- the loop ----------------------------------------------------------------------------
    def fit(self, run_dir: Path, exit_process: bool = True) -> int:
        """Train into `run_dir` until epochs, max_steps or max_time run out; returns the exit code. A second
        Ctrl-C ends the process when `exit_process`, else raises KeyboardInterrupt (a notebook's kernel)."""
        self.run_dir = run_dir
        self.reporter.run_dir = run_dir
        if self.resumed and self.finished() and (run_dir / SUMMARY_FILE).exists():
            # Nothing to redo; running the end of training again would only rewrite its summary and logs.
            self.reporter.already_finished(self.state.step)
            return 0
        try:
            if self.dist.is_main:
                disk.remove_leftovers(run_dir / "checkpoints")
                if self.resumed:
                    rewind_metrics(run_dir, self.state.step)
            self.reporter.open(run_dir, self.state.step if self.resumed else None)
            with stop_requests(self._record_signal, lambda: self._received_stop,
                               lambda: distributed.resume_command(self.dist, self.run_dir), exit_process):
                return self._fit()
        except MachineError as e:
            self.reporter.close(quiet=True)
            raise checkpoints.machine_fault(e, run_dir, self._saved_step,
                                           distributed.resume_command(self.dist, run_dir)) from None
        except OSError as e:
            if not disk.is_fault(e):
                raise
            fault = disk.stdout_refused(e)  # the table or the sample going to `attnlm train ... > log.txt`
            self.reporter.close(quiet=True)
            raise checkpoints.machine_fault(fault, run_dir, self._saved_step,
                                           distributed.resume_command(self.dist, run_dir)) from None
        finally:
            self.reporter.close()

    def finished(self) -> bool:
        """Whether the run has spent its epochs, max_steps or max_time (resume asks too)."""
        st, t = self.state, self.cfg.train
        return st.epoch > t.epochs or bool(t.max_steps and st.step >= t.max_steps) or bool(
            t.max_time and max(st.elapsed, st.spent_budget) >= t.max_time)

    def _fit(self) -> int:
        t, st = self.cfg.train, self.state
        self.clock.start()
        self.reporter.header(self.device, self.bf16, self.steps_per_epoch, st.step,
                             fitting=bool(t.fit_epochs and t.max_time) and not st.fitted_steps_per_epoch)
        stopped = False
        while st.epoch <= t.epochs and not stopped:
            bar = self.reporter.progress(self.steps_per_epoch, st.step_in_epoch, f"epoch {st.epoch}")
            # Seeded with the totals of the steps before a resume, so the sum is accumulated in the same
            # order as in an uninterrupted run and the epoch's mean train loss matches it bit for bit.
            epoch_loss = torch.tensor(st.epoch_loss_sum, device=self.device, dtype=torch.float64)
            epoch_correct = torch.tensor(st.epoch_correct, device=self.device, dtype=torch.long)
            steps_before = st.step_in_epoch
            step_clock = time.perf_counter()
            while st.step_in_epoch < self.steps_per_epoch:
                out_of_steps = bool(t.max_steps and st.step >= t.max_steps)
                if out_of_steps or self.clock.out_of_time():
                    if not out_of_steps:
                        # Marked now: the clock's verdict foresees the final evaluation, so once that has run it
                        # may no longer say the budget is spent, and a resume would train a new one.
                        st.spent_budget = t.max_time
                    # The end of the run, not a pause: the LR schedule was annealed to this point, so the partial
                    # epoch is evaluated and closed. Raising max_steps on --resume extends the run on a new, longer
                    # schedule (not bit-equal to a run planned that long); a pause that resumes exactly is a signal.
                    stopped = True
                    break
                loss, correct = self.step()
                epoch_loss += loss
                epoch_correct += correct
                st.step += 1
                st.step_in_epoch += 1
                self._session_steps += 1
                if self._session_steps == FIT_AFTER + 1 and not st.fitted_steps_per_epoch and self.fit_epochs_to_budget():
                    bar.total = self.steps_per_epoch
                    bar.refresh()
                bar.update(1)
                if st.step % self.cfg.log.print_every == 0:
                    self.guard.check(self._last_checkpoint)  # a non-finite loss is never logged
                    value = loss.item()
                    bar.set_postfix(loss=f"{value:.4f}")
                    self.reporter.step(st.step, st.epoch, value, self.optimizer.param_groups[0]["lr"],
                                       float(self.last_grad_norm), self.clock.elapsed())
                if self.stop_signal is not None or (t.checkpoint_every and st.step % t.checkpoint_every == 0
                                                    and st.step_in_epoch < self.steps_per_epoch):
                    self._fold_epoch_totals(epoch_loss, epoch_correct, st.step_in_epoch - steps_before, step_clock)
                    steps_before, step_clock = st.step_in_epoch, time.perf_counter()
                    if self.stop_signal is not None:
                        bar.close()
                        return self._interrupted()
                    self.save()
            bar.close()
            self._fold_epoch_totals(epoch_loss, epoch_correct, st.step_in_epoch - steps_before, step_clock)
            if st.step_in_epoch > 0:
                self._end_epoch(final=stopped or st.epoch == t.epochs or bool(t.max_steps and st.step >= t.max_steps))
            elif stopped:
                # Stopped before this epoch's first step (the budget ran out between two epochs): nothing to
                # evaluate, but last.pt must record the spent budget, or a resume would train on.
                self.save()
            if self.stop_signal is not None:
                return self._interrupted()
        st.elapsed = self.clock.elapsed()
        self.reporter.finish(st)
        return 0

    def _fold_epoch_totals(self, loss: torch.Tensor, correct: torch.Tensor, steps: int, since: float) -> None:
        t = self.cfg.train
        predictions = steps * t.grad_accum_steps * t.batch_size * self.cfg.model.block_size * self.dist.world
        self.state.fold(float(loss), int(correct), predictions, time.perf_counter() - since)

    def _end_epoch(self, final: bool) -> None:
        st, t = self.state, self.cfg.train
        self.guard.check(self._last_checkpoint)
        eval_start = time.perf_counter()
        shard = (self.dist.rank, self.dist.world)
        if self.task is not None:
            totals = evaluate_task(self.model, self.task.windows, self.task.mask, t.eval_batch_size, self.device,
                                   autocast(self.device, self.bf16), shard=shard)
        else:
            totals = evaluate(self.model, self.corpus.val, t.eval_batch_size, self.device,
                              autocast(self.device, self.bf16), shard=shard, max_chars=t.eval_chars)
        distributed.all_reduce_sum(self.dist, *totals)
        val = eval_result(*totals[:3])
        part = eval_result(*totals[3:]) if self.task is not None else None  # the task's predictable part
        self.clock.last_eval_seconds = time.perf_counter() - eval_start
        stats = st.epoch_stats(val.loss, val.accuracy, self.optimizer.param_groups[0]["lr"],
                               self.clock.last_eval_seconds, self.clock.elapsed(),
                               task=(part.loss, part.accuracy) if part is not None else None)
        improved, history = st.record_epoch(stats)
        self.reporter.epoch(stats, history, final)
        st.next_epoch()
        if self.clock.out_of_time():  # the budget ends with this epoch: saved as spent, the run is over
            st.spent_budget = t.max_time
        self.save(best=improved)
        self.reporter.flush()
        # Only now the optional work: whatever it does or breaks, the epoch is already saved.
        self.reporter.epoch_extras(stats)
        self.reporter.flush()
        self.clock.epoch_end_seconds = time.perf_counter() - eval_start
        if not final:
            self.fit_epochs_to_budget()  # now that an epoch's end has been timed

    def _interrupted(self) -> int:
        self.state.elapsed = self.clock.elapsed()
        self.save()
        self.reporter.flush()
        self.reporter.interrupted(signal.Signals(self.stop_signal).name, self.state.step,
                                  distributed.resume_command(self.dist, self.run_dir))
        return EXIT_SIGNAL[self.stop_signal]
