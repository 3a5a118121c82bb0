"""Every script, every terminal, no lost work, through the real CLI: a corpus mixing scripts, emoji and
combining marks; a context of one character; stdout closed by `| head`; the help texts."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from run_helpers import ONE_THREAD, ROOT, run_cli

LINES = [
    "Café crème brûlée, naïve façade; señor Müller’s résumé.",
    "Καλημέρα κόσμε, η γλώσσα μου έδωσαν ελληνική.",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "中文字符测试，你好世界。天地玄黄，宇宙洪荒。",
    "Thumbs 👍🏽 and family 👨‍👩‍👧 and flag 🇫🇷 with heart ❤️.",
    "Combining: e\u0301 a\u0300 o\u0308 n\u0303 — done.",
]
SMALL = ["--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.n_embd=16", "--set", "train.batch_size=8",
         "--set", "train.warmup_steps=2", "--set", "log.sample_chars=30", "--set", "log.timestamp=false"]


def multiscript(path: Path, lines: int = 160) -> Path:
    rng = random.Random(0)
    path.write_text("\n".join(rng.choice(LINES) for _ in range(lines)) + "\n", encoding="utf-8")
    return path


def assert_clean(result: subprocess.CompletedProcess) -> None:
    """No traceback, no warning of any kind (matplotlib's missing glyphs, findfont) on stderr."""
    for bad in ("Traceback", "Warning", "warning", "findfont", "Glyph"):
        assert bad not in result.stderr, result.stderr


def test_a_multiscript_corpus_through_train_sample_eval_trace_and_attention(tmp_path: Path) -> None:
    corpus = multiscript(tmp_path / "multi.txt")
    run = tmp_path / "multi"
    # The probe text puts CJK, an emoji with a skin tone and a combining accent into every epoch's heat maps.
    train = run_cli("train", "--config", "configs/tiny.yaml", *SMALL, "--set", "model.block_size=24", "--set",
                f"data.path={corpus}", "--set", f"log.dir={tmp_path}", "--set", "train.epochs=1", "--set",
                "train.steps_per_epoch=6", "--set", "log.probe_text=中文 👍🏽 e\u0301", "--name", "multi", check=True)
    assert_clean(train)
    assert (run / "summary.json").is_file()
    sample = run_cli("sample", "--run", str(run), "-n", "40", "--prompt", "中", check=True)
    assert_clean(sample)
    assert sample.stdout.startswith("中") and len(sample.stdout) > 40
    evaluated = run_cli("eval", "--run", str(run), "--data", str(corpus), check=True)
    assert_clean(evaluated)
    assert f"{len(corpus.read_text(encoding='utf-8')) - 1:,} predictions" in evaluated.stdout
    traced = run_cli("trace", "--run", str(run), "--text", "中文👍🏽 e\u0301", check=True)
    assert_clean(traced)
    assert "Next-character probabilities" in traced.stdout
    words = run_cli("attention", "--run", str(run), "--text", "Thumbs 👍🏽 and e\u0301 中文", "--words",
                "--heatmap", str(tmp_path / "h.png"), check=True)
    assert_clean(words)
    header = next(line for line in words.stdout.splitlines() if line.startswith("┃"))
    # 👍🏽 is one word (not 👍 and 🏽), é keeps its accent, 中文 is one word.
    assert [c.strip() for c in header.split("┃")[2:-1]] == ['"Thumbs"', '"👍🏽"', '"and"', '"e\u0301"', '"中文"']
    assert (tmp_path / "h.png").stat().st_size > 10_000


def test_a_context_of_one_character_trains_samples_and_saves(tmp_path: Path) -> None:
    """block_size 1 crashed in the end-of-epoch sample before any checkpoint was written (block 2 and the
    other paths at both sizes: test_generation.py)."""
    corpus = multiscript(tmp_path / "multi.txt", lines=40)
    train = run_cli("train", "--config", "configs/tiny.yaml", *SMALL, "--set", "model.block_size=1", "--set",
                f"data.path={corpus}", "--set", f"log.dir={tmp_path}", "--set", "train.epochs=2", "--set",
                "train.steps_per_epoch=3", "--set", "train.eval_batch_size=512", "--name", "b", check=True)
    assert_clean(train)
    assert "sample (temperature 0.8)" in train.stdout and (tmp_path / "b" / "summary.json").is_file()
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]


def test_a_closed_stdout_never_stops_training(tmp_path: Path, trained_run: tuple[Path, object]) -> None:
    corpus = multiscript(tmp_path / "multi.txt", lines=60)
    args = ["train", "--config", "configs/tiny.yaml", *SMALL, "--set", "model.block_size=16", "--set",
            f"data.path={corpus}", "--set", f"log.dir={tmp_path}", "--set", "train.epochs=2",
            "--set", "train.steps_per_epoch=3", "--set", "log.tensorboard=false", "--name", "piped"]
    # A real pipe whose reader leaves after three lines, as `attnlm train ... | head -3` does.
    proc = subprocess.Popen([sys.executable, "-m", "attnlm", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **ONE_THREAD})
    assert proc.stdout is not None and proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, stderr
    assert lines[0].startswith("attnlm training") and "Epoch" in lines[1]
    assert "stdout was closed" in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr
    run = tmp_path / "piped"
    assert (run / "summary.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2  # every epoch trained and saved
    # Any other command ends at once, exit 0, as Unix tools do.
    sample = subprocess.run(f"{sys.executable} -m attnlm sample --run {trained_run[0]} -n 100000 | head -c 5",
                            shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            executable="/bin/bash", env={**os.environ, **ONE_THREAD})
    assert len(sample.stdout) == 5 and sample.stderr == ""


def test_help_reads_well_and_loads_no_torch() -> None:
    bare = run_cli(check=True)  # a bare `attnlm` shows the help, exit 0
    assert "Usage: " in bare.stdout and "--install-completion" in bare.stdout and "│ train " in bare.stdout
    short = run_cli("train", "-h", check=True)
    for shown in ("--config", "FILE", "KEY=VALUE", "DIR", "Config reference", "model: block_size", "log: dir"):
        assert shown in short.stdout, shown
    assert "<bool>" not in short.stdout and "<list" not in short.stdout
    attention = run_cli("attention", "--help", check=True)
    assert "<" not in attention.stdout and "--words" in attention.stdout
    # `attnlm --help` must not load torch (a second of imports): ask the interpreter what it imported.
    code = ("import sys; sys.argv = ['attnlm', 'train', '--help']\nfrom attnlm.cli import main\ntry:\n    main()\n"
            "except SystemExit as e:\n    assert e.code in (0, None)\nprint(sorted(m for m in sys.modules if m.split('.')[0] "
            "in ('torch', 'matplotlib', 'numpy')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip().splitlines()[-1] == "[]"
