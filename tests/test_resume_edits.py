"""A resume tells the truth about what changed under a run: its config.yaml edited by hand (taken only where the
change is safe, printed; otherwise one line naming each key and train.init_from), the file gone or broken (one
line), and the training data replaced (one line naming data.path, unless an override asks for that data)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st
from run_helpers import run_cli, snapshot, train_args

from attnlm.store.checkpoint import load_checkpoint
from attnlm.training.resume_check import SAFE_ON_RESUME, safe_on_resume

STEPS = 10  # one epoch of 10 steps: the run is finished, and a raised train.epochs continues it
QUICK = ["--set", "train.epochs=1", "--set", f"train.steps_per_epoch={STEPS}", "--set", "log.tensorboard=false",
         "--set", "log.sample_chars=0"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Path:
    """One finished tiny run, copied by each test that resumes it."""
    runs = tmp_path_factory.mktemp("edits")
    run_cli(*train_args(small_corpus, runs, "finished", *QUICK), check=True)
    return runs / "finished"


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def edit_config(run: Path, section: str, key: str, value: object) -> None:
    path = run / "config.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw[section][key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def one_line(result: object) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_edited_learning_rate_is_refused_naming_it_and_init_from(run: Path) -> None:
    edit_config(run, "train", "lr", 0.001)
    before = snapshot(run)
    line = one_line(run_cli("train", "--resume", str(run)))
    config, last = run / "config.yaml", run / "checkpoints" / "last.pt"
    assert line == (
        f"error: {config} differs from the config in {last} (train.lr 0.003 -> 0.001), which a resume does not take "
        "from the file; put the old values back (or give them with --set to change them on this resume), or start "
        f"a new run from this checkpoint with them: attnlm train --config {config} --set train.init_from={last} "
        "--name NAME")
    assert snapshot(run) == before


def test_an_edited_width_is_refused_with_a_new_model_as_the_way_out(run: Path) -> None:
    edit_config(run, "model", "n_embd", 64)
    edit_config(run, "train", "lr", 0.001)
    before = snapshot(run)
    line = one_line(run_cli("train", "--resume", str(run)))
    config = run / "config.yaml"
    assert line == (
        f"error: {config} differs from the config in {run / 'checkpoints' / 'last.pt'} (model.n_embd 32 -> 64, "
        "train.lr 0.003 -> 0.001), which a resume does not take from the file; put the old values back, or train a "
        f"new model with them: attnlm train --config {config} --name NAME")
    assert snapshot(run) == before


def test_raised_epochs_in_config_yaml_are_applied_printed_and_trained(run: Path) -> None:
    edit_config(run, "train", "epochs", 2)
    edit_config(run, "log", "print_every", 5)  # a display setting: taken too
    result = run_cli("train", "--resume", str(run), check=True)
    printed = [line for line in result.stdout.splitlines() if line.startswith("resuming with")]
    assert printed == [f"resuming with train.epochs 1 -> 2 ({run / 'config.yaml'})",
                       f"resuming with log.print_every 1 -> 5 ({run / 'config.yaml'})"]
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload["state"]["step"] == 2 * STEPS
    assert payload["config"]["train"]["epochs"] == 2 and payload["config"]["log"]["print_every"] == 5
    # config.yaml is the run's config again: the next resume has nothing to take and changes nothing.
    before = snapshot(run)
    again = run_cli("train", "--resume", str(run), check=True)
    assert "resuming with" not in again.stdout and "already finished" in again.stdout
    assert snapshot(run) == before


def test_a_lowered_epoch_count_is_an_edit_a_resume_refuses_but_overrides_are_taken(run: Path) -> None:
    edit_config(run, "train", "epochs", 2)
    run_cli("train", "--resume", str(run), check=True)
    edit_config(run, "train", "epochs", 1)
    assert "(train.epochs 2 -> 1)" in one_line(run_cli("train", "--resume", str(run)))
    # Overrides are requests: they win over the file, and may change how the run goes on (said so).
    result = run_cli("train", "--resume", str(run), "--set", "train.epochs=3", "--set", "train.lr=0.002", check=True)
    assert [line for line in result.stdout.splitlines() if line.startswith("resuming with")] == [
        "resuming with train.epochs 2 -> 3 (override)",
        "resuming with train.lr 0.003 -> 0.002 (override: it changes how the run goes on)"]
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload["state"]["step"] == 3 * STEPS and payload["config"]["train"]["lr"] == 0.002
    assert yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["train"] == payload["config"]["train"]
    # A finished run trains nothing: an override is said, and its files go on describing the run it is.
    before = snapshot(run)
    result = run_cli("train", "--resume", str(run), "--set", "train.lr=0.001", check=True)
    assert "resuming with train.lr 0.002 -> 0.001" in result.stdout and "already finished" in result.stdout
    assert snapshot(run) == before


def test_a_deleted_config_yaml_is_one_line_and_written_again_from_the_checkpoint(run: Path) -> None:
    config = run / "config.yaml"
    original = config.read_bytes()
    config.unlink()
    checkpoints = snapshot(run / "checkpoints")
    line = one_line(run_cli("train", "--resume", str(run)))
    assert line == (f"error: {config} is missing; it was written again from {run / 'checkpoints' / 'last.pt'}, which "
                    "holds the run's config: look it over and resume again")
    assert config.read_bytes() == original
    assert snapshot(run / "checkpoints") == checkpoints
    assert "already finished" in run_cli("train", "--resume", str(run), check=True).stdout


def test_a_config_yaml_that_is_not_yaml_is_one_line(run: Path) -> None:
    config = run / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("train:\n", "train: [\n", 1), encoding="utf-8")
    before = snapshot(run)
    line = one_line(run_cli("train", "--resume", str(run)))
    assert re.fullmatch(
        rf"error: {re.escape(str(config))} is not valid YAML at line \d+, column \d+ \(.+\); fix it, or delete it and "
        rf"resume again to have it written from {re.escape(str(run / 'checkpoints' / 'last.pt'))}, which holds the "
        "run's config", line), line
    assert snapshot(run) == before


def test_data_replaced_by_other_text_of_the_same_characters_is_named(tmp_path: Path, small_corpus: Path) -> None:
    corpus = tmp_path / "text.txt"
    text = small_corpus.read_text(encoding="utf-8")
    corpus.write_text(text, encoding="utf-8")
    run_cli(*train_args(corpus, tmp_path, "run", *QUICK), check=True)
    run = tmp_path / "run"
    corpus.write_text(text[::-1], encoding="utf-8")  # the same characters, as many of each, in another order
    before = snapshot(run)
    last = run / "checkpoints" / "last.pt"
    line = one_line(run_cli("train", "--resume", str(run), "--set", "train.epochs=2"))
    assert line == (
        f"error: data.path {corpus} is not the text this run was trained on (as long, but other text); put that "
        f"text back, resume on this one anyway with --set data.path={corpus}, or start a new run from this "
        f"checkpoint on it: attnlm train --config {run / 'config.yaml'} --set train.init_from={last} --name NAME")
    assert snapshot(run) == before
    # Asked for, the other text is taken, said, and recorded as the run's data from then on.
    result = run_cli("train", "--resume", str(run), "--set", "train.epochs=2", "--set", f"data.path={corpus}",
                     check=True)
    assert ("resuming on other data: data.path "
            f"{corpus} is not the text this run was trained on (as long, but other text); taken as asked") in result.stdout
    assert load_checkpoint(last)["state"]["step"] == 2 * STEPS
    assert "already finished" in run_cli("train", "--resume", str(run), check=True).stdout
    data = json.loads((run / "run.json").read_text(encoding="utf-8"))["data"]
    assert data["train"] + data["val"] == len(text)


LIMITS = st.one_of(st.none(), st.integers(min_value=1, max_value=10**6))


@given(old=LIMITS, new=LIMITS)
def test_only_a_longer_limit_is_safe(old: int | None, new: int | None) -> None:
    assume(old != new)  # a key left as it was is no change
    for key in ("train.max_steps", "train.max_time"):
        longer = new is None or (old is not None and new > old)  # None: no limit
        assert safe_on_resume(key, old, new) == longer
    if old is not None and new is not None:
        assert safe_on_resume("train.epochs", old, new) == (new > old)


def test_nothing_that_shapes_a_step_is_safe() -> None:
    assert not any(key.startswith("model.") or key in ("train.optimizer", "train.lr", "data.path")
                   for key in SAFE_ON_RESUME)
