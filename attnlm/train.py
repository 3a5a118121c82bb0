"""The training loop: steps, epochs, evaluation, reporting, checkpoints, interrupts."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from tqdm import tqdm

from attnlm import checkpoint as ckpt
from attnlm import distributed
from attnlm.attention_plots import probe_ids, probe_images
from attnlm.config import Config, resolve_accumulation
from attnlm.data import BatchSampler, Corpus, Vocab, load_corpus, steps_per_epoch
from attnlm.device import autocast, resolve_device, trust_cpu_isa_flags, use_bf16
from attnlm.errors import NumericalError
from attnlm.evaluate import evaluate, summarise
from attnlm.generation import SamplingOptions, generate
from attnlm.interrupts import EXIT_SIGNAL, stop_requests
from attnlm.model import AttnLM
from attnlm.optim import build_optimizer, learning_rate
from attnlm.report import EpochStats, EpochTable, loss_chart, observation
from attnlm.runs import METRICS_FILE, SUMMARY_FILE, rewind_metrics
from attnlm.tblog import TBLogger
from attnlm.train_state import TrainState, checkpoint_payload, restore, rng_states


def prepare(cfg: Config, vocab: Vocab | None = None) -> tuple[Corpus, AttnLM, torch.device, bool]:
    """Data, model and device for a config (weights seeded by train.seed)."""
    device = distributed.train_device(distributed.current(), resolve_device(cfg.train.device))
    bf16 = use_bf16(device, cfg.train.precision)
    corpus = load_corpus(cfg.data.path, cfg.data.val_fraction, cfg.model.block_size, vocab)
    torch.manual_seed(cfg.train.seed)
    model = AttnLM(cfg.model, corpus.vocab.size).to(device)
    return corpus, model, device, bf16


class Trainer:
    def __init__(self, cfg: Config, console: Console, resume: dict[str, Any] | None = None) -> None:
        self.dist = distributed.current()
        self.cfg = cfg = resolve_accumulation(cfg, self.dist.world)
        self.console = console
        self.run_dir = Path(cfg.log.dir)  # set by fit()
        vocab = Vocab(resume["vocab"]) if resume else None
        self.corpus, self.model, self.device, self.bf16 = prepare(cfg, vocab)
        # Checked now, not after the first epoch: a bad probe text should stop the run before it starts.
        self.probe = probe_ids(cfg.log.probe_text, self.corpus.vocab, self.corpus.val, cfg.model.block_size)
        self.optimizer = build_optimizer(self.model, cfg.train, self.device)
        t = cfg.train
        self.sampler = BatchSampler(self.corpus.train, cfg.model.block_size, t.batch_size,
                                   distributed.rank_seed(t.seed, self.dist.rank))
        self.steps_per_epoch = t.steps_per_epoch or steps_per_epoch(
            len(self.corpus.train), t.batch_size * t.grad_accum_steps * self.dist.world, cfg.model.block_size)
        self.total_steps = t.epochs * self.steps_per_epoch
        if t.max_steps:
            self.total_steps = min(self.total_steps, t.max_steps)
        self.state = TrainState()
        self._received_stop: int | None = None
        self._started_up = False  # whether this session's first step (and compile) is done
        self.last_eval_seconds = 0.0
        self._agreed_stop: int | None = None
        self._agreed_clock, self._agreed_out_of_time = 0.0, False
        if self.dist.rank:
            torch.manual_seed(distributed.rank_seed(t.seed, self.dist.rank))  # its own dropout masks
        if resume:
            self._restore(resume)
        if t.compile:
            if self.device.type == "cpu":
                trust_cpu_isa_flags()
            for block in self.model.blocks:
                block.compile(dynamic=False)
        self.train_model = distributed.wrap(self.dist, self.model, self.device)
        self.resumed = resume is not None
        self.table = EpochTable(console)

    # ----- checkpoints -------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        return checkpoint_payload(self.cfg, self.corpus.vocab.chars, self.model, self.optimizer, self.state,
                                  rng_states(self.sampler, self.device), self.device, self.bf16)

    def _restore(self, payload: dict[str, Any]) -> None:
        ranks = payload["rng"].get("ranks")
        distributed.check_world(self.dist, len(ranks) if ranks else 1)
        self.state = restore(payload, self.model, self.optimizer, self.sampler, self.device, self.dist.rank)

    def save(self, best: bool = False) -> None:
        payload = self._payload()
        if self.dist.active:
            # Only rank 0 writes, but every rank's batch stream must resume where it stopped.
            payload["rng"]["ranks"] = distributed.gather(self.dist, rng_states(self.sampler, self.device))
            if not self.dist.is_main:
                return
        folder = self.run_dir / "checkpoints"
        # best.pt first: a kill between the two writes then leaves last.pt before this epoch's end, and the
        # resumed run redoes that end and writes best.pt again. In the other order the resumed run would
        # believe best.pt holds this epoch while it holds an older one.
        if best:
            ckpt.save_checkpoint(payload, folder / "best.pt")
        ckpt.save_checkpoint(payload, folder / "last.pt")

    # ----- the loop ----------------------------------------------------------------------------
    def _elapsed(self, started: float) -> float:
        # Under torchrun every rank reads rank 0's clock as of the last step, so LR and max_time agree.
        clock = self._agreed_clock if self.dist.active else time.perf_counter() - started
        return self.state.elapsed + clock

    def _out_of_time(self, started: float) -> bool:
        if self.dist.active:
            return self._agreed_out_of_time  # rank 0's verdict at the last step
        return self._over_budget(time.perf_counter() - started)

    def _over_budget(self, clock: float) -> bool:
        """Whether `clock` seconds of this session exhaust train.max_time. Room is kept for the final
        evaluation so the whole run, evaluation included, fits the budget."""
        budget = self.cfg.train.max_time
        return bool(budget) and self.state.elapsed + clock + self.last_eval_seconds >= budget

    def _step(self, started: float) -> tuple[torch.Tensor, torch.Tensor]:
        t, st = self.cfg.train, self.state
        lr = learning_rate(t, st.step, self.total_steps, self._time_progress(started))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
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
        loss_sum, correct, grad_norm = self._agree(loss_sum, correct, grad_norm, started)
        if not (torch.isfinite(loss_sum) and torch.isfinite(grad_norm)):
            last = self.run_dir / "checkpoints" / "last.pt"
            where = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"
            what = "loss" if not torch.isfinite(loss_sum) else "gradient norm"
            raise NumericalError(
                f"non-finite {what} at step {st.step + 1}; training stopped before the update ({where}); "
                "lower train.lr or raise train.warmup_steps"
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not self._started_up:
            st.startup += self._elapsed(started) - st.elapsed
            self._started_up = True
        return loss_sum / t.grad_accum_steps, correct

    def _time_progress(self, started: float) -> float:
        """The share of the max_time budget used, counted from the end of each session's first step.
        That step holds torch.compile (~14 s on 2 cores with an empty compile cache, ~2 s with a warm one):
        counted in, it would have spent a fifth of a 67 s schedule's high learning rate on no steps at all."""
        budget = self.cfg.train.max_time
        if not budget or not self._started_up:
            return 0.0
        start = self.state.startup
        return max(0.0, (self._elapsed(started) - start) / max(1e-9, budget - start))

    def _agree(self, loss_sum: torch.Tensor, correct: torch.Tensor, grad_norm: torch.Tensor,
               started: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Under torchrun: the step's loss, accuracy and grad norm over all ranks, and the decisions every
        rank must take together (stop on a signal, max_time); a single process keeps its own values."""
        if not self.dist.active:
            return loss_sum, correct, grad_norm
        clock = time.perf_counter() - started
        agreed = distributed.agree_step(self.dist, loss_sum, correct, grad_norm, self._received_stop, clock,
                                        self._over_budget(clock))
        self._agreed_clock, self._agreed_out_of_time = agreed.clock, agreed.out_of_time
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

    def fit(self, run_dir: Path) -> int:
        """Train into `run_dir` until epochs, max_steps or max_time run out; returns the exit code."""
        self.run_dir = run_dir
        if self.resumed and self._finished() and (run_dir / SUMMARY_FILE).exists():
            # Nothing to redo; running the end of training again would only rewrite its summary and logs.
            self.console.print(f"{run_dir} already finished (step {self.state.step}); to train it further raise "
                               "train.epochs or train.max_steps with --set", highlight=False, soft_wrap=True)
            return 0
        if self.dist.is_main:
            ckpt.remove_leftovers(run_dir / "checkpoints")
            if self.resumed:
                rewind_metrics(run_dir, self.state.step)
        # Everything logged at the checkpoint's step was written before that checkpoint was saved, so only
        # later points can be repeated; purging from the checkpoint's own step would drop points never rewritten.
        self.tb = TBLogger(run_dir, self.cfg.log.tensorboard and self.dist.is_main,
                           purge_step=self.state.step + 1 if self.resumed else None)
        try:
            with stop_requests(self._record_signal, lambda: self._received_stop,
                               lambda: distributed.resume_command(self.dist, self.run_dir)):
                return self._fit()
        finally:
            self.tb.close()

    def _finished(self) -> bool:
        st, t = self.state, self.cfg.train
        return st.epoch > t.epochs or bool(t.max_steps and st.step >= t.max_steps) or bool(
            t.max_time and st.elapsed >= t.max_time)

    def _fit(self) -> int:
        t, st = self.cfg.train, self.state
        started = time.perf_counter()
        self._print_header()
        stopped = False
        while st.epoch <= t.epochs and not stopped:
            bar = tqdm(total=self.steps_per_epoch, initial=st.step_in_epoch, desc=f"epoch {st.epoch}",
                       leave=False, disable=None if self.dist.is_main else True, dynamic_ncols=True, file=sys.stderr)
            # Seeded with the totals of the steps before a resume, so the sum is accumulated in the same
            # order as in an uninterrupted run and the epoch's mean train loss matches it bit for bit.
            epoch_loss = torch.tensor(st.epoch_loss_sum, device=self.device, dtype=torch.float64)
            epoch_correct = torch.tensor(st.epoch_correct, device=self.device, dtype=torch.long)
            steps_before = st.step_in_epoch
            step_clock = time.perf_counter()
            while st.step_in_epoch < self.steps_per_epoch:
                if (t.max_steps and st.step >= t.max_steps) or self._out_of_time(started):
                    # The end of the run, not a pause: the LR schedule was annealed to this point, so the partial
                    # epoch is evaluated and closed. Raising max_steps on --resume extends the run on a new, longer
                    # schedule (not bit-equal to a run planned that long); a pause that resumes exactly is a signal.
                    stopped = True
                    break
                loss, correct = self._step(started)
                epoch_loss += loss
                epoch_correct += correct
                st.step += 1
                st.step_in_epoch += 1
                bar.update(1)
                if st.step % self.cfg.log.print_every == 0:
                    self._log_step(loss.item(), bar)
                if self.stop_signal is not None or (t.checkpoint_every and st.step % t.checkpoint_every == 0
                                                    and st.step_in_epoch < self.steps_per_epoch):
                    self._fold_epoch_totals(epoch_loss, epoch_correct, st.step_in_epoch - steps_before, step_clock)
                    steps_before, step_clock = st.step_in_epoch, time.perf_counter()
                    if self.stop_signal is not None:
                        bar.close()
                        return self._interrupted(started)
                    self.save()
            bar.close()
            self._fold_epoch_totals(epoch_loss, epoch_correct, st.step_in_epoch - steps_before, step_clock)
            if st.step_in_epoch > 0:
                self._end_epoch(started, final=stopped or st.epoch == t.epochs
                                or bool(t.max_steps and st.step >= t.max_steps))
            if self.stop_signal is not None:
                return self._interrupted(started)
        self._finish(started)
        return 0

    def _log_step(self, loss: float, bar: tqdm) -> None:
        st = self.state
        bar.set_postfix(loss=f"{loss:.4f}")
        if not self.dist.is_main:
            return
        lr = self.optimizer.param_groups[0]["lr"]
        self.tb.scalars(st.step, {"loss/train_step": loss})
        self._append_metrics({"kind": "step", "step": st.step, "epoch": st.epoch, "loss": loss, "lr": lr})

    def _append_metrics(self, row: dict[str, Any]) -> None:
        # json writes floats with repr, so a logged loss is the exact float value, fit for bit-for-bit checks.
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def _fold_epoch_totals(self, loss: torch.Tensor, correct: torch.Tensor, steps: int, since: float) -> None:
        """Record the running epoch totals in the state (they include the steps before a resume)."""
        st, t = self.state, self.cfg.train
        st.epoch_loss_sum = float(loss)
        st.epoch_correct = int(correct)
        st.epoch_count += steps * t.grad_accum_steps * t.batch_size * self.cfg.model.block_size * self.dist.world
        st.epoch_train_time += time.perf_counter() - since

    def _end_epoch(self, started: float, final: bool) -> None:
        st, t = self.state, self.cfg.train
        eval_start = time.perf_counter()
        totals = evaluate(self.model, self.corpus.val, t.eval_batch_size, self.device,
                          autocast(self.device, self.bf16), shard=(self.dist.rank, self.dist.world))
        distributed.all_reduce_sum(self.dist, *totals)
        val = summarise(*totals)
        self.last_eval_seconds = time.perf_counter() - eval_start
        steps = st.step_in_epoch
        stats = EpochStats(
            epoch=st.epoch, step=st.step,
            train_loss=st.epoch_loss_sum / steps,
            train_accuracy=st.epoch_correct / max(1, st.epoch_count),
            val_loss=val.loss, val_accuracy=val.accuracy,
            lr=self.optimizer.param_groups[0]["lr"],
            seconds=st.epoch_train_time + self.last_eval_seconds,
            elapsed=self._elapsed(started),
            tokens_per_s=st.epoch_count / max(1e-9, st.epoch_train_time),
        )
        improved = stats.val_loss < st.best_val
        if improved:
            st.best_val, st.best_epoch = stats.val_loss, stats.epoch
        st.history.append(stats.to_dict())
        history = [EpochStats(**{k: v for k, v in h.items() if k != "kind"}) for h in st.history]
        self.table.add(stats, observation(history, final))
        self.tb.scalars(st.step, {
            "loss/train": stats.train_loss, "loss/val": stats.val_loss,
            "accuracy/train": stats.train_accuracy, "accuracy/val": stats.val_accuracy,
            "lr": stats.lr, "throughput/tokens_per_s": stats.tokens_per_s,
        })
        if self.cfg.log.sample_chars and self.dist.is_main:
            self.tb.text("sample", self.sample(self.cfg.log.sample_chars), st.step)
        if self.cfg.log.tensorboard and self.cfg.log.attention_images and self.dist.is_main:
            # One heat-map grid per layer at every epoch, so TensorBoard's slider shows attention forming.
            probe_text = self.corpus.vocab.decode(self.probe)
            for tag, image in probe_images(self.model, self.probe, probe_text).items():
                self.tb.image(tag, image, st.step)
        if self.dist.is_main:
            self._append_metrics(stats.to_dict())
        st.epoch += 1
        st.step_in_epoch = 0
        st.epoch_loss_sum, st.epoch_correct, st.epoch_count, st.epoch_train_time = 0.0, 0, 0, 0.0
        self.save(best=improved)
        self.tb.flush()

    def sample(self, n: int, stream: bool = False) -> str:
        vocab = self.corpus.vocab
        prompt = self.cfg.log.sample_prompt if not vocab.unknown(self.cfg.log.sample_prompt) else vocab.chars[0]
        generator = torch.Generator().manual_seed(self.cfg.train.seed)

        def emit(token: int) -> None:
            sys.stdout.write(vocab.chars[token])
            sys.stdout.flush()

        ids = generate(self.model, vocab.encode(prompt), n, SamplingOptions(temperature=0.8), generator,
                       on_token=emit if stream else None)
        return prompt + vocab.decode(ids)

    # ----- start and end -----------------------------------------------------------------------
    def _print_header(self) -> None:
        m, st = self.cfg.model, self.state
        params = self.model.num_params()
        what = "resuming" if st.step else "training"
        self.console.print(
            f"[bold]attnlm[/bold] {what} {self.run_dir}: {params / 1e6:.2f}M parameters "
            f"({m.n_layer} layers x {m.n_head} heads x {m.n_embd} wide, context {m.block_size}, "
            f"{m.pos} positions{', MLP' if m.mlp else ', attention only'}) on {self.device}"
            f"{' bf16' if self.bf16 else ''}; vocab {self.corpus.vocab.size}, "
            f"{len(self.corpus.train):,} train / {len(self.corpus.val):,} val chars; "
            f"{self.steps_per_epoch} steps per epoch" + (f", from step {st.step}" if st.step else ""),
            highlight=False,
        )

    def _finish(self, started: float) -> None:
        st = self.state
        st.elapsed = self._elapsed(started)
        if not self.dist.is_main:
            return  # the rest is reporting
        losses = [h["val_loss"] for h in st.history]
        self.console.print()
        self.console.print(loss_chart(losses), highlight=False)
        if st.history:
            best = st.history[st.best_epoch - 1]
            self.console.print(
                f"\nbest epoch {st.best_epoch}: val loss {best['val_loss']:.4f}, accuracy "
                f"{best['val_accuracy']:.3f} (perplexity {math.exp(best['val_loss']):.2f}); "
                f"{st.step} steps in {st.elapsed:.1f}s", highlight=False)
            last = st.history[-1]
            self.tb.hparams({**{f"model.{k}": v for k, v in asdict(self.cfg.model).items()},
                             **{f"train.{k}": v for k, v in asdict(self.cfg.train).items()}},
                            {"hparam/best_val_loss": st.best_val, "hparam/final_val_loss": last["val_loss"],
                             "hparam/final_val_accuracy": last["val_accuracy"]}, st.step)
        summary = {"best_val_loss": st.best_val, "best_epoch": st.best_epoch, "steps": st.step,
                   "epochs": len(st.history), "seconds": st.elapsed}
        # Atomic like the checkpoints: `attnlm runs` reads a run as finished when this file exists.
        ckpt.atomic_write(self.run_dir / SUMMARY_FILE, lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))
        self.console.print(f"run saved in {self.run_dir}/ (checkpoints/best.pt, checkpoints/last.pt, "
                           f"TensorBoard: tensorboard --logdir {self.run_dir.parent})", highlight=False)
        if self.cfg.log.sample_chars:
            self.console.print("\n[bold]sample[/bold] (temperature 0.8):")
            self.sample(self.cfg.log.sample_chars, stream=True)
            sys.stdout.write("\n")

    # ----- interrupts --------------------------------------------------------------------------
    def _interrupted(self, started: float) -> int:
        self.state.elapsed = self._elapsed(started)
        self.save()
        self.tb.flush()
        name = signal.Signals(self.stop_signal).name
        self.console.print(
            f"\n{name}: stopped at step {self.state.step} and saved {self.run_dir}/checkpoints/last.pt; "
            f"resume with: {distributed.resume_command(self.dist, self.run_dir)}", highlight=False,
            soft_wrap=True)  # never break the command across lines: users copy it
        return EXIT_SIGNAL[self.stop_signal]
