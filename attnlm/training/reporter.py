"""What a run tells and leaves behind besides its checkpoints: the header line, the epoch table, TensorBoard,
metrics.jsonl, samples, the probe's attention (attention/epoch-NNN.pt, images, observations) and a small
model's weights after each epoch (attention/model-NNN.pt), summary.json and the head scores
(attnlm.inspection.heads: a "heads" row in metrics.jsonl per epoch, and one for the model training starts from
as epoch 0) and the final report. Only rank 0 reports; on the other ranks of a torchrun
job every method returns at once."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from tqdm import tqdm as std_tqdm

from attnlm import disk
from attnlm.checks import SamplingOptions
from attnlm.config import Config
from attnlm.data import Corpus, EvalPlan
from attnlm.data.tasks import TaskData
from attnlm.inspection.heads import CHARTS, Crossings, measure, repeat_probe, saved_head_scores, tensorboard_scalars
from attnlm.inspection.probe import AttentionProbe, keeps_weights, rewind
from attnlm.lm.generate import generate
from attnlm.lm.model import AttnLM
from attnlm.store.metrics import METRICS_FILE, SUMMARY_FILE
from attnlm.training.epoch_table import EpochStats, EpochTable, join_notes, loss_chart, observation
from attnlm.training.state import TrainState
from attnlm.training.tensorboard_log import TBLogger


def in_notebook() -> bool:
    """Whether this runs inside a Jupyter kernel (where stderr is no terminal, yet a bar still draws)."""
    shell = sys.modules.get("IPython")
    ipython = getattr(shell, "get_ipython", lambda: None)() if shell else None
    return ipython is not None and hasattr(ipython, "kernel")


class Reporter:
    def __init__(self, cfg: Config, console: Console, model: AttnLM, corpus: Corpus | TaskData, probe: torch.Tensor,
                 is_main: bool) -> None:
        self.cfg = cfg
        self.console = console
        self.model = model
        self.vocab = corpus.vocab
        self.corpus = corpus
        # A task's validation windows are all evaluated; a text's split may be evaluated on a subset.
        self.eval_plan = None if isinstance(corpus, TaskData) else \
            EvalPlan.of(len(corpus.val), cfg.model.block_size, cfg.train.eval_chars)
        # Its attention is recorded every epoch, and a small model's weights with it (log.epoch_weights).
        self.probe = AttentionProbe(probe, corpus.vocab, write=is_main,
                                    keep_weights=keeps_weights(cfg.log.epoch_weights, model.num_params()))
        self.head_probe = repeat_probe(corpus.vocab.size, cfg.model.block_size) if cfg.log.head_scores else None
        self.crossings = Crossings()  # which heads the Observation column already named
        self.is_main = is_main
        self.table = EpochTable(console, cfg.train.epochs)
        self.run_dir = Path(cfg.log.dir)
        self.tb = TBLogger(self.run_dir, False)

    def open(self, run_dir: Path, resumed_at: int | None) -> None:
        """Start writing into `run_dir`; `resumed_at` is the checkpoint's step when the run resumes."""
        self.run_dir = run_dir
        # Everything logged at the checkpoint's step was written before that checkpoint was saved, so only
        # later points can be repeated; purging from the checkpoint's own step would drop points never rewritten.
        self.tb = TBLogger(run_dir, self.cfg.log.tensorboard and self.is_main,
                           purge_step=resumed_at + 1 if resumed_at is not None else None)
        self.tb.start({f"{section}.{k}": v for section in ("data", "model", "train")
                       for k, v in asdict(getattr(self.cfg, section)).items()},
                      ["hparam/best_val_loss", "hparam/final_val_loss", "hparam/final_val_accuracy"], resumed_at or 0,
                      CHARTS if self.head_probe is not None else None)
        if self.is_main:
            if resumed_at is None:
                self.head_scores(0, 0)  # epoch 0: the model before its first step, where each curve starts
            else:  # metrics.jsonl is already rewound to the checkpoint: the heads named before it stay named
                self.crossings.replay(saved.scores for saved in saved_head_scores(run_dir))
                rewind(run_dir, resumed_at)  # attention/ too: no epoch the resumed run has not trained yet

    def close(self, quiet: bool = False) -> None:
        """`quiet`: training stopped for a fault of the machine; its message says all, TensorBoard adds nothing."""
        self.tb.close(quiet)

    def flush(self) -> None:
        self.tb.flush()

    def progress(self, total: int, initial: int, desc: str) -> Any:
        """The epoch's progress bar: in a terminal (never in a log file), or in a notebook; none on other ranks."""
        if not self.is_main:
            return std_tqdm(total=total, disable=True)
        if in_notebook():
            try:
                from tqdm.notebook import tqdm as notebook_tqdm

                return notebook_tqdm(total=total, initial=initial, desc=desc, leave=False)
            except ImportError:  # no ipywidgets: a text bar, which a notebook draws in place as well
                return std_tqdm(total=total, initial=initial, desc=desc, leave=False, file=sys.stderr, disable=False)
        return std_tqdm(total=total, initial=initial, desc=desc, leave=False, disable=None, dynamic_ncols=True,
                        file=sys.stderr)

    def header(self, device: torch.device, bf16: bool, steps_per_epoch: int, step: int, fitting: bool = False) -> None:
        m = self.cfg.model
        params = self.model.num_params()
        what = "resuming" if step else "training"
        self.console.print(
            f"[bold]attnlm[/bold] {what} {self.run_dir}: {params / 1e6:.2f}M parameters "
            f"({m.n_layer} layers x {m.n_head} heads x {m.n_embd} wide, context {m.block_size}, "
            f"{m.pos} positions{', MLP' if m.mlp else ', attention only'}) on {device}"
            f"{' bf16' if bf16 else ''}; vocab {self.vocab.size}, {self.data_line()}; "
            + (f"up to {steps_per_epoch} steps per epoch, fitted to the {self.cfg.train.max_time:g} s budget after "
               "the first steps" if fitting else f"{steps_per_epoch} steps per epoch")
            + (f", from step {step}" if step else ""),
            highlight=False,
        )

    def data_line(self) -> str:
        """The header's words on the data: the task, or the text's splits."""
        if isinstance(self.corpus, TaskData):
            return self.corpus.describe()
        plan = self.eval_plan
        return (f"{len(self.corpus.train):,} train / {len(self.corpus.val):,} val chars"
                f"{'' if plan is None or plan.full else f' (each epoch evaluates {plan.evaluated:,})'}")

    def step(self, step: int, epoch: int, loss: float, lr: float, grad_norm: float, elapsed: float) -> None:
        """A step row. `elapsed` (the run's training clock) lets a benchmark time the steady steps between two
        rows inside one whole process, start-up and evaluations left out."""
        if not self.is_main:
            return
        self.tb.scalars(step, {"loss/train_step": loss, "lr": lr, "grad_norm": grad_norm})
        self.append_metrics({"kind": "step", "step": step, "epoch": epoch, "loss": loss, "lr": lr,
                             "grad_norm": grad_norm, "elapsed": round(elapsed, 4)})

    def epoch(self, stats: EpochStats, history: list[EpochStats], final: bool) -> None:
        """The epoch's record: one row of the table, its scalars, the probe's attention and its metrics line.
        Written before the epoch's checkpoint, so a resume from an older checkpoint rewinds them (metrics.jsonl
        by step, TensorBoard by purge_step, attention/ by step, then rewritten) and an uninterrupted run and a
        resumed one log the same."""
        if not self.is_main:
            return
        # The probe's attention after this epoch: saved for the explorer and read for the Observation column.
        attention_note = self.probe.end_epoch(self.model, self.run_dir, stats.epoch, stats.step)
        heads_note = self.head_scores(stats.epoch, stats.step)
        stats.observation = join_notes(observation(history, final), stats.task_note(),
                                       "\n".join(note for note in (attention_note, heads_note) if note) or None)
        self.table.add(stats, stats.observation)
        self.tb.scalars(stats.step, {
            "loss/train": stats.train_loss, "loss/val": stats.val_loss,
            "accuracy/train": stats.train_accuracy, "accuracy/val": stats.val_accuracy,
            "throughput/tokens_per_s": stats.tokens_per_s,
        })
        if stats.val_task_loss is not None and stats.val_task_accuracy is not None:
            self.tb.scalars(stats.step, {"loss/val_task": stats.val_task_loss,
                                         "accuracy/val_task": stats.val_task_accuracy})
        self.tb.text("observation", stats.observation, stats.step)
        self.append_metrics(stats.to_dict())

    def head_scores(self, epoch: int, step: int) -> str | None:
        """Score every head on the repeated probe (one forward pass) into metrics.jsonl and TensorBoard; returns
        the Observation's note on heads that became previous-token or induction heads, or None."""
        if self.head_probe is None:
            return None
        scores = measure(self.model, self.head_probe)
        self.tb.scalars(step, tensorboard_scalars(scores))
        self.append_metrics({"kind": "heads", "epoch": epoch, "step": step, **scores.to_dict()})
        return self.crossings.update(scores)

    def epoch_extras(self, stats: EpochStats) -> None:
        """What is nice to have after the epoch's checkpoint is safe: the sample and the attention images.
        Each may fail on its own (one line on stderr) without stopping the training."""
        if not self.is_main:
            return
        if self.cfg.log.sample_chars:
            self.optional(f"epoch {stats.epoch}'s sample",
                          lambda: self.tb.text("sample", self.sample(self.cfg.log.sample_chars), stats.step))
        if self.cfg.log.tensorboard and self.cfg.log.attention_images:
            # One image per head at every epoch, so TensorBoard's slider shows attention forming.
            self.optional(f"epoch {stats.epoch}'s attention images", lambda: self.probe.log_images(self.tb, stats.step))

    def optional(self, what: str, work: Callable[[], object]) -> None:
        """Run an optional step; a failure is one line on stderr, never the end of the run."""
        try:
            work()
        except Exception as e:  # whatever broke, the checkpoint is already saved
            print(f"warning: {what} failed ({type(e).__name__}: {e}); training goes on", file=sys.stderr)

    def append_metrics(self, row: dict[str, Any]) -> None:
        # json writes floats with repr, so a logged loss is the exact float value, fit for bit-for-bit checks.
        line = json.dumps(row) + "\n"
        path = self.run_dir / METRICS_FILE
        try:
            # Appended, not replaced: a line cut short by a full disk is dropped by rewind_metrics on resume.
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as e:
            raise disk.write_error(path, e, len(line.encode())) from None

    def sample(self, n: int, stream: bool = False) -> str:
        """`n` characters from the model at temperature 0.8, seeded by train.seed; with `stream` printed as
        they come."""
        vocab = self.vocab
        prompt = self.cfg.log.sample_prompt if not vocab.unknown(self.cfg.log.sample_prompt) else vocab.chars[0]
        generator = torch.Generator().manual_seed(self.cfg.train.seed)

        def emit(token: int) -> None:
            sys.stdout.write(vocab.chars[token])
            sys.stdout.flush()

        ids = generate(self.model, vocab.encode(prompt), n, SamplingOptions(temperature=0.8), generator,
                       on_token=emit if stream else None)
        return prompt + vocab.decode(ids)

    def finish(self, st: TrainState) -> None:
        """The loss chart, the best epoch, hyperparameters, summary.json and the closing sample."""
        if not self.is_main:
            return
        losses = [h["val_loss"] for h in st.history]
        self.console.print()
        self.console.print(loss_chart(losses), highlight=False)
        if st.history:
            best = st.history[st.best_epoch - 1]
            self.console.print(
                f"\nbest epoch {st.best_epoch}: val loss {best['val_loss']:.4f}, accuracy "
                f"{best['val_accuracy']:.3f} (perplexity {math.exp(best['val_loss']):.2f}); "
                f"{st.step} steps in {st.elapsed:.1f}s", highlight=False)
            if best.get("val_task_loss") is not None:
                self.console.print(f"on the predictable part: loss {best['val_task_loss']:.4f}, accuracy "
                                   f"{best['val_task_accuracy']:.3f}", highlight=False)
            if self.eval_plan is not None and not self.eval_plan.full:
                self.console.print(f"val loss measured on {self.eval_plan.describe()}; `attnlm eval --full` "
                                   "evaluates all of them", highlight=False)
            last = st.history[-1]
            self.tb.finish({"hparam/best_val_loss": st.best_val, "hparam/final_val_loss": last["val_loss"],
                            "hparam/final_val_accuracy": last["val_accuracy"]}, st.step)
        summary = {"best_val_loss": st.best_val, "best_epoch": st.best_epoch, "steps": st.step,
                   "epochs": len(st.history), "seconds": st.elapsed}
        # Atomic like the checkpoints: `attnlm runs` reads a run as finished when this file exists.
        data = (json.dumps(summary, indent=2) + "\n").encode()
        disk.atomic_write(self.run_dir / SUMMARY_FILE, lambda f: f.write(data), len(data))
        self.console.print(f"run saved in {self.run_dir}/ (checkpoints/best.pt, checkpoints/last.pt, "
                           f"TensorBoard: tensorboard --logdir {self.run_dir.parent})", highlight=False)
        if self.cfg.log.sample_chars:
            self.console.print("\n[bold]sample[/bold] (temperature 0.8):")
            self.optional("the closing sample", lambda: self.sample(self.cfg.log.sample_chars, stream=True))
            sys.stdout.write("\n")

    def already_finished(self, step: int) -> None:
        self.console.print(f"{self.run_dir} already finished (step {step}); to train it further raise "
                           "train.epochs, train.max_steps or train.max_time with --set", highlight=False, soft_wrap=True)

    def interrupted(self, signal_name: str, step: int, resume_command: str) -> None:
        self.console.print(
            f"\n{signal_name}: stopped at step {step} and saved {self.run_dir}/checkpoints/last.pt; "
            f"resume with: {resume_command}", highlight=False,
            soft_wrap=True)  # never break the command across lines: users copy it
