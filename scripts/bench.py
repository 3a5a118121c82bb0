"""Benchmarks that print numbers: training throughput, the time-budgeted speedrun, sampling speed.

Every mode drives the real attnlm code (Trainer, `attnlm train`, generate), prints a table and then one
JSON line (prefixed `BENCH `) so results can be compared across commits:

    python scripts/bench.py throughput --config configs/reference-cpu.yaml --data data/tinyshakespeare.txt
    python scripts/bench.py speedrun   --config configs/speedrun-cpu.yaml  --data data/tinyshakespeare.txt
    python scripts/bench.py speedrun   ... --compile-cache DIR   # reuse torch.compile's kernels in DIR
    python scripts/bench.py speedrun   --vs-nanogpt ~/nanoGPT     # nanoGPT's CPU recipe first, then ours in its time
    python scripts/bench.py throughput --vs-nanogpt ~/nanoGPT     # tokens/s against nanoGPT's, same machine
    python scripts/bench.py sample     --run runs/speedrun-cpu --chars 2000
    python scripts/bench.py all        --data data/tinyshakespeare.txt     # throughput, speedrun, sample in one go
    python scripts/bench.py data       --size 1G     # preparation and training on a synthetic 1 GB corpus

docs/performance.md explains the method, docs/records.md holds the results. A machine's speed drifts, so
compare only figures measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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

# Like every script, bench.py uses only attnlm's public API: attnlm and attnlm.api (tests/test_scripts.py).
import attnlm  # noqa: E402
from attnlm.api import Config, cpu_has_bf16, git_commit, load_config, resolve_device, use_bf16, use_compile  # noqa: E402

console = Console(highlight=False)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    if "cpu family" in fields:  # a cloud CPU's name can be as bare as "AMD EPYC": family and model tell which
        cpu += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    info: dict[str, Any] = {"cpu": cpu, "cpu_flags": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
                                                    if f in flags],
                            "threads": torch.get_num_threads(), "torch": torch.__version__, "load1": os.getloadavg()[0]}
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


# nanoGPT's documented CPU recipe for tiny Shakespeare (its README), fp32, with evaluations as it prints them.
# Its shape is written once: the speedrun's whole run, the throughput pairs and the FLOP count share it.
NANOGPT_MODEL = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}
NANOGPT_BATCH, NANOGPT_ITERS = 12, 2000
NANOGPT_RECIPE = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--dtype=float32",
                  "--eval_iters=20", "--eval_interval=250", "--log_interval=10",
                  *(f"--{key}={value}" for key, value in NANOGPT_MODEL.items()), f"--batch_size={NANOGPT_BATCH}",
                  f"--max_iters={NANOGPT_ITERS}", f"--lr_decay_iters={NANOGPT_ITERS}", "--dropout=0.0"]
NANOGPT_STEP_TOKENS = NANOGPT_BATCH * NANOGPT_MODEL["block_size"]
NANOGPT_TOKENS = NANOGPT_ITERS * NANOGPT_STEP_TOKENS  # what the whole recipe trains on


# ----- (1) throughput ------------------------------------------------------------------------------
def nanogpt_model(folder: Path) -> torch.nn.Module:
    """nanoGPT's GPT of the recipe's shape, from DIR's own model.py (for counting its FLOPs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nanogpt_model", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(1337)
    return module.GPT(module.GPTConfig(**NANOGPT_MODEL, vocab_size=65, dropout=0.0, bias=False))


def matmul_flops_per_token(forward_backward: Any, tokens: int) -> float:
    """The matrix-product FLOPs of one forward and backward pass, counted by torch's FlopCounterMode as the
    kernels run (matmuls and attention; the elementwise rest is not counted), per token of the batch."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        forward_backward()
    return counter.get_total_flops() / tokens


def peak_matmul(dtype: torch.dtype, seconds: float = 0.5) -> float:
    """This machine's matrix-product rate now, in GFLOP/s: the best of square products of a few sizes on the
    default threads, each timed for about `seconds` after a warm-up."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(3):
            a @ b
        reps, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            a @ b
            reps += 1
        best = max(best, 2 * n ** 3 * reps / elapsed / 1e9)
    return best


def steady_rate(times: list[tuple[int, float]], skip: int, steps: int, tokens_per_step: int) -> float:
    """Tokens/s over the steps after `skip`: (step, seconds since the process's training began) pairs."""
    at = dict(times)
    return (steps - skip) * tokens_per_step / (at[steps] - at[skip])


def attnlm_process(args: argparse.Namespace, data: str | None, steps: int, skip: int, out: Path) -> float:
    """One whole `attnlm train` process of `steps` steps; its steady tokens/s from the clock in its step rows."""
    cfg = config_for(args)
    cmd = [sys.executable, "-m", "attnlm", "train", "--config", str(args.config), "--overwrite",
           "--set", f"log.dir={out}", "--set", "log.timestamp=false", "--set", "log.name=throughput"]
    for s in [*args.set, *([f"data.path={data}"] if data else []), "train.max_time=null", f"train.max_steps={steps}",
              "train.epochs=1", f"train.steps_per_epoch={steps}", "log.print_every=10", "log.tensorboard=false",
              "log.sample_chars=0", "log.head_scores=false", "log.epoch_weights=false"]:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "110"})
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"attnlm train exited {proc.returncode}")
    rows = [json.loads(line) for line in (out / "throughput" / "metrics.jsonl").read_text().splitlines() if line]
    times = [(r["step"], r["elapsed"]) for r in rows if r.get("kind") == "step"]
    t = cfg.train
    return steady_rate(times, skip, steps, t.batch_size * t.grad_accum_steps * cfg.model.block_size)


def nanogpt_process(folder: Path, python: str, steps: int, skip: int) -> float:
    """One whole process of nanoGPT's CPU recipe cut to `steps` iterations, evaluating only before the first;
    its steady tokens/s from the time it prints for every iteration (log_interval=1), iterations `skip` on."""
    cmd = [python, "train.py", *NANOGPT_RECIPE, f"--max_iters={steps}", f"--lr_decay_iters={steps}",
           f"--eval_interval={10 * steps}", "--log_interval=1"]
    with tempfile.TemporaryDirectory(prefix="nanogpt-out-") as out:
        proc = subprocess.run([*cmd, f"--out_dir={out}"], cwd=folder, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"nanoGPT's train.py exited {proc.returncode}")
    return (steps - skip) * NANOGPT_STEP_TOKENS / nanogpt_seconds(proc.stdout, skip, steps)


def nanogpt_seconds(stdout: str, skip: int, steps: int) -> float:
    """The wall time of nanoGPT's iterations skip .. steps - 1 (attnlm's steps skip + 1 .. steps) from what its
    train.py prints with log_interval=1: each iteration's time runs from the end of the one before, so the sum
    is the time between the two ends."""
    ms = {int(k): float(v) for k, v in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", stdout)}
    missing = [k for k in range(skip, steps) if k not in ms]
    if missing:
        raise SystemExit(f"nanoGPT printed no time for iteration {missing[0]} (is log_interval 1?)")
    return sum(ms[k] for k in range(skip, steps)) / 1000


def profile_steps(cfg: Config, steps: int = 20) -> str:
    """Where one training step's time goes: torch.profiler over `steps` steps of the Trainer after warm-up."""
    from torch.profiler import ProfilerActivity, profile

    from attnlm.api import Trainer

    trainer = Trainer(cfg, Console(quiet=True))
    with tempfile.TemporaryDirectory() as tmp:
        trainer.run_dir = Path(tmp)
        for _ in range(30):
            trainer.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                trainer.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Steady-state training tokens/s of whole `attnlm train` processes, and with --vs-nanogpt DIR of whole
    processes of nanoGPT's CPU recipe, alternated A B A B: each process times its own steps after --skip, so
    start-up, compiling and evaluations stay out, and a drift in the machine's speed hits both of a pair alike.
    Beside it, the physical limit measured in the same run: the matmul FLOPs per token, the machine's peak
    matmul rate (fp32, and bf16 where the CPU has it), and the share of it each program uses."""
    from attnlm.api import Trainer

    if args.skip % 10 or args.steps % 10 or not 0 < args.skip < args.steps:
        raise SystemExit("--skip and --steps must be multiples of 10 (attnlm logs every 10 steps), skip < steps")
    folder = Path(args.vs_nanogpt).expanduser().resolve() if args.vs_nanogpt else None
    if folder and not (folder / "data" / "shakespeare_char" / "train.bin").is_file():
        raise SystemExit(f"{folder} is not a nanoGPT checkout with data/shakespeare_char prepared")
    data = args.data or (str(folder / "data" / "shakespeare_char" / "input.txt") if folder else None)
    if data:
        args.data = data
    cfg = config_for(args)
    cfg.log.tensorboard = False
    peak = {"fp32": peak_matmul(torch.float32)}
    if cpu_has_bf16():
        peak["bf16"] = peak_matmul(torch.bfloat16)

    eager = config_for(args)
    eager.train.compile, eager.train.precision = False, "fp32"  # counting runs eagerly; the count is the same
    counted = Trainer(eager, Console(quiet=True))
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum_steps * cfg.model.block_size
    with tempfile.TemporaryDirectory() as tmp:
        counted.run_dir = Path(tmp)
        ours_flops = matmul_flops_per_token(counted.step, tokens_per_step)
    del counted
    theirs_flops = None
    if folder:
        model = nanogpt_model(folder)
        T = NANOGPT_MODEL["block_size"]
        x = torch.randint(0, 65, (NANOGPT_BATCH, T))
        theirs_flops = matmul_flops_per_token(lambda: model(x, x)[1].backward(), NANOGPT_STEP_TOKENS)

    ours, theirs = [], []
    for i in range(args.pairs):
        if folder:
            theirs.append(nanogpt_process(folder, args.nanogpt_python, args.steps, args.skip))
        with tempfile.TemporaryDirectory(prefix="attnlm-bench-") as out:
            ours.append(attnlm_process(args, data, args.steps, args.skip, Path(out)))
        console.print(f"pair {i + 1}: attnlm {ours[-1]:,.0f} tokens/s" +
                      (f", nanoGPT {theirs[-1]:,.0f}, ratio {ours[-1] / theirs[-1]:.2f}" if folder else ""))
    median = statistics.median(ours)
    trainer_cfg = config_for(args)
    bf16 = use_bf16(resolve_device(trainer_cfg.train.device), trainer_cfg.train.precision)
    compiled = use_compile(resolve_device(trainer_cfg.train.device), trainer_cfg.train.compile, bf16)
    m, t = cfg.model, cfg.train
    arch = (f"{m.n_layer}x{m.n_head}x{m.n_embd} ctx {m.block_size} batch {t.batch_size} {m.pos} {m.norm} "
            f"{m.activation}{' qk_norm' if m.qk_norm else ''}{' mlp' if m.mlp else ''} "
            f"{'bf16' if bf16 else 'fp32'}{' compile' if compiled else ''}")
    ours_gflops = median * ours_flops / 1e9
    own_peak = peak["bf16" if bf16 and "bf16" in peak else "fp32"]
    rows = [("config", f"{args.config} {' '.join(args.set)}".strip()), ("model", arch),
            ("method", f"{args.pairs} whole processes each, alternated; steps {args.skip + 1}-{args.steps} timed by "
                       "each process's own clock"),
            ("peak matmul GFLOP/s, measured now", "  ".join(f"{k} {v:,.0f}" for k, v in peak.items())),
            ("attnlm tokens/s per process", " ".join(f"{r:,.0f}" for r in ours)),
            ("attnlm median tokens/s", f"{median:,.0f}"),
            ("attnlm matmul FLOPs per token", f"{ours_flops / 1e6:.2f} M"),
            ("attnlm matmul GFLOP/s, share of peak",
             f"{ours_gflops:,.0f} = {100 * ours_gflops / peak['fp32']:.0f}% of fp32 peak"
             + (f", {100 * ours_gflops / own_peak:.0f}% of bf16 peak" if bf16 and "bf16" in peak else ""))]
    record: dict[str, Any] = {"config": str(args.config), "set": args.set, "model": arch, "pairs": args.pairs,
                              "steps": args.steps, "skip": args.skip, "tokens_per_s": round(median),
                              "per_process": [round(r) for r in ours], "peak_gflops": {k: round(v) for k, v in peak.items()},
                              "matmul_flops_per_token": round(ours_flops), "matmul_gflops": round(ours_gflops, 1)}
    if folder:
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        their_median = statistics.median(theirs)
        their_gflops = their_median * theirs_flops / 1e9
        rows += [("nanoGPT tokens/s per process", " ".join(f"{r:,.0f}" for r in theirs)),
                 ("nanoGPT matmul FLOPs per token", f"{theirs_flops / 1e6:.2f} M"),
                 ("nanoGPT matmul GFLOP/s, share of fp32 peak",
                  f"{their_gflops:,.0f} = {100 * their_gflops / peak['fp32']:.0f}%"),
                 ("attnlm / nanoGPT per pair", " ".join(f"{r:.2f}" for r in ratios)),
                 ("attnlm / nanoGPT, median (min-max)",
                  f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")]
        record |= {"nanogpt_per_process": [round(r) for r in theirs], "nanogpt_flops_per_token": round(theirs_flops),
                   "nanogpt_gflops": round(their_gflops, 1), "ratios": [round(r, 3) for r in ratios],
                   "vs_nanogpt": round(statistics.median(ratios), 3)}
    result = emit("throughput", rows, record)
    if args.profile:
        print(profile_steps(cfg), flush=True)  # its own column layout, not wrapped to the terminal
    return result


# ----- (2) speedrun --------------------------------------------------------------------------------


def nanogpt(folder: Path, python: str) -> dict[str, Any]:
    """Run nanoGPT's CPU recipe from a checkout with data/shakespeare_char prepared; its whole wall time and
    its last reported val loss (an estimate from eval_iters=20 random batches)."""
    if not (folder / "train.py").is_file() or not (folder / "data" / "shakespeare_char" / "train.bin").is_file():
        raise SystemExit(f"{folder} is not a nanoGPT checkout with data/shakespeare_char prepared "
                         "(copy tiny Shakespeare to data/shakespeare_char/input.txt and run its prepare.py)")
    with tempfile.TemporaryDirectory(prefix="nanogpt-out-") as out:
        cmd = [python, "train.py", *NANOGPT_RECIPE, f"--out_dir={out}"]
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"nanoGPT's train.py exited {proc.returncode}")
    evals = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", proc.stdout)
    step, _, val = evals[-1]
    # nanoGPT times every iteration from the end of the one before (batch, forward, backward, step) and prints
    # every 10th; the median leaves out the iterations that held an evaluation, so it is its steady step.
    iter_ms = [float(ms) for it, ms in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", proc.stdout)
               if int(it) > 0]
    return {"val_loss": float(val), "step": int(step), "wall_seconds": round(wall, 2),
            "median_step_ms": round(statistics.median(iter_ms), 2), "tokens": NANOGPT_TOKENS,
            "val_curve": [float(v) for _, _, v in evals], "load_before": load_before, "load_after": os.getloadavg()[0]}


def speedrun(args: argparse.Namespace) -> dict[str, Any]:
    """`attnlm train` in a subprocess under the config's train.max_time; the final val loss is the
    trainer's own full deterministic validation pass, read back from the run's metrics.jsonl.

    With --vs-nanogpt DIR, nanoGPT's CPU recipe runs first and its whole wall time W sets the budget:
    train.max_time = W - --overhead, so that attnlm's whole process (start-up, compile, training, the final
    validation pass, writing the run) takes no longer than nanoGPT's."""
    theirs = None
    if args.vs_nanogpt:
        folder = Path(args.vs_nanogpt).expanduser().resolve()
        if not args.data:  # the very file nanoGPT's prepare.py read: same text, same 90/10 split
            args.data = str(folder / "data" / "shakespeare_char" / "input.txt")
        theirs = nanogpt(folder, args.nanogpt_python)
        console.print(f"nanoGPT CPU recipe: val loss {theirs['val_loss']:.4f} at step {theirs['step']} in "
                      f"{theirs['wall_seconds']:.1f}s wall (load {theirs['load_before']:.2f} / "
                      f"{theirs['load_after']:.2f})")
        args.set = [*args.set, f"train.max_time={theirs['wall_seconds'] - args.overhead:.1f}"]
        if args.eval_every:
            # Evaluations on a fixed subset every few seconds, to time when our val first reaches nanoGPT's
            # final one; they run inside the budget, so they cost our run training time.
            args.set += [f"train.steps_per_epoch={args.eval_every}", "train.epochs=1000000",
                         f"train.eval_chars={args.eval_chars}", "log.head_scores=false", "log.epoch_weights=false"]
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
    record_extra: dict[str, Any] = {}
    if theirs and args.eval_every:
        # The final model's full validation pass (the run's last evaluation covered only the subset).
        full_val = attnlm.load(run / "checkpoints" / "last.pt").evaluate(full=True).loss
        startup = wall - summary["seconds"]  # start-up and writing the run: counted whole against us
        reached = next((e for e in epochs if e["val_loss"] <= theirs["val_loss"]), None)
        to_target = reached["elapsed"] + startup if reached else None
        rows += [("val at nanoGPT's wall time (full pass of the final model)", f"{full_val:.4f}"),
                 ("evaluations", f"every {args.eval_every} steps on {args.eval_chars:,} characters"),
                 ("time to nanoGPT's final val",
                  f"{to_target:.1f}s at step {reached['step']} (val {reached['val_loss']:.4f}): "
                  f"{theirs['wall_seconds'] / to_target:.1f}x faster" if reached else "not reached")]
        record_extra = {"full_val_loss": round(full_val, 4), "eval_every": args.eval_every,
                        "seconds_to_nanogpt_val": round(to_target, 1) if reached else None,
                        "speedup_to_nanogpt_val": round(theirs["wall_seconds"] / to_target, 2) if reached else None}
    if theirs:
        rows += [("nanoGPT CPU recipe: val loss (last eval, 20 batches)", f"{theirs['val_loss']:.4f}"),
                 ("nanoGPT: steps / process wall time", f"{theirs['step']} / {theirs['wall_seconds']:.1f}s"),
                 ("nanoGPT: load avg before / after", f"{theirs['load_before']:.2f} / {theirs['load_after']:.2f}"),
                 ("attnlm within nanoGPT's wall time", "yes" if wall <= theirs["wall_seconds"] else
                  f"NO: {wall - theirs['wall_seconds']:.1f}s over (raise --overhead)")]
    return emit("speedrun", rows, {"config": str(args.config), "set": args.set, "nanogpt": theirs,
                                   "final_val_loss": round(final["val_loss"], 4),
                                   "best_val_loss": round(summary["best_val_loss"], 4), "steps": summary["steps"],
                                   "train_seconds": round(summary["seconds"], 2), "wall_seconds": round(wall, 2),
                                   "compile_cache": "warm" if warm else "cold",
                                   "tokens_per_s": round(tokens / summary["seconds"]),
                                   "val_curve": [round(e["val_loss"], 4) for e in epochs], "run": str(run),
                                   **record_extra})


# ----- (3) sampling --------------------------------------------------------------------------------
def sample(args: argparse.Namespace) -> dict[str, Any]:
    """Characters/s with the key/value cache and with the recompute-the-window reference, same seed: the time
    of Model.generate, which also turns the prompt into ids and the new ids into text (microseconds)."""
    if args.run and args.checkpoint:
        raise SystemExit("give either --run or --checkpoint, not both")
    if args.run or args.checkpoint:
        model = attnlm.load(args.checkpoint or args.run, device=args.device)
        what = model.source
    else:
        # Speed depends on the model's shape and the vocabulary's size, not on the weights or on which
        # characters there are: an untrained model of the config's shape, its vocabulary the 65 characters
        # (as many as tiny Shakespeare has) of a made-up text, so that no corpus is needed.
        cfg = config_for(args)
        alphabet = "\n" + "".join(map(chr, range(32, 96)))
        with tempfile.TemporaryDirectory(prefix="attnlm-bench-") as tmp:
            text = Path(tmp) / "alphabet.txt"
            text.write_text(alphabet * (cfg.model.block_size // 16 + 4), encoding="utf-8")
            model = attnlm.Model.untrained(cfg, [f"data.path={text}", f"data.cache_dir={tmp}",
                                                 "data.val_fraction=0.5"], device=args.device)
        what = f"untrained {args.config}"
    prompt = model.vocab.chars[0]  # id 0
    texts: dict[bool, str] = {}
    rates: dict[bool, list[float]] = {True: [], False: []}
    for use_cache in (True, False):
        model.generate(prompt, 20, temperature=0.8, seed=0, use_cache=use_cache)  # warm-up
    for _ in range(args.repeats):  # alternated, so a drift in the machine's speed hits both paths
        for use_cache in (True, False):
            t0 = time.perf_counter()
            text = model.generate(prompt, args.chars, temperature=0.8, seed=args.seed, use_cache=use_cache)
            rates[use_cache].append(args.chars / (time.perf_counter() - t0))
            texts[use_cache] = text
    results = {c: (texts[c], statistics.median(rates[c])) for c in (True, False)}
    identical = results[True][0] == results[False][0]
    speedup = results[True][1] / results[False][1]
    m = model.config.model
    rows = [("model", f"{what} ({m.n_layer}x{m.n_head}x{m.n_embd}, context {m.block_size})"),
            ("characters", f"{args.chars} x {args.repeats} runs per path (medians)"),
            ("cached chars/s", f"{results[True][1]:,.0f}"),
            ("recompute chars/s", f"{results[False][1]:,.0f}"), ("speed-up", f"{speedup:.1f}x"),
            ("identical output (same seed)", str(identical))]
    record = emit("sample", rows, {"model": what, "vocab": model.vocab.size, "chars": args.chars,
                                   "repeats": args.repeats, "cached_chars_per_s": round(results[True][1]),
                                   "recompute_chars_per_s": round(results[False][1]),
                                   "speedup": round(speedup, 2), "identical": identical})
    if not identical:
        raise SystemExit("cached and recomputed generation differ for the same seed")
    return record


# ----- (4) data at scale -------------------------------------------------------------------------
def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)


def synthetic_corpus(base: Path, size: int, path: Path, seed: int = 0) -> None:
    """`size` bytes of the base corpus's lines, shuffled and repeated: a text with the base's vocabulary and
    line statistics but no long repeats at a fixed period. A few shuffles are made and written in a random
    order (shuffling per block would make generating 10 GB take longer than preparing it)."""
    import random

    rng = random.Random(seed)
    lines = base.read_text(encoding="utf-8").splitlines(keepends=True)
    blocks = []
    for _ in range(8):
        rng.shuffle(lines)
        blocks.append("".join(lines).encode("utf-8"))
    written = 0
    with open(path, "wb") as f:
        while written < size:
            block = blocks[rng.randrange(len(blocks))][: size - written]
            f.write(block)
            written += len(block)


def memory_of(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile) of a process in kB: its own memory, and the file pages it has mapped (for attnlm,
    the memory-mapped corpus: shared page cache, dropped first when memory runs short)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return int(fields["RssAnon"].split()[0]), int(fields["RssFile"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


def run_measured(cmd: list[str], env: dict[str, str], first_step_in: Path | None = None,
                 stop_at_first_step: bool = False, timeout: float = 7200) -> dict[str, Any]:
    """Run `cmd`: its wall time, CPU time and peak resident memory (ru_maxrss of that process alone), its
    peak own (anonymous) memory and mapped file pages sampled every 10 ms, and, when `first_step_in` is a
    run folder, the seconds from launch until its metrics.jsonl holds a step (then, with
    `stop_at_first_step`, the process is killed: the rest of its run is not measured)."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first_step = None
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)  # never block on a full pipe
    reader.start()
    anon = file = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        a, f = memory_of(proc.pid)
        anon, file = max(anon, a), max(file, f)
        if first_step is None and first_step_in is not None:
            metrics = first_step_in / "metrics.jsonl"
            if metrics.is_file() and '"kind": "step"' in metrics.read_text():
                first_step = time.perf_counter() - t0
                if stop_at_first_step:
                    proc.kill()
        if time.perf_counter() - t0 > timeout:
            proc.kill()
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    text = "".join(output)
    if proc.returncode != 0 and not (stop_at_first_step and first_step is not None):
        sys.stderr.write(text[-4000:])
        raise SystemExit(f"{' '.join(cmd[2:5])} exited {proc.returncode}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "peak_anon_mb": anon / 1024, "peak_file_mb": file / 1024, "first_step": first_step, "output": text}


def data(args: argparse.Namespace) -> dict[str, Any]:
    """Preparation MB/s and memory, then a short training run (tiny model) on a synthetic corpus of
    --size bytes: peak memory, seconds to the first optimizer step with the prepared cache and without it,
    and the time of an epoch's evaluation (the fixed subset, and optionally the full pass)."""
    import shutil

    size = parse_size(args.size)
    tmp_root = Path(args.tmp)
    free = shutil.disk_usage(tmp_root).free
    if free < 2.2 * size:
        raise SystemExit(f"{tmp_root} has {free / 1e9:.1f} GB free; --size {args.size} needs about {2.2 * size / 1e9:.1f} GB "
                         "(the corpus and its prepared copy)")
    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="attnlm-bench-data-", dir=tmp_root))
    # One thread by default: where other processes want the same cores, OpenMP threads spin-wait against them
    # and small kernels slow down many times over; one thread keeps the figures comparable between runs.
    env = {**os.environ, "COLUMNS": "110", "OMP_NUM_THREADS": str(args.threads)}
    torch.set_num_threads(args.threads)
    try:
        corpus, cache = work / "corpus.txt", work / "cache"
        t0 = time.perf_counter()
        synthetic_corpus(Path(args.base), size, corpus)
        gen_s = time.perf_counter() - t0
        data_set = ["--set", f"data.cache_dir={cache}"]
        prep = run_measured([sys.executable, "-m", "attnlm", "data", "prepare", str(corpus), *data_set], env)
        train_cmd = [sys.executable, "-m", "attnlm", "train", "--config", args.config, "--set", f"data.path={corpus}",
                     *data_set, "--set", f"log.dir={work / 'runs'}", "--set", "log.timestamp=false",
                     "--set", f"train.max_steps={args.steps}", "--set", "log.print_every=1",
                     "--set", "log.sample_chars=0", "--set", "log.tensorboard=false", *sum((["--set", s] for s in args.set), [])]
        # The reference: the same command on a 1 MB corpus (prepared beforehand), for the start-up that does not
        # depend on the corpus (Python, torch, the model) on this machine at this moment. Alternated, medians.
        small = work / "small.txt"
        small.write_bytes(corpus.open("rb").read(1 << 20).rsplit(b"\n", 1)[0] + b"\n")
        small_cmd = [a if a != f"data.path={corpus}" else f"data.path={small}" for a in train_cmd]
        run_measured([sys.executable, "-m", "attnlm", "data", "prepare", str(small), *data_set], env)
        starts: dict[str, list[float]] = {"big": [], "small": []}
        for i in range(args.repeats):
            for kind, cmd in (("big", train_cmd), ("small", small_cmd)):
                name = f"start-{kind}-{i}"
                run = run_measured([*cmd, "--name", name], env, first_step_in=work / "runs" / name, stop_at_first_step=True)
                starts[kind].append(run["first_step"])
        warm = run_measured([*train_cmd, "--name", "warm"], env)
        ref = run_measured([*small_cmd, "--name", "small"], env)
        epoch = [json.loads(line) for line in (work / "runs" / "warm" / "metrics.jsonl").read_text().splitlines()
                 if '"kind": "epoch"' in line][-1]
        cold = None
        if not args.skip_cold:
            shutil.rmtree(cache)
            cold = run_measured([*train_cmd, "--name", "cold"], env, first_step_in=work / "runs" / "cold",
                                stop_at_first_step=True)
        # The evaluation alone, as the trainer runs it at each epoch's end (same code, in this process): an
        # untrained model of the config on the prepared corpus, evaluated on its validation split. Model.evaluate
        # also finds the prepared corpus in the cache and maps it again (milliseconds, however big it is).
        model = attnlm.Model.untrained(args.config, [f"data.path={corpus}", f"data.cache_dir={cache}", *args.set],
                                       device="cpu")
        evals = {}
        for name, full in [("subset", False)] + ([("full", True)] if args.full_eval else []):
            t0 = time.perf_counter()
            count = model.evaluate(full=full).tokens
            evals[name] = (time.perf_counter() - t0, count)
        prepared_mb = sum(f.stat().st_size for f in cache.rglob("*.bin")) / 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import re

    prep_s = float(re.search(r"prepared in ([\d.]+)s", prep["output"]).group(1))
    for line in warm["output"].splitlines():  # what the trainer itself says about the data and its evaluation
        if line.startswith(("attnlm training", "val loss measured on", "prepared ")):
            console.print(line, highlight=False, soft_wrap=True)
    mb = size / 1e6
    rows = [("corpus", f"{size / 1e9:.2f} GB synthetic ({args.base}'s lines shuffled, repeated), made in {gen_s:.0f}s"),
            ("prepare: the preparation", f"{prep_s:.1f}s: {mb / prep_s:.0f} MB/s (as attnlm data prepare reports it)"),
            ("prepare: the whole command", f"{prep['wall']:.1f}s wall with Python and torch start-up: "
             f"{mb / prep['wall']:.0f} MB/s ({mb / prep['cpu']:.0f} MB per CPU-second)"),
            ("prepare peak memory (RSS)", f"{prep['peak_rss_mb']:,.0f} MB"),
            ("prepared size (train.bin + val.bin)", f"{prepared_mb:,.0f} MB"),
            ("train: first step, prepared cache", f"{statistics.median(starts['big']):.1f}s after launch "
             f"(median of {' '.join(f'{x:.1f}' for x in starts['big'])})"),
            ("train: first step, 1 MB corpus (reference)", f"{statistics.median(starts['small']):.1f}s after launch "
             f"(median of {' '.join(f'{x:.1f}' for x in starts['small'])})"),
            ("train: peak memory (RSS)", f"{warm['peak_rss_mb']:,.0f} MB ({args.steps} steps + final evaluation)"),
            ("  of which own (anonymous) memory", f"{warm['peak_anon_mb']:,.0f} MB (1 MB corpus: "
             f"{ref['peak_anon_mb']:,.0f} MB)"),
            ("  of which mapped file pages", f"{warm['peak_file_mb']:,.0f} MB (corpus pages, shared page cache)")]
    if cold is not None:
        rows += [("train: first step, no cache (prepares)", f"{cold['first_step']:.1f}s after launch"),
                 ("  peak memory (RSS) until then", f"{cold['peak_rss_mb']:,.0f} MB")]
    rows += [(f"epoch evaluation ({name}, {count:,} predictions)", f"{secs:.1f}s ({count / secs:,.0f}/s)")
             for name, (secs, count) in evals.items()]
    rows += [("train epoch row (steps + evaluation)", f"{epoch['seconds']:.1f}s"),
             ("torch threads per process", str(args.threads)),
             ("load avg (1 min), start / end", f"{load_start:.2f} / {os.getloadavg()[0]:.2f}")]
    return emit("data", rows, {
        "size_bytes": size, "generate_s": round(gen_s, 1), "prepare_s": prep_s, "prepare_command_s": round(prep["wall"], 2),
        "prepare_mb_s": round(mb / prep_s, 1), "prepare_mb_per_cpu_s": round(mb / prep["cpu"], 1),
        "prepare_peak_rss_mb": round(prep["peak_rss_mb"]),
        "train_first_step_s": [round(x, 2) for x in starts["big"]],
        "reference_first_step_s": [round(x, 2) for x in starts["small"]],
        "train_peak_rss_mb": round(warm["peak_rss_mb"]), "train_peak_anon_mb": round(warm["peak_anon_mb"]),
        "train_peak_file_mb": round(warm["peak_file_mb"]), "reference_peak_anon_mb": round(ref["peak_anon_mb"]),
        "cold_first_step_s": round(cold["first_step"], 2) if cold else None,
        "cold_peak_rss_mb": round(cold["peak_rss_mb"]) if cold else None,
        "eval_s": {k: round(v[0], 2) for k, v in evals.items()}, "steps": args.steps, "config": args.config,
        "threads": args.threads})


def nanogpt_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--vs-nanogpt", metavar="DIR", default=None,
                   help=f"a karpathy/nanoGPT checkout with data/shakespeare_char prepared: {what}")
    p.add_argument("--nanogpt-python", default=sys.executable,
                   help="Python to run nanoGPT with (needs torch and numpy; default: this one)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)

    def common(p: argparse.ArgumentParser, config: str) -> None:
        p.add_argument("--config", default=config, help="YAML config (default: %(default)s)")
        p.add_argument("--data", default=None, help="corpus to use instead of the config's data.path")
        p.add_argument("--set", action="append", default=[], help="section.key=value override (repeatable)")

    p = sub.add_parser("throughput", help="steady training tokens/s of whole processes, and the share of peak")
    common(p, "configs/reference-cpu.yaml")
    p.add_argument("--pairs", type=int, default=5, help="processes of each program, alternated (default: %(default)s)")
    p.add_argument("--steps", type=int, default=400, help="steps of each process (default: %(default)s)")
    p.add_argument("--skip", type=int, default=100,
                   help="steps left out of the timing, start-up and compile among them (default: %(default)s)")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's table of 20 of our steps")
    nanogpt_options(p, "alternate whole processes of its CPU recipe with ours (default data: its input.txt)")
    p.set_defaults(func=throughput)

    p = sub.add_parser("speedrun", help="train under the config's time budget; final val loss")
    common(p, "configs/speedrun-cpu.yaml")
    p.add_argument("--out", default=None, help="folder for the run (default: a temporary folder)")
    p.add_argument("--verbose", action="store_true", help="show the trainer's output")
    p.add_argument("--compile-cache", default=None,
                   help="torch.compile cache folder to use (default: a new empty one, as on a first run)")
    nanogpt_options(p, "run its CPU recipe first and give attnlm its wall time "
                       "(default data: DIR/data/shakespeare_char/input.txt)")
    p.add_argument("--overhead", type=float, default=8.0,
                   help="with --vs-nanogpt: seconds of attnlm's process outside train.max_time (start-up, the "
                        "final validation pass, writing the run); max_time = nanoGPT's wall time - this")
    p.add_argument("--eval-every", type=int, default=None, metavar="STEPS",
                   help="with --vs-nanogpt: evaluate every STEPS steps to time when our val first reaches nanoGPT's "
                        "final val (the final model then gets a full validation pass afterwards)")
    p.add_argument("--eval-chars", type=int, default=32768,
                   help="with --eval-every: characters of each of those evaluations (default: %(default)s)")
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

    p = sub.add_parser("data", help="preparation speed and memory, training memory and start-up on a big corpus")
    p.add_argument("--size", default="1G", help="synthetic corpus size, e.g. 200M, 1G, 10G (default: %(default)s)")
    p.add_argument("--base", default="data/shakespeare.txt", help="corpus whose lines are repeated (default: %(default)s)")
    p.add_argument("--config", default="configs/tiny.yaml", help="model and training settings (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], help="section.key=value override (repeatable)")
    p.add_argument("--steps", type=int, default=50, help="optimizer steps of the training runs")
    p.add_argument("--tmp", default=tempfile.gettempdir(), help="where the corpus and its cache go (removed after)")
    p.add_argument("--skip-cold", action="store_true", help="skip the training run that prepares the corpus itself")
    p.add_argument("--full-eval", action="store_true", help="also time a full validation pass")
    p.add_argument("--repeats", type=int, default=3, help="start-up timings of each corpus, alternated")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every process (default: %(default)s)")
    p.set_defaults(func=data)

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
    t = load_config(args.speedrun_config).train
    device = resolve_device(t.device)
    if use_compile(device, t.compile, use_bf16(device, t.precision)):  # again, with the kernels the first run compiled
        main(["speedrun", "--config", args.speedrun_config, "--out", tempfile.mkdtemp(prefix="attnlm-bench-"),
              "--compile-cache", cache, *base])
    main(["sample", "--run", str(Path(out) / Path(args.speedrun_config).stem)])


if __name__ == "__main__":
    main()
