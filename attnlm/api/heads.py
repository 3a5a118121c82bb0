"""`attnlm heads`: what each attention head does, as previous-token, duplicate-token and induction scores on a
repeated random sequence, each beside the score of the same model untrained (attnlm.inspection.heads says
how each is measured); with --epochs, the scores the run recorded after every epoch.

    report = attnlm.api.head_scores("runs/induction")
    report.scores.heads["1.0"]["induction"]     # 0.94
    report.baseline.heads["1.0"]["induction"]   # 0.02: the random-init model's
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from attnlm.errors import ArgumentTypeError, UserError, got

if TYPE_CHECKING:
    from attnlm.api.model import Model
    from attnlm.inspection.heads import HeadScores, SavedScores

CHECKPOINT_NAMES = ("best", "last")
LABELS = {"previous_token": "previous-token", "duplicate_token": "duplicate-token", "induction": "induction"}


@dataclass(frozen=True)
class HeadReport:
    source: str  # the checkpoint or export the model came from
    period: int  # R: the probe is R random tokens, then the same R again
    seed: int  # train.seed, which initialised the baseline
    scores: HeadScores  # the model's
    baseline: HeadScores  # the same config's model as training initialised it, before any step

    def to_json(self) -> dict[str, dict[str, float]]:
        """{'layer.head': {'previous_token': s, 'duplicate_token': s, 'induction': s}}, `attnlm heads --json`."""
        return self.scores.heads


def head_scores(model: Model | str | Path | None = None, device: str = "cpu") -> HeadReport:
    """Every head's previous-token, duplicate-token and induction score (each in [0, 1]) and the model's
    in-context learning score, beside those of the untrained model of the same config and train.seed.

    `model`: a Model (attnlm.load), or what attnlm.load takes: a run folder (its best.pt), a checkpoint file,
    an export folder, or None for the newest run under runs/.
    """
    from attnlm.api.model import Model, load
    from attnlm.inspection.heads import measure, repeat_probe, untrained

    if model is None or not isinstance(model, Model):
        if model is not None and not isinstance(model, (str, Path)):
            raise ArgumentTypeError(f"model must be an attnlm.Model, a run folder, a checkpoint file or None, got "
                                    f"{got(model)}")
        model = load(model, device=device)
    cfg = model.config
    probe = repeat_probe(model.vocab.size, cfg.model.block_size)
    if probe is None:
        raise UserError(f"{model.source} has model.block_size = {cfg.model.block_size}; the head scores' probe "
                        "repeats a sequence of at least 2 tokens, so it needs a context of 4 or more")
    baseline = untrained(model.module, cfg.train.seed).to(model.device)
    return HeadReport(model.source, probe.period, cfg.train.seed, measure(model.module, probe),
                      measure(baseline, probe))


# ----- the command ---------------------------------------------------------------------------------------
def heads(*, run: str | None, checkpoint: str | None, as_json: bool, epochs: bool, device: str,
          console: Console) -> None:
    """`attnlm heads`: the table of heads x scores (or --json), or with --epochs the run's per-epoch history."""
    from attnlm.device import resolve_device

    if epochs:
        if checkpoint is not None:
            raise UserError("--epochs reads the scores a run recorded after each epoch; give --run DIR without "
                            "--checkpoint")
        folder = _run_folder(run)
        history = _history(folder)
        if as_json:
            print(json.dumps([{"epoch": s.epoch, "step": s.step, **s.scores.to_dict()} for s in history]))
        else:
            _print_history(folder, history, console)
        return
    path = _checkpoint_path(run, checkpoint)
    resolve_device(device, "--device")  # a typo or a missing GPU is named as the option
    report = head_scores(str(path), device=device)
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        _print_report(report, console)


def _run_folder(run: str | None) -> Path:
    from attnlm.store.run_dir import list_run_dirs, named_run

    if run is not None:
        folder = named_run(run)
        if not (folder / "checkpoints").is_dir():
            raise UserError(f"run folder not found: {folder}; `attnlm runs` lists the runs")
        return folder
    runs = [p for p in list_run_dirs("runs") if any((p / "checkpoints").glob("*.pt"))]
    if not runs:
        raise UserError("no trained run under runs/; train one first with `attnlm train --config configs/tiny.yaml`")
    return runs[-1]


def _checkpoint_path(run: str | None, checkpoint: str | None) -> Path:
    """--checkpoint best or last: that checkpoint of --run (or of the newest run); a file; else as every command."""
    from attnlm.store.run_dir import resolve_checkpoint

    if checkpoint not in CHECKPOINT_NAMES:
        return resolve_checkpoint(run, checkpoint)
    folder = _run_folder(run)
    path = folder / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        other = CHECKPOINT_NAMES[checkpoint == "best"]
        raise UserError(f"run {folder} has no checkpoints/{checkpoint}.pt yet; try --checkpoint {other}, or train "
                        "it first")
    return path


def _history(folder: Path) -> list[SavedScores]:
    from attnlm.inspection.heads import saved_head_scores

    history = saved_head_scores(folder)
    if not history:
        raise UserError(f"run {folder} recorded no head scores (trained with log.head_scores=false or before "
                        f"attnlm had them); `attnlm heads --run {folder}` scores its checkpoint now")
    return history


def _print_report(report: HeadReport, console: Console) -> None:
    from attnlm.inspection.heads import SCORES, THRESHOLD
    from attnlm.terminal import print_fitting

    console.print(f"head scores of {report.source} on {report.period} random tokens repeated twice, each beside "
                  f"the score of the same model untrained (train.seed {report.seed})", highlight=False)
    # Widest first: a column per score and one per untrained score; then the untrained score in brackets.
    wide, narrow = (Table(box=None, pad_edge=False, padding=(0, 1)) for _ in range(2))
    for table in (wide, narrow):
        table.add_column("head", justify="right", no_wrap=True)
    for score in SCORES:
        wide.add_column(LABELS[score], justify="right", no_wrap=True)
        wide.add_column("untrained", justify="right", style="dim", no_wrap=True)
        narrow.add_column(f"{LABELS[score]}\n(untrained)", justify="right", no_wrap=True)
    for table in (wide, narrow):
        table.add_column("reads as")
    for key, values in report.scores.heads.items():
        base = report.baseline.heads[key]
        kinds = ", ".join(f"{LABELS[s]} head" for s in SCORES if values[s] >= THRESHOLD)
        wide.add_row(key, *(c for s in SCORES for c in (f"{values[s]:.2f}", f"{base[s]:.2f}")), kinds)
        narrow.add_row(key, *(f"{values[s]:.2f} ({base[s]:.2f})" for s in SCORES), kinds)
    print_fitting(console, [wide, narrow])
    console.print(f"in-context learning score {report.scores.icl_score:+.2f} nats (untrained "
                  f"{report.baseline.icl_score:+.2f}): the loss on the repeat minus on its first half; below 0 the "
                  "model uses its context", highlight=False)
    console.print(f"head L.H: layer L, head H, from 0; a score is the mean attention on the position it names "
                  f"(docs/heads.md); 'reads as' names scores of {THRESHOLD} or more", highlight=False)


def _print_history(folder: Path, history: list[SavedScores], console: Console) -> None:
    """One grid per score: a row per head, a column per epoch (0 is the model before training)."""
    from attnlm.inspection.heads import SCORES

    shown = _fitting(history, console.width)
    console.print(f"head scores of {folder} after each epoch (0: before training)", highlight=False)
    if len(shown) < len(history):
        console.print(f"{len(shown)} of {len(history)} epochs fit this terminal's {console.width} columns; "
                      "--json prints all of them", highlight=False)
    heads = list(history[-1].scores.heads)
    for score in SCORES:
        table = Table(title=f"{LABELS[score]} score", title_justify="left", box=None, pad_edge=False, padding=(0, 1))
        table.add_column("head", justify="right", no_wrap=True)
        for saved in shown:
            table.add_column(str(saved.epoch), justify="right", no_wrap=True)
        for key in heads:
            table.add_row(key, *(f"{s.scores.heads[key][score]:.2f}" if key in s.scores.heads else "-" for s in shown))
        console.print(table)
    table = Table(title="in-context learning score (nats)", title_justify="left", box=None, pad_edge=False,
                  padding=(0, 1))
    for saved in shown:
        table.add_column(str(saved.epoch), justify="right", no_wrap=True)
    table.add_row(*(f"{s.scores.icl_score:+.2f}" for s in shown))
    console.print(table)


def _fitting(history: list[SavedScores], width: int) -> list[SavedScores]:
    """As many epochs as fit `width` columns, evenly spread, the first and the last always among them."""
    fit = max(2, (width - 6) // 7)  # the head column, then "+0.00" columns with a space either side
    if len(history) <= fit:
        return history
    picks = sorted({round(i * (len(history) - 1) / (fit - 1)) for i in range(fit)})
    return [history[i] for i in picks]
