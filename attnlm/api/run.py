"""Training from Python and from `attnlm train`: a new run, a resumed one, and the Run they return."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from attnlm import distributed
from attnlm.api.arguments import check_choice, check_resuming, check_training
from attnlm.api.model import Model, load
from attnlm.config import Config, ConfigSource, config_from_source
from attnlm.errors import UserError
from attnlm.store.checkpoint import load_checkpoint
from attnlm.store.metrics import SUMMARY_FILE, read_metrics
from attnlm.store.run_dir import RunFolderExists, folder_bytes, lock_run, new_run_dir, unlock_run
from attnlm.store.run_info import write_run_info


# ----- training ------------------------------------------------------------------------------------------
@dataclass
class Run:
    """A run folder and how its latest training session ended."""

    dir: Path
    config: Config
    exit_code: int = 0  # 0: trained to its end; 130 / 143: stopped by Ctrl-C / SIGTERM, resumable

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """One row per finished epoch: epoch, step, train_loss, val_loss, val_accuracy, lr, seconds, ..."""
        return [row for row in read_metrics(self.dir) if row.get("kind") == "epoch"]

    @property
    def best_val_loss(self) -> float | None:
        rows = self.metrics
        return min(r["val_loss"] for r in rows) if rows else None

    @property
    def finished(self) -> bool:
        """Whether training ran to its end (epochs, max_steps or max_time), not stopped part way."""
        return (self.dir / SUMMARY_FILE).exists()

    def resume(self, overrides: Sequence[str] = (), **options: Any) -> Run:
        """Continue this run from its last.pt (e.g. after an interrupt, or with a raised train.epochs)."""
        return resume(self.dir, overrides, **options)

    def load(self, which: str = "best", device: str = "cpu") -> Model:
        """The model of this run's best.pt (or `which="last"`)."""
        check_choice("which", which, ("best", "last"))
        return load(self.dir / "checkpoints" / f"{which}.pt", device=device)


def train(config: ConfigSource, overrides: Sequence[str] = (), *, name: str | None = None, overwrite: bool = False,
          console: Console | None = None, exit_on_second_interrupt: bool = False) -> Run:
    """Train a new run. `config` is a YAML path, a mapping of sections ({"train": {"epochs": 2}, ...}) or a
    Config; `overrides` are `section.key=value` strings applied on top. Under torchrun every rank calls it.

    Ctrl-C (or a notebook's interrupt) stops at the next step boundary, writes last.pt and returns the Run
    with exit_code 130; `run.resume()` continues it exactly.
    """
    overrides = check_training(config, overrides, name=name, overwrite=overwrite, console=console,
                               exit_on_second_interrupt=exit_on_second_interrupt)
    overrides = [*overrides, f"log.name={name}"] if name else list(overrides)

    def setup(is_main: bool, console: Console) -> tuple[Any, Path | None, int | None]:
        from attnlm.training import Trainer

        cfg = config_from_source(config, overrides)
        trainer = Trainer(cfg, console)  # loads and checks the data before any folder is made
        if not is_main:
            return trainer, None, None
        # Before the folder is made: a run that cannot save its checkpoints should not start at all.
        replaced = Path(cfg.log.dir) / cfg.log.name  # what --overwrite deletes first
        trainer.check_room(Path(cfg.log.dir), freed=folder_bytes(replaced) if overwrite and not cfg.log.timestamp else 0)
        run_dir = new_run_dir(cfg.log.dir, cfg.log.name, cfg.log.timestamp, overwrite)
        lock = lock_run(run_dir)
        write_run_info(trainer.cfg, run_dir, trainer.corpus if trainer.task is None else None)
        return trainer, run_dir, lock

    return _train(setup, console, exit_on_second_interrupt)


def resume(run_dir: str | Path, overrides: Sequence[str] = (), *, config: str | Path | None = None,
           console: Console | None = None, exit_on_second_interrupt: bool = False) -> Run:
    """Continue a run folder from its checkpoints/last.pt, exactly where it stopped. The checkpoint's config
    applies unless `config` is given; `overrides` change it (the model section must stay the same)."""
    overrides = check_resuming(run_dir, overrides, config=config, console=console,
                               exit_on_second_interrupt=exit_on_second_interrupt)
    run_dir = Path(run_dir)

    def setup(is_main: bool, console: Console) -> tuple[Any, Path, int | None]:
        from attnlm.training import Trainer
        from attnlm.training.resume_check import accept_resume, resumed_config

        last = run_dir / "checkpoints" / "last.pt"
        if not run_dir.is_dir():
            raise UserError(f"run folder not found: {run_dir}; `attnlm runs` lists the runs")
        if not last.is_file():
            raise UserError(f"{run_dir} has no checkpoints/last.pt to resume from (it was stopped before its first "
                            "checkpoint); start it afresh with --config FILE --overwrite")
        lock = lock_run(run_dir) if is_main else None  # before reading last.pt: a live run could be rewriting it
        try:
            payload = load_checkpoint(last)
            resumed = resumed_config(run_dir, payload, config, overrides, is_main=is_main)
            trainer = Trainer(resumed.cfg, console, resume=payload)
            accept_resume(run_dir, resumed, trainer, console, is_main=is_main)
            if is_main:
                trainer.check_room(run_dir)
            return trainer, run_dir, lock
        except BaseException:
            if lock is not None:
                unlock_run(lock)
            raise

    return _train(setup, console, exit_on_second_interrupt)


def _train(setup: Callable[[bool, Console], tuple[Any, Path | None, int | None]], console: Console | None,
           exit_process: bool) -> Run:
    console = console or Console(highlight=False, soft_wrap=True)
    with distributed.session() as ctx:
        if not ctx.is_main:
            console = Console(quiet=True)
        trainer, run_dir, lock = distributed.agree(ctx, lambda: setup(ctx.is_main, console))
        try:
            # Rank 0 picked the (timestamped) folder name; the others must use the very same folder.
            run_dir = distributed.broadcast(ctx, run_dir)
            code = trainer.fit(run_dir, exit_process=exit_process)
            return Run(run_dir, trainer.cfg, code)
        finally:
            if lock is not None:
                unlock_run(lock)


def train_or_resume(*, config: Path | None, overrides: list[str], resume_dir: Path | None, overwrite: bool,
                    name: str | None, console: Console) -> int:
    """Train in this process, or as one rank of a torchrun job (then rank 0 makes the folder and reports)."""
    if resume_dir is not None:
        if overwrite:
            raise UserError("--resume continues a run and --overwrite replaces one; pick one")
        overrides = [*overrides, f"log.name={name}"] if name else overrides
        run = resume(resume_dir, overrides, config=config, console=console, exit_on_second_interrupt=True)
    else:
        if config is None:
            raise UserError("give --config FILE (e.g. configs/tiny.yaml) or --resume RUN_DIR")
        try:
            run = train(config, overrides, name=name, overwrite=overwrite, console=console,
                        exit_on_second_interrupt=True)
        except RunFolderExists as e:
            raise UserError(e.cli_message) from None
    return run.exit_code
