"""A checkpoint file as the store reads it, and the line a refused write leaves, called in this process.

test_errors.py runs the same refusals through the real CLI; these pin each branch's exact words and the
values inside them (the step, the path, the first line of torch's own complaint) without a process per case."""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from rich.console import Console
from run_helpers import RunsCode

from attnlm import disk
from attnlm.config import Config, ModelConfig, load_config
from attnlm.data import BatchSampler
from attnlm.errors import MachineError, UserError
from attnlm.lm.model import AttnLM
from attnlm.store.checkpoint import FORMAT, VERSION, estimate_size, load_checkpoint, save_checkpoint
from attnlm.training import Trainer
from attnlm.training.checkpoints import machine_fault, write
from attnlm.training.state import TrainState, checkpoint_payload, rng_states


def _refusal(path: Path) -> str:
    with pytest.raises(UserError) as caught:
        load_checkpoint(path)
    return str(caught.value)


def test_a_saved_checkpoint_reads_back_with_its_format_and_version(tmp_path: Path) -> None:
    save_checkpoint({"model": {"w": torch.ones(2)}}, tmp_path / "a.pt")
    payload = load_checkpoint(str(tmp_path / "a.pt"))  # a path as a string works as well
    assert payload["format"] == FORMAT == "attnlm-checkpoint" and payload["version"] == VERSION == 1
    assert torch.equal(payload["model"]["w"], torch.ones(2))


def test_a_missing_checkpoint_is_named_with_where_to_find_one(tmp_path: Path) -> None:
    assert _refusal(tmp_path / "none.pt") == (
        f"checkpoint not found: {tmp_path}/none.pt; pass --run DIR or --checkpoint FILE of a trained run")


def test_a_folder_or_a_named_pipe_is_said_to_be_no_checkpoint_file(tmp_path: Path) -> None:
    assert _refusal(tmp_path) == (f"{tmp_path} is a folder, not a checkpoint file; pass a run folder as --run DIR or "
                                  "a .pt file as --checkpoint FILE")
    os.mkfifo(tmp_path / "pipe.pt")  # opened, it would wait for a writer forever
    assert _refusal(tmp_path / "pipe.pt") == (f"{tmp_path}/pipe.pt is not a regular file (a pipe, socket or device); "
                                              "pass a .pt file from a run's checkpoints/ folder")


def test_a_truncated_checkpoint_names_torchs_first_complaint_in_one_short_line(tmp_path: Path) -> None:
    save_checkpoint({"model": {"w": torch.ones(1000)}}, tmp_path / "a.pt")
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "a.pt").write_bytes(data[: len(data) // 2])
    message = _refusal(tmp_path / "a.pt")
    found = re.fullmatch(rf"{tmp_path}/a\.pt is truncated or not a checkpoint \((.+)\); use another checkpoint, "
                         r"e\.g\. best\.pt", message)
    assert found, message
    assert "\n" not in message and 0 < len(found.group(1)) <= 160


@pytest.mark.parametrize("content", [b"", b"just some notes, not a model\n", bytes(range(256)) * 4])
def test_bytes_that_are_no_checkpoint_are_refused_as_such(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "a.pt").write_bytes(content)
    assert re.fullmatch(rf"{tmp_path}/a\.pt is truncated or not a checkpoint \(.+\); use another checkpoint, "
                        r"e\.g\. best\.pt", _refusal(tmp_path / "a.pt"))


def test_a_bare_pickle_is_refused_as_not_a_weights_file(tmp_path: Path) -> None:
    (tmp_path / "a.pt").write_bytes(pickle.dumps({"format": FORMAT, "version": VERSION}, protocol=5))
    assert _refusal(tmp_path / "a.pt") == (f"{tmp_path}/a.pt is truncated or not a checkpoint (not a PyTorch "
                                           "weights file); use another checkpoint, e.g. best.pt")


@pytest.mark.parametrize("torch_default", ["as shipped", "forced off by the environment"])
def test_a_checkpoint_that_would_run_code_is_refused_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  torch_default: str) -> None:
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns torch.load's safe default off, for calls that leave it unsaid: a
    user with it set must be as safe as one without."""
    if torch_default != "as shipped":
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "code-ran"
    torch.save({"format": FORMAT, "version": VERSION, "model": RunsCode(marker)}, tmp_path / "a.pt")
    assert _refusal(tmp_path / "a.pt") == (f"refusing to load {tmp_path}/a.pt: it holds Python objects that could "
                                           "run code; only load checkpoints written by attnlm")
    assert not marker.exists()


@pytest.mark.parametrize("payload", [torch.zeros(3), {"version": VERSION}, {"format": "other", "version": VERSION},
                                     [FORMAT, VERSION]])
def test_a_file_of_another_program_is_not_an_attnlm_checkpoint(tmp_path: Path, payload: object) -> None:
    torch.save(payload, tmp_path / "a.pt")
    assert _refusal(tmp_path / "a.pt") == (f"{tmp_path}/a.pt is not an attnlm checkpoint; pass a .pt file from a "
                                           "run's checkpoints/ folder")


@pytest.mark.parametrize("version", [0, 2, None])
def test_a_checkpoint_of_another_version_names_both_versions(tmp_path: Path, version: int | None) -> None:
    torch.save({"format": FORMAT, "version": version}, tmp_path / "a.pt")
    assert _refusal(tmp_path / "a.pt") == f"{tmp_path}/a.pt has checkpoint version {version}, this attnlm reads 1"


def test_the_complaint_shown_is_the_first_line_cut_to_160_characters_or_the_errors_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.pt").write_bytes(b"x")

    def refuse_with(error: BaseException) -> str:
        def load(*args: object, **kwargs: object) -> None:
            raise error
        monkeypatch.setattr(torch, "load", load)
        return re.fullmatch(r".* \((.*)\); use another checkpoint, e\.g\. best\.pt", _refusal(tmp_path / "a.pt"),
                            flags=re.DOTALL).group(1)

    assert refuse_with(RuntimeError("  first\nsecond  ")) == "first"
    assert refuse_with(RuntimeError("a" * 159 + "bc")) == "a" * 159 + "b"
    assert refuse_with(EOFError()) == "EOFError"
    assert refuse_with(ValueError("   \n ")) == "ValueError"
    assert refuse_with(KeyError("x")) == "not a PyTorch weights file"


# ----- what a refused write leaves, in one line ----------------------------------------------------------------


def test_a_refused_write_with_a_good_checkpoint_names_it_its_step_and_the_resume_command(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"saved")
    error = machine_fault(MachineError("the disk is full", "free some space"), tmp_path, 30, "attnlm train --resume R")
    assert isinstance(error, MachineError)
    assert str(error) == (f"the disk is full; the last good checkpoint {tmp_path}/checkpoints/last.pt (step 30) is "
                          "intact: free some space, then resume with: attnlm train --resume R")


def test_a_refused_write_without_a_fix_of_its_own_says_to_check_the_disk(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"saved")
    error = machine_fault(MachineError("no room"), tmp_path, 0, "CMD")
    assert str(error).endswith("(step 0) is intact: check the disk, then resume with: CMD")


@pytest.mark.parametrize("saved_step, file", [(None, True), (None, False), (12, False)])
def test_a_refused_write_before_any_checkpoint_says_to_start_again(tmp_path: Path, saved_step: int | None,
                                                                   file: bool) -> None:
    (tmp_path / "checkpoints").mkdir()
    if file:
        (tmp_path / "checkpoints" / "last.pt").write_bytes(b"older run's")
    error = machine_fault(MachineError("read-only", "make it writable"), tmp_path, saved_step, "CMD")
    assert str(error) == ("read-only; no checkpoint was saved yet: make it writable, then run the same command again "
                          "with --overwrite")
    assert str(machine_fault(MachineError("read-only"), tmp_path, saved_step, "CMD")) == (
        "read-only; no checkpoint was saved yet: check the disk, then run the same command again with --overwrite")


def test_a_refused_write_whose_folder_is_gone_says_nothing_was_recreated(tmp_path: Path) -> None:
    error = machine_fault(MachineError("the folder was deleted", "make it again"), tmp_path / "gone", 5, "CMD")
    assert str(error) == ("the folder was deleted; nothing could be saved and nothing was recreated in its place: "
                          "train the run again from the start")


@pytest.mark.parametrize("best", [True, False])
def test_best_pt_is_written_only_for_the_best_epoch_and_last_pt_always(tmp_path: Path, best: bool) -> None:
    write({"state": {"epoch": 3}}, tmp_path, best=best, size=1000)
    assert (tmp_path / "best.pt").is_file() == best
    assert load_checkpoint(tmp_path / "last.pt")["state"] == {"epoch": 3}
    if best:
        assert load_checkpoint(tmp_path / "best.pt")["state"] == {"epoch": 3}


# ----- room for the checkpoints, checked before a run starts -----------------------------------------------------


def _trainer(reference: Path, *overrides: str, resumed: bool) -> Trainer:
    cfg = load_config(reference / "config.yaml", list(overrides))
    payload = load_checkpoint(reference / "checkpoints" / "last.pt") if resumed else None
    return Trainer(cfg, Console(quiet=True), resume=payload)


def _free(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr(disk, "free_bytes", lambda folder: free)


def _refusal_one_byte_short(trainer: Trainer, folder: Path, needed: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """The line check_room gives with one byte less free than `needed`; with `needed` free it must pass."""
    _free(monkeypatch, needed - 1)
    with pytest.raises(MachineError) as refused:
        trainer.check_room(folder)
    _free(monkeypatch, needed)
    trainer.check_room(folder)
    return str(refused.value)


def test_a_new_run_needs_room_for_three_checkpoints_less_what_overwrite_frees(
        reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(reference, resumed=False)
    size = trainer.checkpoint_size
    assert _refusal_one_byte_short(trainer, tmp_path, 3 * size, monkeypatch) == (
        f"not enough disk space for {tmp_path}: its disk has {disk.size_text(3 * size - 1)} free and this run (3 "
        f"checkpoints of {disk.size_text(size)}: best.pt, last.pt and the temporary copy that replaces one of them "
        f"whole) needs about {disk.size_text(3 * size)}; free some space or set log.dir to a folder on a larger disk")
    _free(monkeypatch, 3 * size - 1)
    trainer.check_room(tmp_path, freed=1)  # the files --overwrite deletes count as room


def test_a_resumed_run_with_both_checkpoints_needs_room_for_one_copy_and_says_how_to_resume(
        reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(reference, "train.epochs=9", resumed=True)
    assert not trainer.finished()
    size = trainer.checkpoint_size
    assert _refusal_one_byte_short(trainer, reference, size, monkeypatch) == (
        f"not enough disk space for {reference}: its disk has {disk.size_text(size - 1)} free and this run (1 "
        f"checkpoint of {disk.size_text(size)}: the temporary copy that replaces best.pt or last.pt whole) needs "
        f"about {disk.size_text(size)}; free some space, then resume with: attnlm train --resume {reference}")


def test_a_new_run_over_an_old_ones_checkpoints_still_needs_room_for_three(
        reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--overwrite of a folder with best.pt and last.pt: those are deleted first (`freed`), then all three are
    written anew."""
    trainer = _trainer(reference, resumed=False)
    size = trainer.checkpoint_size
    _free(monkeypatch, 3 * size - 1)
    with pytest.raises(MachineError, match=r"this run \(3 checkpoints of .+: best\.pt, last\.pt and the temporary"):
        trainer.check_room(reference)


def test_a_resumed_run_missing_best_pt_needs_room_for_two(reference: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(reference / "checkpoints" / "last.pt", tmp_path / "checkpoints" / "last.pt")
    trainer = _trainer(reference, "train.epochs=9", resumed=True)
    size = trainer.checkpoint_size
    assert (f"this run (2 checkpoints of {disk.size_text(size)}: best.pt and the temporary copy that replaces one "
            f"of them whole) needs about {disk.size_text(2 * size)}; free some space, then resume with: attnlm train "
            f"--resume {tmp_path}") in _refusal_one_byte_short(trainer, tmp_path, 2 * size, monkeypatch)


def test_a_finished_run_resumed_needs_no_room_and_a_new_one_always_does(reference: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 0)
    finished = _trainer(reference, resumed=True)
    assert finished.finished()
    finished.check_room(reference)  # it writes nothing
    with pytest.raises(MachineError):
        _trainer(reference, "train.epochs=9", resumed=True).check_room(reference)


# ----- the size a checkpoint will take, known before it is written -----------------------------------------------


@pytest.mark.parametrize("n_embd, n_layer", [(16, 1), (64, 2), (128, 4)])
def test_the_size_estimate_errs_a_little_high_against_a_real_training_checkpoint(tmp_path: Path, n_embd: int,
                                                                                 n_layer: int) -> None:
    """The room check and a refused write's line use the estimate: it must never fall short of the file (a
    run would start and then fail its first save), and stay close to it (a run would be refused for nothing)."""
    cfg = Config()
    cfg.model = ModelConfig(block_size=32, n_layer=n_layer, n_head=2, n_embd=n_embd)
    torch.manual_seed(0)
    model = AttnLM(cfg.model, 65)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(65, (2, 32)))[0].sum().backward()
    optimizer.step()  # AdamW's moments exist only after a step
    cpu = torch.device("cpu")
    sampler = BatchSampler(torch.arange(100), 4, 2, 0)
    payload = checkpoint_payload(cfg, "".join(map(chr, range(65, 130))), model, optimizer, TrainState(),
                                 rng_states(sampler, cpu), cpu, bf16=False)
    save_checkpoint(payload, tmp_path / "last.pt")
    real = (tmp_path / "last.pt").stat().st_size
    assert real <= estimate_size(model) <= 1.1 * real


def test_a_checkpoint_the_disk_refuses_names_the_bytes_it_needed(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def full(payload: object, f: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(MachineError) as refused:
        save_checkpoint({"model": {}}, tmp_path / "last.pt", 5_000_000)
    assert str(refused.value).startswith(f"could not write {tmp_path}/last.pt ({disk.size_text(5_000_000)} needed): "
                                         "the disk is full (ENOSPC)")
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_checkpoint_written_on_a_gpu_loads_onto_the_cpu(tmp_path: Path) -> None:
    """The device a command runs on decides where the weights go; a checkpoint written by a GPU run must open
    on a machine without one."""
    save_checkpoint({"model": {"w": torch.ones(3, device="cuda")}}, tmp_path / "a.pt")
    assert load_checkpoint(tmp_path / "a.pt")["model"]["w"].device.type == "cpu"
