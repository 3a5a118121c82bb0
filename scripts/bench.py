"""Benchmarks that print numbers: training throughput, the time-budgeted speedrun, sampling speed.

Every mode drives the real attnlm code (Trainer, `attnlm train`, generate), prints a table and then one
JSON line (prefixed `BENCH `) so results can be compared across commits:

    python scripts/bench.py throughput --config configs/reference-cpu.yaml --data data/tinyshakespeare.txt
    python scripts/bench.py speedrun   --config configs/speedrun-cpu.yaml  --data data/tinyshakespeare.txt
    python scripts/bench.py speedrun   ... --compile-cache DIR   # reuse torch.compile's kernels in DIR
    python scripts/bench.py sample     --run runs/speedrun-cpu --chars 2000
    python scripts/bench.py all        --data data/tinyshakespeare.txt     # the README table

Timings on a shared machine are noisy: look at the load average printed with every result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from attnlm.config import Config, load_config  # noqa: E402
from attnlm.device import cpu_has_bf16  # noqa: E402
from attnlm.runs import git_commit  # noqa: E402

console = Console(highlight=False)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
                            "load1": os.getloadavg()[0]}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def emit(kind: str, rows: list[tuple[str, str]], record: dict[str, Any]) -> dict[str, Any]:
    table = Table(title=f"bench {kind}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in rows:
        table.add_row(what, value)
    console.print(table)
    record = {"bench": kind, "commit": git_commit(ROOT), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              **record, "machine": machine()}
    print("BENCH " + json.dumps(record), flush=True)
    return record


def config_for(args: argparse.Namespace) -> Config:
    overrides = list(args.set)
    if args.data:
        overrides.append(f"data.path={args.data}")
    return load_config(args.config, overrides)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----- (1) throughput ------------------------------------------------------------------------------
def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Tokens/s of the Trainer's own optimizer step (NaN guard and all), after warm-up and compile."""
    from attnlm.training import Trainer

    cfg = config_for(args)
    cfg.train.max_time = None  # a time budget would anneal the LR; irrelevant to speed
    cfg.log.tensorboard = False
    trainer = Trainer(cfg, Console(quiet=True))
    with tempfile.TemporaryDirectory() as tmp:
        trainer.run_dir = Path(tmp)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            trainer.step()
        sync(trainer.device)
        warmup_s = time.perf_counter() - t0
        tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum_steps * cfg.model.block_size
        rates = []
        for _ in range(args.windows):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer.step()
            sync(trainer.device)
            rates.append(args.steps * tokens_per_step / (time.perf_counter() - t0))
    median = statistics.median(rates)
    m, t = cfg.model, cfg.train
    arch = (f"{m.n_layer}x{m.n_head}x{m.n_embd} ctx {m.block_size} batch {t.batch_size} {m.pos} {m.norm} "
            f"{m.activation}{' qk_norm' if m.qk_norm else ''}{' mlp' if m.mlp else ''} "
            f"{'bf16' if trainer.bf16 else 'fp32'}{' compile' if t.compile else ''}")
    rows = [("config", f"{args.config} {' '.join(args.set)}".strip()), ("model", arch),
            ("parameters", f"{trainer.model.num_params():,}"), ("device", str(trainer.device)),
            ("warm-up", f"{args.warmup} steps in {warmup_s:.1f}s"),
            ("windows (tokens/s)", " ".join(f"{r:,.0f}" for r in rates)),
            ("median tokens/s", f"{median:,.0f}"), ("ms per step", f"{1000 * tokens_per_step / median:.2f}")]
    return emit("throughput", rows, {"config": str(args.config), "set": args.set, "model": arch,
                                     "tokens_per_s": round(median), "windows": [round(r) for r in rates],
                                     "steps_per_window": args.steps, "warmup_s": round(warmup_s, 2)})


# ----- (2) speedrun --------------------------------------------------------------------------------
def speedrun(args: argparse.Namespace) -> dict[str, Any]:
    """`attnlm train` in a subprocess under the config's train.max_time; the final val loss is the
    trainer's own full deterministic validation pass, read back from the run's metrics.jsonl."""
    cfg = config_for(args)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="attnlm-bench-"))
    name = cfg.log.name or Path(args.config).stem
    cmd = [sys.executable, "-m", "attnlm", "train", "--config", str(args.config), "--overwrite",
           "--set", f"log.dir={out}", "--set", "log.timestamp=false", "--set", f"log.name={name}"]
    if args.data:
        cmd += ["--set", f"data.path={args.data}"]
    for s in args.set:
        cmd += ["--set", s]
    env = {**os.environ, "COLUMNS": "110"}
    # A first run on a machine compiles every kernel from scratch (~12 s more on 2 cores than a run that
    # finds them in torch.compile's on-disk cache), so by default the cache is a new empty folder: the
    # honest figure for a user's first speedrun. --compile-cache DIR reuses DIR, warm from a run before.
    with tempfile.TemporaryDirectory(prefix="attnlm-inductor-") as empty:
        cache_dir = Path(args.compile_cache or empty)
        warm = cache_dir.is_dir() and any(cache_dir.iterdir())
        cache = f"{'warm' if warm else 'cold'} ({args.compile_cache or 'a new empty folder'})"
        env["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
    if args.verbose or proc.returncode != 0:
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode != 0:
        raise SystemExit(f"attnlm train exited {proc.returncode}")
    run = out / name
    summary = json.loads((run / "summary.json").read_text())
    rows_ = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in rows_ if r.get("kind", "epoch") == "epoch"]  # the file also holds per-step loss rows
    final = epochs[-1]
    tokens = summary["steps"] * cfg.train.batch_size * cfg.train.grad_accum_steps * cfg.model.block_size
    rows = [("config", f"{args.config} {' '.join(args.set)}".strip()), ("budget (train.max_time)", f"{cfg.train.max_time}s"),
            ("final val loss (full pass)", f"{final['val_loss']:.4f}"), ("best val loss", f"{summary['best_val_loss']:.4f}"),
            ("steps", str(summary["steps"])), ("evaluations", str(len(epochs))),
            ("training time (trainer clock)", f"{summary['seconds']:.1f}s"),
            ("process wall time", f"{wall:.1f}s"), ("compile cache", cache),
            ("tokens/s (incl. compile + evals)", f"{tokens / summary['seconds']:,.0f}"),
            ("load avg before / after", f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"), ("run", str(run))]
    return emit("speedrun", rows, {"config": str(args.config), "set": args.set, "final_val_loss": round(final["val_loss"], 4),
                                   "best_val_loss": round(summary["best_val_loss"], 4), "steps": summary["steps"],
                                   "train_seconds": round(summary["seconds"], 2), "wall_seconds": round(wall, 2),
                                   "compile_cache": "warm" if warm else "cold",
                                   "tokens_per_s": round(tokens / summary["seconds"]),
                                   "val_curve": [round(e["val_loss"], 4) for e in epochs], "run": str(run)})


# ----- (3) sampling --------------------------------------------------------------------------------
def sample(args: argparse.Namespace) -> dict[str, Any]:
    """Characters/s with the key/value cache and with the recompute-the-window reference, same seed."""
    from attnlm.checkpoint import load_model
    from attnlm.generation import SamplingOptions, generate
    from attnlm.model import AttnLM
    from attnlm.runs import resolve_checkpoint

    device = torch.device(args.device)
    if args.run or args.checkpoint:
        path = resolve_checkpoint(args.run, args.checkpoint)
        model, vocab, cfg, _ = load_model(path, device)
        what, vocab_size = str(path), vocab.size
    else:
        # Speed does not depend on the weights: a seeded untrained model of the config's shape will do.
        cfg = config_for(args)
        torch.manual_seed(0)
        vocab_size = 65
        model = AttnLM(cfg.model, vocab_size).to(device)
        what = f"untrained {args.config}"
    prompt = torch.tensor([0])
    opts = SamplingOptions(temperature=0.8)
    texts: dict[bool, torch.Tensor] = {}
    rates: dict[bool, list[float]] = {True: [], False: []}
    for use_cache in (True, False):
        generate(model, prompt, 20, opts, torch.Generator().manual_seed(0), use_cache=use_cache)  # warm-up
    for _ in range(args.repeats):  # alternated, so a slow moment of a shared machine hits both paths
        for use_cache in (True, False):
            t0 = time.perf_counter()
            ids = generate(model, prompt, args.chars, opts, torch.Generator().manual_seed(args.seed), use_cache=use_cache)
            rates[use_cache].append(args.chars / (time.perf_counter() - t0))
            texts[use_cache] = ids
    results = {c: (texts[c], statistics.median(rates[c])) for c in (True, False)}
    identical = torch.equal(results[True][0], results[False][0])
    speedup = results[True][1] / results[False][1]
    m = cfg.model
    rows = [("model", f"{what} ({m.n_layer}x{m.n_head}x{m.n_embd}, context {m.block_size})"),
            ("characters", f"{args.chars} x {args.repeats} runs per path (medians)"),
            ("cached chars/s", f"{results[True][1]:,.0f}"),
            ("recompute chars/s", f"{results[False][1]:,.0f}"), ("speed-up", f"{speedup:.1f}x"),
            ("identical output (same seed)", str(identical))]
    record = emit("sample", rows, {"model": what, "vocab": vocab_size, "chars": args.chars, "repeats": args.repeats,
                                   "cached_chars_per_s": round(results[True][1]),
                                   "recompute_chars_per_s": round(results[False][1]),
                                   "speedup": round(speedup, 2), "identical": identical})
    if not identical:
        raise SystemExit("cached and recomputed generation differ for the same seed")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)

    def common(p: argparse.ArgumentParser, config: str) -> None:
        p.add_argument("--config", default=config, help="YAML config (default: %(default)s)")
        p.add_argument("--data", default=None, help="corpus to use instead of the config's data.path")
        p.add_argument("--set", action="append", default=[], help="section.key=value override (repeatable)")

    p = sub.add_parser("throughput", help="training tokens/s of one config")
    common(p, "configs/reference-cpu.yaml")
    p.add_argument("--warmup", type=int, default=30, help="untimed steps first (compile happens here)")
    p.add_argument("--windows", type=int, default=5, help="timed windows; the median is reported")
    p.add_argument("--steps", type=int, default=50, help="steps per timed window")
    p.set_defaults(func=throughput)

    p = sub.add_parser("speedrun", help="train under the config's time budget; final val loss")
    common(p, "configs/speedrun-cpu.yaml")
    p.add_argument("--out", default=None, help="folder for the run (default: a temporary folder)")
    p.add_argument("--verbose", action="store_true", help="show the trainer's output")
    p.add_argument("--compile-cache", default=None,
                   help="torch.compile cache folder to use (default: a new empty one, as on a first run)")
    p.set_defaults(func=speedrun)

    p = sub.add_parser("sample", help="characters/s with and without the key/value cache")
    common(p, "configs/speedrun-cpu.yaml")
    p.add_argument("--run", default=None, help="run folder whose checkpoint to sample (default: untrained model)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file instead of --run")
    p.add_argument("--chars", type=int, default=2000, help="characters to generate per path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each path, alternated; medians reported")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=sample)

    p = sub.add_parser("all", help="reference throughput, speedrun, then sampling from the speedrun's model")
    p.add_argument("--data", default="data/tinyshakespeare.txt", help="benchmark corpus (default: %(default)s)")
    p.add_argument("--speedrun-config", default="configs/speedrun-cpu.yaml")
    p.set_defaults(func=None)

    args = parser.parse_args(argv)
    if args.func is not None:
        args.func(args)
        return
    base = ["--data", args.data]
    main(["throughput", "--config", "configs/reference-cpu.yaml", *base])
    if torch.cuda.is_available() or cpu_has_bf16():
        main(["throughput", "--config", "configs/reference-cpu.yaml", *base,
              "--set", "train.precision=bf16", "--set", "train.compile=true"])
    main(["throughput", "--config", args.speedrun_config, *base])
    out = tempfile.mkdtemp(prefix="attnlm-bench-")
    cache = tempfile.mkdtemp(prefix="attnlm-inductor-")
    main(["speedrun", "--config", args.speedrun_config, "--out", out, "--compile-cache", cache, *base])
    if load_config(args.speedrun_config).train.compile:  # again, with the kernels the first run compiled
        main(["speedrun", "--config", args.speedrun_config, "--out", tempfile.mkdtemp(prefix="attnlm-bench-"),
              "--compile-cache", cache, *base])
    main(["sample", "--run", str(Path(out) / Path(args.speedrun_config).stem)])


if __name__ == "__main__":
    main()
