"""A learner with no run: `attnlm explore` offers to train the lesson model, and only when someone can answer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from run_helpers import CORPUS, ROOT

from attnlm.api.explore import LESSON_CONFIG, explore, offer_lesson_run
from attnlm.errors import UserError


@pytest.fixture
def lesson_folder(tmp_path, monkeypatch):
    """A working folder with the lesson's config (cut to a few steps) and no runs/."""
    cfg = yaml.safe_load((ROOT / LESSON_CONFIG).read_text(encoding="utf-8"))
    cfg["data"]["path"] = str(CORPUS)
    cfg["train"] |= {"epochs": 1, "steps_per_epoch": 5}
    cfg["log"] = {**cfg.get("log", {}), "sample_chars": 0, "tensorboard": False}
    (tmp_path / "configs").mkdir()
    (tmp_path / LESSON_CONFIG).write_text(yaml.safe_dump(cfg), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_yes_trains_the_lesson_model_and_returns_its_run(lesson_folder) -> None:
    questions = []
    run = offer_lesson_run(lambda q: questions.append(q) or True)
    assert questions == ["There is no trained model under runs/ yet. Train the lesson model now "
                         "(configs/tiny.yaml, under a minute on a laptop CPU)?"]
    assert run is not None and (lesson_folder / run / "checkpoints" / "best.pt").is_file()
    # A run now exists: the next command is not asked again.
    assert offer_lesson_run(lambda q: pytest.fail(f"asked again: {q}")) is None


def test_no_leaves_the_error_that_says_how_to_train_one(lesson_folder) -> None:
    assert offer_lesson_run(lambda q: False) is None
    with pytest.raises(UserError, match=r"^no trained run under runs/; train one first with `attnlm train --config "
                                        r"configs/tiny.yaml`$"):
        explore(None, None, "127.0.0.1", 0, False, "cpu", ask=lambda q: False)
    assert not (lesson_folder / "runs").exists()


def test_without_the_lesson_config_nothing_is_offered(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert offer_lesson_run(lambda q: pytest.fail("asked without a config to train")) is None


def test_the_cli_asks_nobody_when_no_one_is_at_the_terminal(lesson_folder) -> None:
    proc = subprocess.run([sys.executable, "-m", "attnlm", "explore", "--no-browser", "--port", "0"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("no trained run under runs/; train one first with "
                                                         "`attnlm train --config configs/tiny.yaml`")
    assert "Train the lesson model" not in proc.stdout + proc.stderr
