"""The Python API (`import attnlm`): the same code path and the same numbers as the CLI, errors as UserError,
an interrupt that returns control instead of ending the process, and fine-tuning with train.init_from."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from run_helpers import ROOT, TINY, metrics, run_cli

import attnlm
from attnlm.config import load_config, parse_override
from attnlm.data import BatchSampler, Vocab, load_corpus
from attnlm.inspection.trace import run_trace
from attnlm.lm.model import AttnLM
from attnlm.store.checkpoint import load_checkpoint
from attnlm.training import Trainer
from attnlm.training.interrupts import stop_requests

QUIET = Console(quiet=True)


def tiny(corpus: Path, runs: Path, **train: object) -> dict:
    """The TINY test settings as a config mapping, the way a notebook would write them."""
    cfg: dict = {"data": {"path": str(corpus)}, "model": {}, "train": {}, "log": {}}
    for item in TINY[1::2]:
        section, key, value = parse_override(item)
        cfg[section][key] = value
    cfg["log"].update({"dir": str(runs), "timestamp": False, "tensorboard": False, "sample_chars": 0})
    cfg["train"].update(train)
    return cfg


def test_import_attnlm_does_not_load_torch() -> None:
    code = "import sys, attnlm; assert 'torch' not in sys.modules; print(attnlm.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == attnlm.__version__


def test_load_generate_evaluate_attention_and_trace_match_the_cli(trained_run: tuple[Path, object]) -> None:
    run_dir, _ = trained_run
    model = attnlm.load(run_dir)
    assert model.source.endswith("best.pt") and isinstance(model.module, torch.nn.Module)
    assert model.config.model.n_layer == 2 and model.vocab.size > 30
    # Sampling: the CLI prints the prompt, then exactly what the API returns for the same seed.
    text = model.generate("The ", max_new_tokens=80, seed=7)
    cli = run_cli("sample", "--run", str(run_dir), "--prompt", "The ", "--max-new-tokens", "80", "--seed", "7",
                  check=True)
    assert cli.stdout == "The " + text + "\n"
    assert model.generate("The ", 80, seed=7) == text and model.generate("The ", 80, seed=8) != text
    # Evaluation: the run's validation split gives the best epoch's val loss, as `attnlm eval` prints it.
    result = model.evaluate()
    best = json.loads((run_dir / "summary.json").read_text())["best_val_loss"]
    assert result.loss == pytest.approx(best, abs=1e-4)
    assert result.perplexity == pytest.approx(math.exp(result.loss)) and 0 < result.accuracy < 1
    assert f"val loss   {result.loss:.4f}" in run_cli("eval", "--run", str(run_dir), check=True).stdout
    # Attention: (n_layer, n_head, T, T), causal rows that sum to 1, equal to the trace's weights.
    probe = "To be, or not"
    weights = model.attention(probe)
    T = len(probe)
    assert weights.shape == (2, 2, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, T))
    assert torch.all(weights.triu(1) == 0)
    trace = model.trace(probe, layer=1, head=1)
    torch.testing.assert_close(trace.tensors["weights"][0], weights[1, 1])
    torch.testing.assert_close(trace.tensors["weights"], run_trace(model.module, model.vocab, probe, 1, 1).tensors["weights"])


def test_errors_are_the_clis_one_line_user_errors(trained_run: tuple[Path, object], tmp_path: Path) -> None:
    run_dir, _ = trained_run
    with pytest.raises(attnlm.UserError, match="run folder not found") as missing:
        attnlm.load(tmp_path / "nope")
    cli = run_cli("sample", "--run", str(tmp_path / "nope"))
    assert cli.returncode == 2 and cli.stderr == f"error: {missing.value}\n"
    model = attnlm.load(run_dir)
    with pytest.raises(attnlm.UserError, match="the prompt has characters the model never saw: '€'"):
        model.generate("€uro")
    with pytest.raises(attnlm.UserError, match="^text has 40 characters"):
        model.attention("x" * 40)
    with pytest.raises(attnlm.UserError, match="config must be a YAML path"):
        attnlm.train(42)  # type: ignore[arg-type]
    with pytest.raises(attnlm.UserError, match="unknown config key 'train.epohcs'"):
        attnlm.train({"train": {"epohcs": 2}})


def test_train_returns_a_run_and_an_interrupt_returns_control(small_corpus: Path, tmp_path: Path, one_thread: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """In a notebook, Ctrl-C (the kernel's interrupt) must not end the process: it stops at the step boundary,
    saves last.pt and returns the Run; run.resume() finishes it exactly. The SIGINT is a real one, sent to this
    process during step 5 (not by a thread watching the clock), so the stop lands at the same step every time."""
    cfg = tiny(small_corpus, tmp_path, epochs=2, steps_per_epoch=40)
    cfg["log"].update({"name": "api", "print_every": 1})
    run_dir = tmp_path / "api"
    steps = [0]
    step = Trainer.step

    def step_with_ctrl_c_at_5(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
        done = step(trainer)
        steps[0] += 1
        if steps[0] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # taken by the trainer's handler (a default one would end pytest)
        return done

    monkeypatch.setattr(Trainer, "step", step_with_ctrl_c_at_5)
    before = signal.getsignal(signal.SIGINT)
    run = attnlm.train(cfg, console=QUIET)
    assert signal.getsignal(signal.SIGINT) is before  # the handler found is given back
    assert run.exit_code == 130 and run.dir == run_dir and not run.finished
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]["step"] == 5
    assert [r["step"] for r in metrics(run_dir) if r["kind"] == "step"] == [1, 2, 3, 4, 5]
    done = run.resume(console=QUIET)
    assert signal.getsignal(signal.SIGINT) is before
    assert done.exit_code == 0 and done.finished and len(done.metrics) == 2
    assert done.best_val_loss == min(r["val_loss"] for r in done.metrics)
    assert [r["step"] for r in metrics(run_dir) if r["kind"] == "step"] == list(range(1, 81))


def test_a_second_interrupt_raises_instead_of_ending_the_process(capfd: pytest.CaptureFixture[str]) -> None:
    """What a notebook kernel gets from a second interrupt while a stop is pending: KeyboardInterrupt."""
    received: list[int] = []
    before = signal.getsignal(signal.SIGINT)  # pytest's default_int_handler, or SIG_IGN under `trap '' INT`
    with pytest.raises(KeyboardInterrupt, match="^$"):  # raised bare by the handler, as Python's own is
        with stop_requests(received.append, lambda: received[0] if received else None, lambda: "run.resume()",
                           exit_process=False):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs in this (main) thread right away
            assert received == [signal.SIGINT]
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # not reached: the second signal raises
    assert signal.getsignal(signal.SIGINT) is before  # the handler found is given back
    assert capfd.readouterr().err == (
        "\nSIGINT received: finishing the current step, then saving a checkpoint (send it again to quit at once)\n"
        "\nSIGINT again: stopping now; resume from the last checkpoint with: run.resume()\n")


def test_init_from_starts_at_the_source_models_loss(trained_run: tuple[Path, object], small_corpus: Path,
                                                   tmp_path: Path, one_thread: None) -> None:
    source, _ = trained_run
    best = source / "checkpoints" / "best.pt"
    tuned = run_cli("train", "--config", "configs/tiny.yaml", *TINY, "--set", f"data.path={small_corpus}",
                    "--set", f"log.dir={tmp_path}", "--set", "log.timestamp=false", "--set", "log.print_every=1",
                    "--set", "train.max_steps=2", "--set", "log.sample_chars=0", "--name", "tuned",
                    "--set", f"train.init_from={source}", check=True)
    assert [(r["step"], r["epoch"]) for r in metrics(tmp_path / "tuned") if r["kind"] == "step"] == [(1, 1), (2, 1)]
    assert json.loads((tmp_path / "tuned" / "summary.json").read_text())["steps"] == 2, tuned.stdout
    first = next(r for r in metrics(tmp_path / "tuned") if r["kind"] == "step")["loss"]
    # Step 1's loss is the source's best.pt on the run's first batch (train.seed's sampler, same text), before
    # any update: computed here the same way, on one thread as the CLI runs, it is the same number. A fresh
    # model (~ln(vocab) = 4.2), last.pt, a partial load or another vocabulary order would each be far off.
    cfg = load_config("configs/tiny.yaml", [*TINY[1::2], f"data.path={small_corpus}"])
    payload = load_checkpoint(best)
    corpus = load_corpus(small_corpus, cfg.data.val_fraction, cfg.model.block_size, Vocab(payload["vocab"]))
    model = AttnLM(cfg.model, corpus.vocab.size)
    model.load_state_dict(payload["model"])
    x, y = BatchSampler(corpus.train, cfg.model.block_size, cfg.train.batch_size, cfg.train.seed).next()
    with torch.no_grad():
        expected = F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten()).item()
    assert first == pytest.approx(expected, abs=1e-6)
    assert first < math.log(corpus.vocab.size) - 1.0

    # Text outside the source's vocabulary, and another model shape: one UserError each, no folder made.
    cfg = tiny(small_corpus, tmp_path, init_from=str(source))
    poems = tmp_path / "poems.txt"
    poems.write_text(small_corpus.read_text(encoding="utf-8")[:5000] + "ζ€", encoding="utf-8")
    with pytest.raises(attnlm.UserError, match=rf"^{re.escape(str(poems))} has characters that {re.escape(str(best))} "
                                               r"never saw: 'ζ' '€'; a model only reads its own vocabulary, so use "
                                               r"text without them or train from scratch$"):
        attnlm.train({**cfg, "data": {"path": str(poems)}}, name="bad", console=QUIET)
    with pytest.raises(attnlm.UserError, match="model.n_embd differ"):
        attnlm.train({**cfg, "model": {**cfg["model"], "n_embd": 16}}, name="shape", console=QUIET)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "shape").exists()
