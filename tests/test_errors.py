"""Bad input through the real CLI: one clear line on stderr, exit 2, no traceback, no file changed."""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from run_helpers import RunsCode, reference_run, run_cli, snapshot


@dataclass
class Case:
    id: str
    setup: Callable[[Path, Path], list[str]]  # (workspace, corpus) -> CLI arguments
    message: str  # regex the whole stderr line must match, after "error: "


def train_args(ws: Path, corpus: Path, *extra: str, config: str = "configs/tiny.yaml") -> list[str]:
    return ["train", "--config", config, "--set", f"data.path={corpus}", "--set", f"log.dir={ws / 'runs'}",
            "--set", "log.timestamp=false", *extra]


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def with_config(text: str) -> Callable[[Path, Path], list[str]]:
    return lambda ws, corpus: train_args(ws, corpus, config=str(write(ws / "bad.yaml", text)))


def with_set(*pairs: str) -> Callable[[Path, Path], list[str]]:
    return lambda ws, corpus: train_args(ws, corpus, *[a for p in pairs for a in ("--set", p)])


def with_data(content: str | bytes) -> Callable[[Path, Path], list[str]]:
    return lambda ws, corpus: train_args(ws, corpus, "--set", f"data.path={write(ws / 'text.txt', content)}")


def sampling(*args: str) -> Callable[[Path, Path], list[str]]:
    return lambda ws, corpus: ["sample", "--run", str(ws / "runs" / "shared"), "-n", "5", *args]


def with_checkpoint(make: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    def setup(ws: Path, corpus: Path) -> list[str]:
        make(ws / "model.pt")
        return ["sample", "--checkpoint", str(ws / "model.pt"), "-n", "5"]
    return setup


def resuming(*extra: str, damage: Callable[[Path], None] = lambda ckpt: None) -> Callable[[Path, Path], list[str]]:
    def setup(ws: Path, corpus: Path) -> list[str]:
        damage(ws / "runs" / "shared" / "checkpoints" / "last.pt")
        return ["train", "--resume", str(ws / "runs" / "shared"), *extra]
    return setup


def truncate(path: Path) -> None:
    """Cut a checkpoint in half, as a save interrupted without an atomic rename would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def half_a_checkpoint(path: Path) -> None:
    shutil.copy(path.parent / "runs" / "shared" / "checkpoints" / "best.pt", path)
    truncate(path)


def marker(ws: Path) -> Path:
    return ws / "code-ran"


def pickled_code(protocol: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        payload = {"format": "attnlm-checkpoint", "model": RunsCode(marker(path.parent))}
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
    return make


def torch_saved_code(path: Path) -> None:
    torch.save({"format": "attnlm-checkpoint", "version": 1, "model": RunsCode(marker(path.parent))}, path)


P = r"\S+"  # a path
CASES = [
    Case("config-missing", lambda ws, corpus: train_args(ws, corpus, config=str(ws / "missing.yaml")),
         rf"config file not found: {P}missing\.yaml \(pass an existing file, e\.g\. configs/tiny\.yaml\)"),
    Case("yaml-syntax", with_config("model:\n  n_layer: 2\n   n_head: 2\n"),
         rf"YAML syntax error in {P}bad\.yaml at line 3, column 10: mapping values are not allowed here; fix the file"),
    Case("unknown-key", with_config("model:\n  n_embed: 32\n"),
         rf"unknown config key 'model\.n_embed' in {P}bad\.yaml \(did you mean 'n_embd'\?\)"),
    Case("unknown-key-set", with_set("train.epoch=3"), r"unknown config key 'train\.epoch' in --set \(did you mean 'epochs'\?\)"),
    Case("wrong-type", with_config("train:\n  batch_size: lots\n"),
         r"config key 'train\.batch_size' must be an integer, got 'lots'"),
    Case("out-of-range", with_set("train.lr=-1"), r"config key 'train\.lr' must be positive, got -1\.0"),
    Case("n-embd-vs-n-head", with_set("model.n_embd=30", "model.n_head=4"),
         r"model\.n_embd \(30\) must be divisible by model\.n_head \(4\); change one of them"),
    Case("block-size-vs-val-split", with_set("model.block_size=8000"),
         rf"the validation split of {P} has 6000 characters, fewer than block_size \+ 1 = 8001; use more text, a "
         r"smaller model\.block_size or another data\.val_fraction"),
    Case("data-missing", with_set("data.path=/nonexistent/corpus.txt"),
         r"data file not found: /nonexistent/corpus\.txt; set data\.path to a UTF-8 text file"),
    Case("data-empty", with_data(""), rf"data file {P} is empty; give a text file with some text in it"),
    Case("data-not-utf8", with_data("Café au lait\n".encode("latin-1") * 100),
         rf"data file {P} is not UTF-8 text \(bad byte at offset 3\); convert it to UTF-8"),
    Case("data-binary", with_data(bytes(range(128)) * 50),
         rf"data file {P} looks binary \(contains NUL bytes\); give a text file"),
    Case("data-one-character", with_data("a" * 5000),
         rf"data file {P} has a single distinct character; there is nothing to learn from it"),
    Case("run-folder-exists", lambda ws, corpus: train_args(ws, corpus, "--name", "shared"),
         rf"run folder ({P}/shared) already exists; continue it with --resume \1, replace it with --overwrite, "
         "or pick another --name"),
    Case("log-dir-is-a-file", lambda ws, corpus: train_args(ws, corpus, "--set", f"log.dir={write(ws / 'notes', 'x')}"),
         rf"cannot create run folder {P}notes/tiny \(Not a directory\); set log\.dir to a folder you can write to"),
    Case("cuda-absent", with_set("train.device=cuda"),
         r"train\.device is 'cuda' but CUDA is not available here; set train\.device to cpu"),
    Case("device-typo", with_set("train.device=gpu"),
         r"config key 'train\.device' must be one of auto, cpu, cuda, cuda:N or mps, got 'gpu' \(a GPU is cuda on "
         r"NVIDIA, mps on a Mac\)"),
    Case("device-option-typo", sampling("--device", "cdua"),
         r"--device must be one of auto, cpu, cuda, cuda:N or mps, got 'cdua' \(did you mean 'cuda'\?\)"),
    Case("mps-absent", sampling("--device", "mps"),
         r"--device is 'mps' but Apple's MPS is not available here \(it needs a Mac with Apple silicon and macOS "
         r"12\.3 or newer\); use --device cpu"),
    Case("checkpoint-missing", lambda ws, corpus: ["sample", "--checkpoint", str(ws / "missing.pt")],
         rf"checkpoint not found: {P}missing\.pt; pass --run DIR or --checkpoint FILE of a trained run"),
    Case("checkpoint-truncated", with_checkpoint(half_a_checkpoint),
         rf"{P}model\.pt is truncated or not a checkpoint \(.+\); use another checkpoint, e\.g\. best\.pt"),
    Case("checkpoint-text", with_checkpoint(lambda p: write(p, "just some notes, not a model\n")),
         rf"{P}model\.pt is truncated or not a checkpoint \(.+\); use another checkpoint, e\.g\. best\.pt"),
    Case("checkpoint-foreign", with_checkpoint(lambda p: torch.save(torch.zeros(3), p)),
         rf"{P}model\.pt is not an attnlm checkpoint; pass a \.pt file from a run's checkpoints/ folder"),
    Case("checkpoint-pickle-runs-code", with_checkpoint(pickled_code(2)),
         rf"refusing to load {P}model\.pt: it holds Python objects that could run code; only load checkpoints "
         "written by attnlm"),
    # Protocol 5 framing is refused before the unpickler reaches the import of os.system.
    Case("checkpoint-pickle5-runs-code", with_checkpoint(pickled_code(5)),
         rf"{P}model\.pt is truncated or not a checkpoint \(not a PyTorch weights file\); use another checkpoint, "
         r"e\.g\. best\.pt"),
    Case("checkpoint-torch-save-runs-code", with_checkpoint(torch_saved_code),
         rf"refusing to load {P}model\.pt: it holds Python objects that could run code; only load checkpoints "
         "written by attnlm"),
    Case("resume-other-model-shape", resuming("--set", "model.n_layer=3", "--set", "model.n_embd=64"),
         rf"{P}last\.pt was trained with a different model shape \(model\.n_layer, model\.n_embd differ\); resume "
         "with the run's own config or start a new run"),
    Case("resume-truncated-checkpoint", resuming(damage=truncate),
         rf"{P}last\.pt is truncated or not a checkpoint \(.+\); use another checkpoint, e\.g\. best\.pt"),
    Case("resume-without-checkpoint", resuming(damage=lambda p: p.unlink()),
         rf"{P}shared has no checkpoints/last\.pt to resume from \(it was stopped before its first checkpoint\); "
         "start it afresh with --config FILE --overwrite"),
    Case("sample-empty-prompt", sampling("--prompt", ""),
         r"--prompt is empty; give at least one character, or leave it out to start from a newline"),
    Case("sample-unknown-characters", sampling("--prompt", "To be €"),
         r"the prompt has characters the model never saw: '€'; remove them or train on text that has them"),
    Case("sample-negative-length", sampling("--max-new-tokens", "-1"), r"--max-new-tokens must be >= 0, got -1"),
    Case("sample-no-samples", sampling("--num-samples", "0"), r"--num-samples must be at least 1, got 0"),
    Case("sample-zero-temperature", sampling("--temperature", "0"), r"--temperature must be > 0, got 0\.0"),
    Case("sample-top-k-zero", sampling("--top-k", "0"), r"--top-k must be at least 1, got 0"),
    Case("sample-top-p-zero", sampling("--top-p", "0"), r"--top-p must be in \(0, 1\], got 0\.0"),
    Case("sample-top-p-above-one", sampling("--top-p", "1.5"), r"--top-p must be in \(0, 1\], got 1\.5"),
]
# Cases that need a device to be absent, and whether it is present here.
PRESENT = {"cuda-absent": torch.cuda.is_available(), "mps-absent": torch.backends.mps.is_available()}


@dataclass
class Outcome:
    workspace: Path
    result: subprocess.CompletedProcess
    before: dict
    after: dict


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> dict[str, Outcome]:
    """Every case's CLI call. Each has its own workspace (a copy of a trained run, its own files), so they
    run side by side: most of a call is starting Python and importing torch, and there are dozens."""
    trained = reference_run(tmp_path_factory, small_corpus)
    root = tmp_path_factory.mktemp("errors")
    prepared = {}
    for case in CASES:
        if PRESENT.get(case.id):
            continue
        ws = root / case.id
        shutil.copytree(trained, ws / "runs" / "shared")
        args = case.setup(ws, small_corpus)
        prepared[case.id] = (ws, args, snapshot(ws, small_corpus))

    def call(item: tuple[str, tuple[Path, list[str], dict]]) -> tuple[str, Outcome]:
        case_id, (ws, args, before) = item
        result = run_cli(*args, timeout=180)
        return case_id, Outcome(ws, result, before, snapshot(ws, small_corpus))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(call, prepared.items()))


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=[pytest.mark.skipif(PRESENT.get(c.id, False), reason="the device is present")])
    for c in CASES
])
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(case: Case, outcomes: dict[str, Outcome]) -> None:
    out = outcomes[case.id]
    result = out.result
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch("error: " + case.message, lines[0]), lines[0]
    assert out.after == out.before, "a failing command changed or created files"


@pytest.mark.parametrize("case_id", ["checkpoint-pickle-runs-code", "checkpoint-pickle5-runs-code",
                                     "checkpoint-torch-save-runs-code"])
def test_code_in_a_checkpoint_never_runs(case_id: str, outcomes: dict[str, Outcome]) -> None:
    ws = outcomes[case_id].workspace
    assert outcomes[case_id].result.returncode == 2
    assert not marker(ws).exists(), "attnlm ran code from a checkpoint"
    # The file is a live threat, not a dud: an unrestricted load does run its command.
    if "pickle" in case_id:
        pickle.loads((ws / "model.pt").read_bytes())
    else:
        torch.load(ws / "model.pt", weights_only=False)
    assert marker(ws).exists()
