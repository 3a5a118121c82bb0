"""`attnlm ablate`: switch each attention head off in turn and see what the model loses without it: the change
in its next-character loss and the predictions that flip (attnlm.inspection.ablation says how a head is
switched off).

    report = attnlm.api.ablate("runs/induction")      # a task run: on the repeated random probe
    report.intact_loss                                # every head on
    report.heads["1.2"].delta                         # the loss with head 1.2 off minus the intact loss
    report.heads["1.2"].flips[:3]                     # predictions whose likeliest next character changed
    report.to_json()                                  # {"L.H": delta}, `attnlm ablate --json`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from attnlm.checks import check_text, need_str
from attnlm.errors import ArgumentTypeError, ArgumentValueError, UserError, clipped, got

if TYPE_CHECKING:
    from attnlm.api.model import Model
    from attnlm.inspection.ablation import HeadAblation, Measured

MODES = ("zero", "mean")  # attnlm.inspection.ablation.MODES, here without importing torch
REPLACED = {"zero": "zeros", "mean": "its mean over every position of the same text"}
EXAMPLES = 3  # flipped predictions shown per head


@dataclass(frozen=True)
class AblationReport:
    source: str  # the checkpoint or export the model came from
    mode: str  # "zero" or "mean"
    measured_on: str  # what the loss was measured on, in words
    predictions: int  # next-character predictions scored
    intact_loss: float  # mean cross-entropy (nats) with every head on
    heads: dict[str, HeadAblation]  # 'L.H' -> the loss with that head off, its delta and the flipped predictions

    def to_json(self) -> dict[str, float]:
        """{'L.H': delta}, the loss with the head off minus the intact loss: `attnlm ablate --json`."""
        return {key: result.delta for key, result in self.heads.items()}


def ablate(model: Model | str | Path | None = None, text: str | None = None, mode: str = "zero",
           device: str = "cpu") -> AblationReport:
    """Switch each head off in turn (mode "zero": its output z becomes zeros before the output projection;
    "mean": its mean over every position of the same text) and measure the next-character loss beside the
    intact model's, with the predictions whose likeliest next character flips.

    The loss is measured on `text` (at least two characters; longer than the context, it is read in windows
    as `attnlm eval` reads it); without one, on the validation split of the run's data, or for a run trained
    on a built-in task (data.task) on the repeated random probe of `attnlm heads`, where switching off an
    induction head costs most. `model`: a Model (attnlm.load), or what attnlm.load takes: a run folder (its
    best.pt), a checkpoint file, an export folder, or None for the newest run under runs/.
    """
    from attnlm.api.model import Model, load

    _check_mode("mode", mode)
    if text is not None:
        check_text("text", text)
    if model is None or not isinstance(model, Model):
        if model is not None and not isinstance(model, (str, Path)):
            raise ArgumentTypeError(f"model must be an attnlm.Model, a run folder, a checkpoint file or None, got "
                                    f"{got(model)}")
        model = load(model, device=device)
    return _ablate(model, text, mode, "text")


def _check_mode(name: str, mode: object) -> str:
    need_str(name, mode, "'zero' or 'mean'")
    if mode not in MODES:
        raise ArgumentValueError(f"{name} must be 'zero' or 'mean', got {clipped(mode)}")
    return mode


def _ablate(model: Model, text: str | None, mode: str, subject: str) -> AblationReport:
    from attnlm.inspection.ablation import ablate_each_head

    measured, what = _measured(model, text, subject)
    intact, heads = ablate_each_head(model.module, measured, model.vocab.chars, mode)
    return AblationReport(model.source, mode, what, measured.predictions, intact.loss, heads)


def _measured(model: Model, text: str | None, subject: str) -> tuple[Measured, str]:
    """What the loss is measured on, and its description: `text`, else the task probe or the validation split."""
    from attnlm.data import EvalPlan, load_corpus
    from attnlm.data.sources import describe
    from attnlm.data.vocab import check_known
    from attnlm.inspection.ablation import probe_repeat, text_windows
    from attnlm.inspection.heads import repeat_probe

    c = model.config
    block_size, max_chars = c.model.block_size, c.train.eval_chars
    if text is not None:
        if len(text) < 2:
            raise ArgumentValueError(f"{subject} is too short to measure a loss on ({len(text)} character"
                                     f"{'s' * (len(text) != 1)}); give at least two")
        check_known(text, model.vocab, subject, "use only characters from its training text")
        ids = model.vocab.encode(text)
        what = f"the text given ({len(text):,} characters)"
    elif c.data.task is not None:
        probe = repeat_probe(model.vocab.size, block_size)
        if probe is None:
            raise UserError(f"{model.source} has model.block_size = {block_size}; the ablation's probe repeats a "
                            "sequence of at least 2 tokens, so it needs a context of 4 or more; give a text to measure on "
                            f"({subject})")
        return probe_repeat(probe.ids, probe.period), (
            f"the probe of `attnlm heads` ({probe.period} random symbols, then the same {probe.period} again), the "
            "second copy after its first symbol")
    else:
        d = c.data
        ids = load_corpus(d.path, d.val_fraction, block_size, model.vocab, separator=d.separator,
                          cache_dir=d.cache_dir).val
        plan = EvalPlan.of(len(ids), block_size, max_chars)
        what = f"the validation split of {describe(d.path)}" + ("" if plan.full else f", {plan.describe()}")
    return text_windows(ids, block_size, c.train.eval_batch_size, max_chars), what


# ----- the command ---------------------------------------------------------------------------------------
def ablate_command(*, run: str | None, checkpoint: str | None, text: str | None, mode: str, as_json: bool,
                   device: str, console: Console) -> None:
    """`attnlm ablate`: a row per head (loss off, delta, flips, examples) under the intact loss, or --json."""
    from attnlm.api.heads import _checkpoint_path
    from attnlm.api.model import load
    from attnlm.device import resolve_device

    _check_mode("--mode", mode)  # before torch is imported
    path = _checkpoint_path(run, checkpoint)
    resolve_device(device, "--device")  # a typo or a missing GPU is named as the option
    report = _ablate(load(path, device=device), text, mode, "--text")
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        _print_report(report, console)


def _print_report(report: AblationReport, console: Console) -> None:
    from attnlm.labels import show_char
    from attnlm.terminal import print_fitting

    console.print(f"head ablation of {report.source}: each head in turn switched off ({report.mode} ablation: its "
                  f"output z replaced by {REPLACED[report.mode]}, before the output projection)", highlight=False)
    console.print(f"on {report.measured_on}, {report.predictions:,} predictions: intact loss "
                  f"{report.intact_loss:.4f}", highlight=False)
    # Widest first: with a few flipped predictions of each head; then without them.
    wide, narrow = (Table(box=None, pad_edge=False, padding=(0, 1)) for _ in range(2))
    for table in (wide, narrow):
        table.add_column("head", justify="right", no_wrap=True)
        table.add_column("loss off", justify="right", no_wrap=True)
        table.add_column("Δ loss", justify="right", no_wrap=True)
        table.add_column("flips", justify="right", no_wrap=True)
    wide.add_column("e.g. position char: before → after", no_wrap=True)
    for key, result in report.heads.items():
        cells = (key, f"{result.loss:.4f}", f"{result.delta:+.4f}", f"{len(result.flips):,}")
        shown = [f"{f.position} {show_char(f.char)}: {show_char(f.before)}→{show_char(f.after)}"
                 for f in result.flips[:EXAMPLES]]
        wide.add_row(*cells, ", ".join(shown) + (", …" if len(result.flips) > EXAMPLES else ""))
        narrow.add_row(*cells)
    print_fitting(console, [wide, narrow])
    console.print("Δ loss: the loss with the head off minus the intact loss (nats), positive where the model needs "
                  "the head; flips: predictions whose likeliest next character changed; head L.H: layer L, head H, "
                  "from 0 (docs/heads.md)", highlight=False)
