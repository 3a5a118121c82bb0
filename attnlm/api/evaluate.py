"""`attnlm eval`: loss, perplexity and next-character accuracy of a trained model."""

from __future__ import annotations

from rich.console import Console

from attnlm.api.model import load
from attnlm.data.sources import describe
from attnlm.data.vocab import listed
from attnlm.device import resolve_device
from attnlm.errors import UnknownCharacters, UserError
from attnlm.store.run_dir import resolve_checkpoint


def eval_(*, run: str | None, checkpoint: str | None, data: list[str] | None, device_name: str, console: Console,
          full: bool = False) -> None:
    device = resolve_device(device_name, "--device")
    model = load(resolve_checkpoint(run, checkpoint), device=device)
    if data:
        try:
            result = model.evaluate(data=data, full=full)
        except UnknownCharacters as e:  # name the file: the model's own message cannot know it
            raise UserError(f"--data {describe(data)} has characters the model never saw: {listed(e.missing)}; "
                            "evaluate on text written in the characters the model was trained on") from None
        what = describe(data)
    elif model.config.data.task is not None:
        result, what = model.evaluate(), f"the held-out windows of data.task {model.config.data.task}"
    else:
        result, what = model.evaluate(full=full), f"validation split of {describe(model.config.data.path)}"
    if result.subset is not None:
        what += f", {result.subset}; --full for all"
    console.print(f"{model.source} on {what} ({result.tokens:,} predictions):", highlight=False)
    console.print(f"  val loss   {result.loss:.4f}\n  perplexity {result.perplexity:.3f}\n"
                  f"  accuracy   {result.accuracy:.4f}", highlight=False)
    if result.task_loss is not None:
        console.print(f"on the predictable part:\n  loss       {result.task_loss:.4f}\n"
                      f"  accuracy   {result.task_accuracy:.4f}", highlight=False)
