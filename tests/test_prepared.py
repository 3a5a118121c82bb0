"""The prepared, memory-mapped corpus: the cache is reused and rebuilt, a killed preparation leaves nothing
usable, a prepared folder trains exactly like its text, torchrun ranks share it, and a long validation split
is evaluated on the same subset every epoch."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from rich.console import Console
from run_helpers import ROOT, TINY, metrics, step_losses

from attnlm.api.data import data_prepare
from attnlm.api.evaluate import eval_
from attnlm.config import load_config
from attnlm.data import EvalPlan, eval_windows, prepare_sources
from attnlm.data.memmap import read_meta
from attnlm.errors import UserError
from attnlm.store.run_dir import new_run_dir
from attnlm.training import Trainer


def entries(cache: Path) -> list[Path]:
    """Finished preparations in a cache folder (temporary and lock files are hidden)."""
    return sorted(p for p in cache.iterdir() if not p.name.startswith(".")) if cache.is_dir() else []


def test_the_cache_is_reused_and_rebuilt_when_a_source_changes(tmp_path: Path) -> None:
    path, cache = tmp_path / "t.txt", tmp_path / "cache"
    path.write_text("to be or not to be\n" * 50, encoding="utf-8")
    first = prepare_sources(path, 0.1, cache_dir=cache)
    again = prepare_sources(str(path), 0.1, cache_dir=cache)
    assert first.fresh and not again.fresh and again.folder == first.folder
    assert prepare_sources(path, 0.2, cache_dir=cache).folder != first.folder  # other settings, another entry
    # Same size and modification time, other content: the content hash of a small file still tells.
    stat = path.stat()
    path.write_text("to be or not to BE\n" * 50, encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = prepare_sources(path, 0.1, cache_dir=cache)
    assert changed.fresh and "E" in changed.meta["vocab"]
    # The superseded preparation of the same sources and settings is removed; the 0.2 split stays.
    assert len(entries(cache)) == 2 and not first.folder.exists()


def test_a_killed_preparation_leaves_no_usable_cache(tmp_path: Path) -> None:
    path, cache = tmp_path / "big.txt", tmp_path / "cache"
    path.write_text("All the world's a stage, and all the men and women merely players.\n" * 12_000)  # 800 KB
    # Killed (SIGKILL, from inside, so always at the same point) half-way through the second pass: right after the
    # write that takes train.bin past 64 KiB of its ~730 KB.
    code = ("import importlib, os, signal\n"
            "from attnlm.data import prepare_sources\n"
            "split = importlib.import_module('attnlm.data.prepare')._Split\n"
            "write = split.write\n"
            "def write_then_die(self, ids):\n"
            "    write(self, ids)\n"
            "    if self.file.name.endswith('train.bin') and self.written >= 64 * 1024:\n"
            "        self.file.flush()\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "split.write = write_then_die\n"
            f"prepare_sources({str(path)!r}, 0.1, cache_dir={str(cache)!r}, chunk_bytes=4096)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    half = list(cache.glob(".tmp-*/train.bin"))
    assert len(half) == 1 and entries(cache) == [], (half, entries(cache))  # only the half-written temporary folder
    assert 64 * 1024 <= half[0].stat().st_size < 64 * 1024 + 4096  # one chunk past the mark, far from the ~730 KB
    done = prepare_sources(path, 0.1, cache_dir=cache)
    assert done.fresh and read_meta(done.folder) is not None and not list(cache.glob(".tmp-*"))
    assert done.meta["characters"] == len(path.read_text())


def report(command: Callable[[Console], None]) -> str:
    """What a command prints (called as the CLI calls it, in this process)."""
    console = Console(record=True, soft_wrap=True, highlight=False, file=io.StringIO())
    command(console)
    return console.export_text()


def train_in_process(corpus: str | Path, runs: Path, name: str, *extra: str) -> Path:
    cfg = load_config("configs/tiny.yaml", [a for a in TINY if a != "--set"] + [
        f"data.path={corpus}", f"log.dir={runs}", "log.tensorboard=false", "log.sample_chars=0",
        "log.print_every=1", "train.max_steps=12", *extra])
    trainer = Trainer(cfg, Console(quiet=True))
    assert trainer.fit(new_run_dir(runs, name, False, False)) == 0
    return runs / name


def test_a_prepared_folder_trains_exactly_like_its_text(small_corpus: Path, tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "prepared"
    printed = report(lambda console: data_prepare(sources=[str(small_corpus)], config=None, overrides=[], out=out,
                                                            console=console))
    assert f"{small_corpus}: prepared in" in printed
    assert "60,000 characters in 1 document; vocabulary of 68 (uint8)" in printed
    assert "54,000 train / 6,000 val characters (the last 10% of each document)" in printed
    with pytest.raises(UserError, match="already exists; remove it or choose another --out"):
        prepare_sources(small_corpus, 0.1, out=out)  # a folder of the user's is never overwritten
    raw = train_in_process(small_corpus, tmp_path / "runs", "raw")
    prepared = train_in_process(out, tmp_path / "runs", "prepared")
    assert len(step_losses(raw)) == 12 and step_losses(prepared) == step_losses(raw)


def test_a_long_validation_split_is_evaluated_on_the_same_subset_every_epoch(
        small_corpus: Path, tmp_path: Path, one_thread: None) -> None:
    data = torch.arange(10_001)  # each id is its position
    plan = EvalPlan.of(len(data), 8, max_chars=800)
    assert (plan.windows, plan.evaluated) == (100, 800) and EvalPlan.of(len(data), 8, 10_000).full
    starts = torch.cat([x[:, 0] for x, _ in eval_windows(data, 8, 32, max_chars=800)])
    # 100 of the full pass's 1,250 windows, one every 12.5 of them: 96 or 104 characters apart.
    assert len(starts) == 100 and starts[0] == 0 and starts[-1] == 9896 and set(starts.diff().tolist()) == {96, 104}
    assert torch.equal(starts, torch.cat([x[:, 0] for x, _ in eval_windows(data, 8, 32, max_chars=800)]))
    # In training: 6,000 validation characters, 1,000 evaluated; the same windows give each epoch's val loss.
    run = train_in_process(small_corpus, tmp_path, "subset", "train.eval_chars=1000", "train.max_steps=null",
                           "train.steps_per_epoch=2", "train.epochs=2", "train.lr=1e-9", "train.min_lr=0")
    vals = [r["val_loss"] for r in metrics(run) if r["kind"] == "epoch"]
    assert len(vals) == 2 and vals[0] == pytest.approx(vals[1], abs=1e-6)  # same windows, a model barely moved
    def evaluate(full: bool) -> str:
        return report(lambda console: eval_(run=str(run), checkpoint=None, data=None, device_name="cpu",
                                                     console=console, full=full))

    assert "a fixed subset of 1,024 of 5,999 validation predictions (32 evenly spaced windows" in evaluate(False)
    assert "(5,999 predictions)" in evaluate(True)


def test_torchrun_ranks_share_one_preparation_of_a_folder(tmp_path: Path, small_corpus: Path) -> None:
    texts, cache = tmp_path / "texts", tmp_path / "cache"
    texts.mkdir()
    body = small_corpus.read_text(encoding="utf-8")
    for i in range(3):
        (texts / f"part{i}.txt").write_text(body[i * 20_000:(i + 1) * 20_000], encoding="utf-8")
    torchrun = Path(sys.executable).parent / "torchrun"
    args = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "attnlm", "train", "--config",
            "configs/tiny.yaml", *TINY, "--set", f"data.path={texts}", "--set", f"data.cache_dir={cache}",
            "--set", f"log.dir={tmp_path / 'runs'}", "--set", "train.epochs=1", "--set", "train.steps_per_epoch=4",
            "--set", "train.batch_size=8", "--set", "log.sample_chars=0", "--set", "log.tensorboard=false"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"})
    assert result.returncode == 0, result.stdout + result.stderr
    # Both ranks asked for the folder at once: one prepared it while the other waited, then both mapped it.
    [entry] = entries(cache)
    assert read_meta(entry)["val"] == 3 * 2_000 + 2 * 2 and not list(cache.glob(".tmp-*"))
    assert "54,004 train / 6,004 val chars" in result.stdout.replace("\n", " ")


@pytest.mark.parametrize("ids", [[], [7], [3, 1, 4, 1, 5]])
def test_a_split_of_any_length_maps_to_exactly_its_ids(tmp_path: Path, ids: list[int]) -> None:
    """An empty split (which mmap cannot map) is an empty tensor, and a split of one id is that id, not a zero."""
    import numpy as np

    from attnlm.data.memmap import _map

    path = tmp_path / "val.bin"
    np.asarray(ids, dtype=np.uint16).tofile(path)
    mapped = _map(path, np.dtype(np.uint16), len(ids))
    assert mapped.shape == (len(ids),) and mapped.tolist() == ids
    assert mapped.dtype == torch.from_numpy(np.zeros(0, dtype=np.uint16)).dtype  # the ids' width, even when empty


def test_a_prepared_folder_of_another_format_or_version_is_not_read(tmp_path: Path) -> None:
    import json

    import numpy as np

    from attnlm.data.memmap import FORMAT, META, VERSION, read_meta, write_meta

    for split in ("train", "val"):
        np.asarray([1, 2], dtype=np.uint16).tofile(tmp_path / f"{split}.bin")
    write_meta(tmp_path, {"dtype": "uint16", "train": 2, "val": 2, "vocab": "ab"})
    assert read_meta(tmp_path)["vocab"] == "ab"
    for key, value in (("version", VERSION + 1), ("format", FORMAT + "-other")):
        meta = json.loads((tmp_path / META).read_text(encoding="utf-8"))
        (tmp_path / META).write_text(json.dumps({**meta, key: value}), encoding="utf-8")
        assert read_meta(tmp_path) is None, key
        write_meta(tmp_path, {"dtype": "uint16", "train": 2, "val": 2, "vocab": "ab"})
