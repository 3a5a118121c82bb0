"""Faults of the machine, made for real: a disk that fills, a folder made read-only or deleted while a run trains.
Each ends in one line and exit 4, and the last good checkpoint loads and resumes exactly.

Mounting a small tmpfs or a read-only bind mount needs root; CI runs as root, elsewhere those tests skip and
say why. Every mount is undone in teardown.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from run_helpers import (
    ONE_THREAD,
    ROOT,
    assert_same_training,
    load_checkpoint,
    run_cli,
    start,
    train_args,
    wait_for,
    wait_for_step,
)

from attnlm.config import ModelConfig
from attnlm.data import Vocab, prepare_sources
from attnlm.disk import TEMP_PREFIX, atomic_write
from attnlm.errors import MachineError
from attnlm.inspection.attention import attention_weights
from attnlm.inspection.graph import to_dot, write_graph
from attnlm.inspection.plots import write_heatmaps
from attnlm.lm.model import AttnLM
from attnlm.store.export import export
from attnlm.store.run_dir import lock_run


class Mounts:
    """Mount points made by one test, unmounted (newest first) when it ends."""

    def __init__(self, scratch: Path) -> None:
        self.points: list[Path] = []
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a small tmpfs or a read-only bind mount (CI runs as root)")
        probe = scratch / "mount-probe"  # checked before the test starts any work
        probe.mkdir()
        self._mount("-t", "tmpfs", "-o", "size=4k", "tmpfs", str(probe), skip=True)
        subprocess.run(["umount", str(probe)], check=True)

    def _mount(self, *args: str, skip: bool = False) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["failed"])[0]
            if skip:
                pytest.skip(f"cannot mount here, even as root ({why})")
            raise AssertionError(f"mount {' '.join(args)}: {why}")

    def tmpfs(self, path: Path, size: str) -> Path:
        """A file system of `size` bytes (k, m suffixes) at `path`."""
        path.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
        self.points.append(path)
        return path

    def read_only(self, path: Path) -> None:
        """`path` (a folder or a file) read-only from now on, for every process; files already open stay as they are."""
        self._mount("--bind", str(path), str(path))
        self.points.append(path)
        # The kernel refuses (EBUSY) while a file is open for writing through the new mount, which the training
        # does for a moment at every logged step: try again until it lands between two writes.
        for _ in range(200):
            done = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True, text=True)
            if done.returncode == 0:
                return
            if "busy" not in done.stderr:
                break
            time.sleep(0.01)
        raise AssertionError(f"mount -o remount,ro,bind {path}: {done.stderr.strip()}")

    def undo(self, path: Path) -> None:
        subprocess.run(["umount", str(path)], check=True)
        self.points.remove(path)

    def undo_all(self) -> None:
        for path in reversed(self.points):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        self.points.clear()


@pytest.fixture
def mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounts]:
    m = Mounts(tmp_path_factory.mktemp("mounts"))
    try:
        yield m
    finally:
        m.undo_all()


def fill(path: Path, leave: int) -> None:
    """Fill the disk holding `path` with a file there, then give back `leave` bytes: another program filled it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(path, max(0, path.stat().st_size - leave))


def error_line(stderr: str) -> str:
    """The one `error:` line, which ends the output; a TensorBoard warning may come before it, a traceback never."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], stderr
    assert all(line.startswith("warning: TensorBoard events could not be written") for line in lines[:-1]), stderr
    return lines[-1]


def fault_mid_run(proc: subprocess.Popen, run: Path, step: int, fault: Callable[[], object]) -> str:
    """Once `run` has logged `step`, cause `fault` and let the trainer meet it: its one error line (exit 4)."""
    try:
        wait_for_step(run, step, proc)
        fault()
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, out + err
    return error_line(err)


def assert_intact(run: Path, step: int) -> None:
    folder = run / "checkpoints"
    assert not list(folder.glob(TEMP_PREFIX + "*")), "a refused write must not leave its temp file"
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(folder / name)["state"]["step"] == step, name


def test_disk_filling_up_during_training_stops_with_one_line_and_the_run_resumes_exactly(
        tmp_path: Path, small_corpus: Path, reference: Path, mounts: Mounts) -> None:
    """The issue's case: the next checkpoint does not fit (torch.save itself would say `unexpected pos`)."""
    fs = mounts.tmpfs(tmp_path / "fs", "3m")
    run = fs / "full"
    # Checkpoints every 5 steps bring the refused write close; they do not change the training, which must
    # equal the reference run's.
    proc = start(*train_args(small_corpus, fs, "full", "--set", "train.checkpoint_every=5"))
    # Room for the next steps' logs, not for the 390 KB checkpoint at step 35.
    line = fault_mid_run(proc, run, 31, lambda: fill(fs / "ballast", leave=100_000))
    r = re.escape(str(run))
    assert re.fullmatch(
        rf"error: could not write {r}/checkpoints/last\.pt \(\d{{3}} KB needed\): the disk is full \(ENOSPC\); "
        rf"the last good checkpoint {r}/checkpoints/last\.pt \(step 30\) is intact: free some space, then resume "
        rf"with: attnlm train --resume {r}", line), line
    assert_intact(run, 30)

    (fs / "ballast").unlink()
    run_cli("train", "--resume", str(run), check=True)
    assert_same_training(run, reference)


def test_run_folder_made_read_only_during_training_stops_with_one_line_and_resumes_exactly(
        tmp_path: Path, small_corpus: Path, reference: Path, mounts: Mounts) -> None:
    run = tmp_path / "frozen"
    proc = start(*train_args(small_corpus, tmp_path, "frozen", "--set", "log.tensorboard=false"))
    line = fault_mid_run(proc, run, 31, lambda: mounts.read_only(run))
    r = re.escape(str(run))
    # The next write is the next step's line in metrics.jsonl.
    assert re.fullmatch(
        rf"error: could not write {r}/metrics\.jsonl \(\d+ bytes needed\): the file system is read-only \(EROFS\); "
        rf"the last good checkpoint {r}/checkpoints/last\.pt \(step 30\) is intact: make it writable again, then "
        rf"resume with: attnlm train --resume {r}", line), line
    assert_intact(run, 30)

    with pytest.raises(MachineError, match=rf"could not write {r}/\.lock: the file system is read-only \(EROFS\); "
                                           "make it writable again"):
        lock_run(run)  # what `attnlm train --resume` does first
    mounts.undo(run)
    run_cli("train", "--resume", str(run), check=True)
    assert_same_training(run, reference)


def test_run_folder_deleted_during_training_is_said_and_never_recreated(tmp_path: Path, small_corpus: Path) -> None:
    run = tmp_path / "doomed"
    proc = start(*train_args(small_corpus, tmp_path, "doomed", "--set", "train.epochs=30"))
    gone = tmp_path / "trash"

    def delete() -> None:  # moved away in one step, then removed by a second process: the folder vanishes at once
        run.rename(gone)
        subprocess.run(["rm", "-rf", str(gone)], check=True)

    line = fault_mid_run(proc, run, 5, delete)
    r = re.escape(str(run))
    assert re.fullmatch(
        rf"error: could not write {r}/(metrics\.jsonl|checkpoints/\S+\.pt)(?: \(.*?needed\))?: the folder {r} no "
        rf"longer exists \(it was deleted\); nothing could be saved and nothing was recreated in its place: train the "
        rf"run again from the start", line), line
    assert not run.exists(), "no part of a deleted run folder may be recreated"


def test_tensorboard_failing_warns_once_and_training_goes_on(tmp_path: Path, small_corpus: Path,
                                                            mounts: Mounts) -> None:
    run = tmp_path / "tb"
    proc = start(*train_args(small_corpus, tmp_path, "tb", "--set", "train.epochs=2", "--set", "train.steps_per_epoch=5"))
    try:
        wait_for(lambda: any(run.glob("events.out.tfevents.*")), "the TensorBoard event file", proc)
        events = next(run.glob("events.out.tfevents.*"))
        mounts.read_only(events)  # TensorBoard opens it by name for every write it makes
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert err.strip().splitlines() == [
        f"warning: TensorBoard events could not be written into {run}: the file system is read-only (EROFS); "
        "training goes on without them and metrics.jsonl keeps the record"]
    kinds = Counter(json.loads(line)["kind"] for line in (run / "metrics.jsonl").read_text().splitlines())
    # every step's line, every epoch's, and the head scores before training and after each epoch
    assert kinds == {"step": 10, "epoch": 2, "heads": 1 + 2} and (run / "summary.json").is_file()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == 10


def test_no_room_for_the_checkpoints_refuses_before_anything_is_made(tmp_path: Path, small_corpus: Path,
                                                                     mounts: Mounts) -> None:
    fs = mounts.tmpfs(tmp_path / "fs", "1m")  # three checkpoints of this model take 1.2 MB
    result = run_cli(*train_args(small_corpus, fs, "cramped"))
    assert result.returncode == 4, result.stdout + result.stderr
    assert re.fullmatch(
        rf"error: not enough disk space for {re.escape(str(fs))}: its disk has 1\.0 MB free and this run \(3 "
        r"checkpoints of \d{3} KB: best\.pt, last\.pt and the temporary copy that replaces one of them whole\) needs "
        r"about 1\.\d MB; free some space or set log\.dir to a folder on a larger disk", error_line(result.stderr))
    assert list(fs.iterdir()) == []


def test_atomic_write_refused_by_a_full_disk_keeps_the_old_file(tmp_path: Path, mounts: Mounts) -> None:
    fs = mounts.tmpfs(tmp_path / "fs", "64k")
    target = fs / "kept.bin"
    target.write_bytes(b"old")
    with pytest.raises(MachineError, match=rf"could not write {re.escape(str(target))} \(100 KB needed\): "
                                           r"the disk is full \(ENOSPC\)") as e:
        atomic_write(target, lambda f: f.write(b"x" * 100_000), 100_000)
    assert e.value.fix == "free some space"
    assert target.read_bytes() == b"old" and [p.name for p in fs.iterdir()] == ["kept.bin"]


def test_sample_into_a_full_disk(tmp_path: Path, trained_run: tuple[Path, object], mounts: Mounts) -> None:
    run, _ = trained_run
    fs = mounts.tmpfs(tmp_path / "fs", "64k")
    fill(fs / "ballast", leave=0)
    with open(fs / "sample.txt", "w") as out:  # attnlm sample ... > fs/sample.txt
        done = subprocess.run([sys.executable, "-m", "attnlm", "sample", "--run", str(run), "-n", "20000"], cwd=ROOT,
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=120, env={**os.environ, **ONE_THREAD})
    assert done.returncode == 4, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: could not write standard output: the disk is full (ENOSPC); free some space"]


def test_attention_pictures_into_a_read_only_folder(tmp_path: Path, mounts: Mounts) -> None:
    """What `attention --graph/--heatmap` write (the CLI turns the MachineError into one line and exit 4)."""
    torch.manual_seed(0)
    vocab = Vocab.from_text("To be")
    model = AttnLM(ModelConfig(block_size=8, n_layer=1, n_head=1, n_embd=8), vocab.size).eval()
    weights = attention_weights(model, vocab.encode("To be"))
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    mounts.read_only(pictures)
    for name, write in (("h.png", lambda path: write_heatmaps(weights, "To be", path)),
                        ("g.dot", lambda path: write_graph(to_dot(weights[0][0], list("To be")), path))):
        with pytest.raises(MachineError, match=rf"could not write {re.escape(str(pictures / name))}( \(.* needed\))?: "
                                               r"the file system is read-only \(EROFS\); make it writable again"):
            write(pictures / name)
    assert list(pictures.iterdir()) == []


def test_export_and_prepared_data_into_a_full_disk(tmp_path: Path, trained_run: tuple[Path, object],
                                                   small_corpus: Path, mounts: Mounts) -> None:
    """`attnlm export` and the prepared-data cache (`attnlm data prepare`, training's own cache): nothing half
    written is left; the CLI turns the MachineError into its one line and exit 4."""
    run, _ = trained_run
    fs = mounts.tmpfs(tmp_path / "fs", "64k")
    fill(fs / "ballast", leave=0)
    with pytest.raises(MachineError, match=rf"could not write {re.escape(str(fs))}/export \(\d+ KB needed\): the disk "
                                           r"is full \(ENOSPC\); free some space"):
        export(run / "checkpoints" / "best.pt", fs / "export")
    for where, call in ((fs / "prepared", lambda: prepare_sources(small_corpus, 0.1, out=fs / "prepared")),
                        (fs / "cache", lambda: prepare_sources(small_corpus, 0.1, cache_dir=fs / "cache"))):
        with pytest.raises(MachineError, match=rf"cannot write prepared data to {re.escape(str(where))} \(\d+ KB "
                                               r"needed\): the disk is full \(ENOSPC\); free some disk space"):
            call()
    assert sorted(p.name for p in fs.iterdir()) == ["ballast", "cache"]
    assert [p.name for p in (fs / "cache").iterdir() if not p.name.endswith(".lock")] == []
