"""End to end through the real CLI: train, the table and chart, TensorBoard files, sample, eval, runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from run_helpers import ROOT, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def test_training_prints_the_table_chart_and_sample_and_the_loss_falls(trained_run) -> None:
    run_dir, result = trained_run
    out = result.stdout
    for header in ("Epoch", "Loss ↓", "Val loss ↓", "Accuracy ↑", "Observation", "Time"):
        assert header in out
    assert "starts learning" in out
    assert "Val loss\n" in out and " |*" in out  # the ASCII chart
    assert "best epoch" in out and str(run_dir) in out and "sample" in out
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 3
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"] < 4.6  # ln(vocab) at init is about 4.2
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert 0 < epochs[-1]["val_accuracy"] < 1
    for name in ("config.yaml", "run.json", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name


def test_tensorboard_event_files_hold_the_scalars(trained_run) -> None:
    run_dir, _ = trained_run
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "throughput/tokens_per_s"):
        assert tag in tags, tag
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [30, 60, 90]
    for tag in ("lr", "grad_norm", "loss/train_step"):  # every log.print_every (10) steps
        assert [e.step for e in acc.Scalars(tag)] == list(range(10, 91, 10)), tag
    assert all(e.value > 0 for e in acc.Scalars("grad_norm"))
    val = [e.value for e in acc.Scalars("loss/val")]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    metrics = [r["val_loss"] for r in rows if r["kind"] == "epoch"]
    assert val == pytest.approx(metrics, rel=1e-6)
    assert "sample/text_summary" in acc.Tags()["tensors"]  # the text sample of each epoch
    assert [e.step for e in acc.Tensors("observation/text_summary")] == [30, 60, 90]


def test_tensorboard_has_hparams_from_the_start_and_a_train_val_chart(trained_run) -> None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, _ = trained_run
    [events_file] = run_dir.glob("events.out.tfevents.*")
    order, hparams, layout = [], None, None
    for event in EventFileLoader(str(events_file)).Load():
        for value in event.summary.value:
            order.append(value.tag)
            plugin = value.metadata.plugin_data
            if plugin.plugin_name == "hparams" and value.tag == "_hparams_/session_start_info":
                hparams = plugin_data_pb2.HParamsPluginData.FromString(plugin.content).session_start_info.hparams
            if value.tag == "custom_scalars__config__":
                layout = layout_pb2.Layout.FromString(value.tensor.string_val[0])
    # Written before the first training step, so an interrupted run has them too.
    assert order.index("_hparams_/session_start_info") < order.index("loss/train_step")
    assert "_hparams_/session_end_info" in order  # the finished run closed its session
    assert hparams["data.val_fraction"].number_value == pytest.approx(0.1)
    assert hparams["model.n_layer"].number_value == 2 and hparams["train.batch_size"].number_value == 16
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    scalars = {tag for tag in order if "/" in tag or tag in ("lr", "grad_norm")}
    drawn = {tag for tag in scalars if any(re.search(pattern, tag) for pattern in charts["loss: train and val"])}
    assert drawn == {"loss/train", "loss/val"}  # the chart's patterns pick exactly these two


def test_sample_is_deterministic_and_streams(trained_run) -> None:
    run_dir, _ = trained_run
    args = ("sample", "--run", str(run_dir), "--prompt", "The ", "--max-new-tokens", "80", "--seed", "7")
    a = run_cli(*args, check=True)
    b = run_cli(*args, check=True)
    assert a.stdout == b.stdout and a.stdout.startswith("The ") and len(a.stdout) >= 84
    c = run_cli(*args[:-1], "8", check=True)
    assert c.stdout != a.stdout
    many = run_cli("sample", "--run", str(run_dir), "-n", "20", "--num-samples", "3", "--top-k", "5",
                   "--top-p", "0.9", check=True)
    assert many.stdout.count("-" * 40) == 2


def test_eval_on_the_validation_split_and_on_a_given_text(trained_run, small_corpus: Path) -> None:
    run_dir, _ = trained_run
    result = run_cli("eval", "--run", str(run_dir), check=True)
    best = json.loads((run_dir / "summary.json").read_text())["best_val_loss"]
    assert f"val loss   {best:.4f}" in result.stdout
    assert "perplexity" in result.stdout and "accuracy" in result.stdout
    other = run_cli("eval", "--checkpoint", str(run_dir / "checkpoints" / "last.pt"), "--data", str(small_corpus),
                    check=True)
    assert "59,999 predictions" in other.stdout


def test_runs_lists_the_run_and_shows_one_in_detail(trained_run) -> None:
    run_dir, train = trained_run
    result = run_cli("runs", "--dir", str(run_dir.parent), check=True)
    assert run_dir.name in result.stdout and "finished" in result.stdout
    detail = run_cli("runs", str(run_dir), check=True).stdout
    table = [line for line in train.stdout.splitlines() if line.startswith("Epoch")][0]
    assert table in detail and "starts learning" in detail  # the epoch table as training printed it
    assert "what attention learned by epoch 3" in detail
    assert all(f"head {layer}.{head}  entropy" in detail for layer in (0, 1) for head in (0, 1))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["observation"].splitlines()[0] in detail for r in rows if r["kind"] == "epoch"] == [True] * 3


def test_python_dash_m_and_console_script_agree() -> None:
    script = shutil.which("attnlm") or str(Path(ROOT, ".venv", "bin", "attnlm"))
    a = subprocess.run([script, "--help"], capture_output=True, text=True, env={"COLUMNS": "100", "PATH": ""})
    b = run_cli("--help")
    assert a.returncode == b.returncode == 0
    commands = ("train", "sample", "eval", "runs", "data")
    for out in (a.stdout, b.stdout):
        assert all(f"│ {c} " in out for c in commands), out


def test_same_seed_same_losses(tmp_path: Path, small_corpus: Path) -> None:
    from run_helpers import TINY

    losses = []
    for name in ("a", "b"):
        run_cli("train", "--config", "configs/tiny.yaml", *TINY, "--set", "train.epochs=1", "--set", "log.sample_chars=0",
                "--set", f"data.path={small_corpus}", "--set", f"log.dir={tmp_path}", "--name", name, check=True)
        run = next(tmp_path.glob(f"{name}-*"))
        losses.append([json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()])
        weights = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
        losses[-1].append(sorted((k, float(v.sum())) for k, v in weights.items()))
    strip = [[{k: v for k, v in r.items() if k not in ("seconds", "elapsed", "tokens_per_s")} if isinstance(r, dict)
              else r for r in run] for run in losses]
    assert strip[0] == strip[1]


def test_data_shakespeare_builds_the_corpus(tmp_path: Path) -> None:
    out = tmp_path / "corpus.txt"
    result = run_cli("data", "shakespeare", "--out", str(out), check=True)
    assert out.read_bytes() == (ROOT / "data" / "shakespeare.txt").read_bytes()
    assert f"wrote {out}: 5,057,321 characters, vocabulary of 84" in result.stdout
