"""Replaying epochs on a typed text: a small model's weights kept after every epoch (attention/model-NNN.pt),
rewound with a resume, and the explorer's epoch endpoint and slider computing a typed text's attention under
them, or falling back to the probe text saved then when the run kept none."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from run_helpers import run_cli, train_args
from test_explore import call

import attnlm
from attnlm.api.explore import open_explored, start_explorer
from attnlm.config import ModelConfig
from attnlm.data import Vocab
from attnlm.explore.endpoints import answer
from attnlm.inspection.probe import (
    EPOCH_WEIGHTS_MAX_PARAMS,
    AttentionProbe,
    epoch_files,
    epoch_path,
    keeps_weights,
    load_epoch,
    load_weights,
    rewind,
    save_epoch,
    save_weights,
    weight_files,
    weights_path,
)
from attnlm.lm.model import AttnLM
from attnlm.store.checkpoint import load_checkpoint

TEXT = "To be, or not to be"
QUICK = ["--set", "log.sample_chars=0", "--set", "log.tensorboard=false", "--set", "log.head_scores=false"]


def rounded(w: torch.Tensor) -> list:
    """As the explorer sends weights: to 1e-5."""
    return torch.round(w.double(), decimals=5).tolist()


def under_epoch(run_dir: Path, epoch: int, text: str) -> torch.Tensor:
    """`text`'s attention (L, H, T, T) computed directly: the run's model loaded through the Python API, the
    epoch's kept weights put into it, `Model.attention`."""
    model = attnlm.load(str(run_dir))
    model.module.load_state_dict(load_weights(weight_files(run_dir)[epoch]).state)
    return model.attention(text)


# ----- keeping the weights -------------------------------------------------------------------------------
def test_auto_keeps_the_weights_of_models_up_to_the_threshold() -> None:
    assert EPOCH_WEIGHTS_MAX_PARAMS == 2_000_000
    assert [keeps_weights("auto", n) for n in (1, 2_000_000, 2_000_001)] == [True, True, False]
    assert [keeps_weights(True, n) for n in (1, 2_000_001)] == [True, True]
    assert [keeps_weights(False, n) for n in (1, 2_000_001)] == [False, False]


def test_the_probe_writes_the_weights_only_when_asked(tmp_path: Path) -> None:
    vocab = Vocab("abc ")
    model = AttnLM(ModelConfig(block_size=8, n_layer=1, n_head=2, n_embd=8), vocab.size)
    for keep, folder in ((True, tmp_path / "kept"), (False, tmp_path / "not")):
        folder.mkdir()
        AttentionProbe(vocab.encode("ab ca"), vocab, write=True, keep_weights=keep).end_epoch(model, folder, 1, 7)
        assert list(epoch_files(folder)) == [1]
        assert list(weight_files(folder)) == ([1] if keep else [])
    saved = load_weights(weights_path(tmp_path / "kept", 1))
    assert (saved.epoch, saved.step) == (1, 7)
    assert saved.state.keys() == model.state_dict().keys()
    for name, t in model.state_dict().items():
        assert torch.equal(saved.state[name], t.half()), name


def test_a_small_run_keeps_each_epochs_weights_and_nothing_else(trained_run) -> None:
    run_dir, _ = trained_run
    assert list(weight_files(run_dir)) == [1, 2, 3]
    payload = torch.load(weights_path(run_dir, 3), weights_only=True)
    assert set(payload) == {"format", "epoch", "step", "model"}  # no optimizer
    assert (payload["epoch"], payload["step"]) == (3, 90)
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]  # saved right after epoch 3's record
    assert payload["model"].keys() == last.keys()
    for name, t in last.items():
        assert payload["model"][name].dtype == torch.float16 and torch.equal(payload["model"][name], t.half()), name
    # Epoch 2's weights are the model the probe's attention was taken from then (both files rounded to fp16).
    probe = load_epoch(epoch_files(run_dir)[2])
    assert torch.allclose(under_epoch(run_dir, 2, probe.text), probe.weights, atol=3e-3)
    assert not torch.allclose(under_epoch(run_dir, 1, probe.text), probe.weights, atol=3e-3)


def test_a_run_with_the_key_off_keeps_no_weights(tmp_path: Path, small_corpus: Path) -> None:
    run_cli(*train_args(small_corpus, tmp_path, "unkept", *QUICK, "--set", "train.epochs=1",
                        "--set", "train.steps_per_epoch=3", "--set", "log.epoch_weights=false"), check=True)
    assert list(epoch_files(tmp_path / "unkept")) == [1] and weight_files(tmp_path / "unkept") == {}


# ----- a resume -------------------------------------------------------------------------------------------
def test_rewind_drops_both_files_of_the_epochs_after_the_checkpoint(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 2)
    for epoch, step in ((1, 30), (2, 60), (3, 90)):
        save_epoch(epoch_path(tmp_path, epoch), epoch, step, "ab", [torch.eye(2)[None]])
        save_weights(weights_path(tmp_path, epoch), epoch, step, module)
    weights_path(tmp_path, 4).write_bytes(b"cut sho")  # unreadable: left for the run to write again
    epoch_path(tmp_path, 5).write_bytes(b"cut sho")  # but the weights beside it tell it is a later epoch
    save_weights(weights_path(tmp_path, 5), 5, 150, module)
    assert rewind(tmp_path, 60) == [3, 5]
    assert list(epoch_files(tmp_path)) == [1, 2] and list(weight_files(tmp_path)) == [1, 2, 4]
    assert rewind(tmp_path, 60) == []


def test_a_resume_rewinds_the_weights_and_writes_them_again(tmp_path: Path, small_corpus: Path) -> None:
    """A resume from a checkpoint older than some epochs' files (left by a run that went further from it): those
    go, and the epochs the resumed run trains are written again from its own model."""
    run = tmp_path / "run"
    run_cli(*train_args(small_corpus, tmp_path, "run", *QUICK, "--set", "train.max_steps=40"), check=True)
    assert {e: load_weights(p).step for e, p in weight_files(run).items()} == {1: 30, 2: 40}
    before = {e: p.read_bytes() for e, p in weight_files(run).items()}
    other = attnlm.load(str(run)).module
    other.load_state_dict(load_weights(weights_path(run, 1)).state)
    probe = load_epoch(epoch_path(run, 1))
    for epoch, step in ((3, 60), (4, 90)):  # another future of this run: epoch 1's model saved as later epochs'
        save_epoch(epoch_path(run, epoch), epoch, step, probe.text, list(probe.weights))
        save_weights(weights_path(run, epoch), epoch, step, other)
    run_cli("train", "--resume", str(run), "--set", "train.max_steps=41", check=True)
    assert {e: load_weights(p).step for e, p in weight_files(run).items()} == {1: 30, 2: 40, 3: 41}
    assert {e: load_epoch(p).step for e, p in epoch_files(run).items()} == {1: 30, 2: 40, 3: 41}
    assert {e: weight_files(run)[e].read_bytes() for e in (1, 2)} == before
    last = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(load_weights(weights_path(run, 3)).state[k], t.half()) for k, t in last.items())


# ----- the epoch endpoint ---------------------------------------------------------------------------------
def test_the_epoch_endpoint_replays_a_typed_text_under_that_epochs_weights(served, trained_run) -> None:
    server, _ = served
    run_dir, _ = trained_run
    for epoch, step in ((1, 30), (2, 60)):
        status, e = call(server, "/api/epoch", {"epoch": epoch, "text": TEXT})
        assert status == 200, e
        assert (e["epoch"], e["step"], e["text"], e["replayed"], e["reason"]) == (epoch, step, TEXT, "typed", None)
        assert e["labels"][2] == "␣" and len(e["labels"]) == len(TEXT)
        assert e["weights"] == rounded(under_epoch(run_dir, epoch, TEXT))  # exactly
    assert call(server, "/api/epoch", {"epoch": 1, "text": TEXT})[1]["weights"] != e["weights"]
    # Without a text: the probe's saved attention, as before.
    status, e = call(server, "/api/epoch", {"epoch": 2})
    probe = load_epoch(epoch_files(run_dir)[2])
    assert status == 200 and (e["text"], e["replayed"], e["reason"]) == (probe.text, "probe", None)
    assert e["weights"] == rounded(probe.weights)


def test_without_the_epochs_weights_it_falls_back_to_the_probe_text(trained_run, tmp_path: Path) -> None:
    run_dir, _ = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    probe = load_epoch(epoch_files(copy)[2])
    m = open_explored(str(copy), None)

    def replay(epoch: int) -> dict:
        return answer(m, "/api/epoch", {"epoch": epoch, "text": TEXT})

    weights_path(copy, 2).write_bytes(b"cut sho")
    e = replay(2)
    assert (e["text"], e["replayed"]) == (probe.text, "probe") and e["weights"] == rounded(probe.weights)
    assert e["reason"] == f"{weights_path(copy, 2)} is not a readable epoch weights file (UnpicklingError); delete it " \
                          "or let the run write it again"
    weights_path(copy, 2).unlink()
    assert replay(2)["reason"] == "this run kept no weights for epoch 2"
    assert replay(3)["replayed"] == "typed"
    for path in weight_files(copy).values():
        path.unlink()
    e = replay(3)
    assert (e["epoch"], e["step"], e["text"], e["replayed"]) == (3, 90, load_epoch(epoch_files(copy)[3]).text, "probe")
    assert e["reason"] == "this run kept no per-epoch weights"


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"epoch": 2, "text": "日本"}, 400, "the model never saw: '日' '本'"),
    ({"epoch": 2, "text": "x" * 40}, 400, "shorten it to at most 32"),
    ({"epoch": 2, "text": ""}, 400, "the text is empty"),
    ({"epoch": 2, "text": 5}, 400, "field 'text' must be text"),
    ({"text": TEXT}, 400, "missing field 'epoch'"),
    ({"epoch": 9, "text": TEXT}, 404, "no saved attention for epoch 9"),
])
def test_bad_epoch_requests_get_a_one_line_4xx(served, body: dict, status: int, message: str) -> None:
    server, _ = served
    got, e = call(server, "/api/epoch", body)
    assert (got, e["status"]) == (status, status) and message in e["error"] and "\n" not in e["error"], e


# ----- the page -------------------------------------------------------------------------------------------
def test_the_slider_replays_the_typed_text_in_a_real_browser(trained_run, tmp_path: Path) -> None:
    """It replays the typed text, again when the text changes; a run without weights shows the probe text and
    says why."""
    from playwright.sync_api import expect
    from test_explore_browser import as_row, drawn_row, open_page

    run_dir, _ = trained_run
    unkept = tmp_path / "unkept"
    shutil.copytree(run_dir, unkept, ignore=shutil.ignore_patterns("model-*.pt", "events.out.tfevents.*"))
    server, other = start_explorer(str(run_dir)), start_explorer(str(unkept))
    errors: list[str] = []
    try:
        with open_page(server.url, errors) as page:
            expect(page.locator("#lines path.edge").first).to_be_attached(timeout=60_000)  # the first analysis
            page.locator("#text").fill(TEXT)
            expect(page.locator("#strip .pos")).to_have_count(len(TEXT))
            page.click("#tabs button[data-tab=training]")
            page.locator("#epoch").evaluate("s => { s.value = 1; s.dispatchEvent(new Event('input')); }")
            label = page.locator("#epoch-label")
            expect(label).to_contain_text("after epoch 1 (step 30)")
            expect(label).to_contain_text(f"your text “{TEXT}”")
            expect(page.locator("#epoch-note")).to_be_hidden()
            weights = under_epoch(run_dir, 1, TEXT)  # (L, H, T, T)
            assert torch.allclose(as_row(drawn_row(page, "#epoch-lines"), len(TEXT)), weights[0, 0, -1], atol=1e-4)
            # Another text in the box: the slider replays it.
            page.locator("#text").fill("To be")
            expect(label).to_contain_text("your text “To be”")
            assert torch.allclose(as_row(drawn_row(page, "#epoch-lines"), 5), under_epoch(run_dir, 1, "To be")[0, 0, -1],
                                  atol=1e-4)

            page.goto(other.url)  # the same run without its weights
            expect(page.locator("#lines path.edge").first).to_be_attached()
            page.click("#tabs button[data-tab=training]")
            probe = load_epoch(epoch_files(unkept)[3])
            expect(label).to_contain_text("after epoch 3 (step 90): val loss")
            expect(label).to_contain_text(f"probe text “{probe.text.replace(chr(10), '↵')}”")
            expect(page.locator("#epoch-note")).to_be_visible()
            expect(page.locator("#epoch-note")).to_have_text("this run kept no per-epoch weights: showing the probe "
                                                              "text it saved")
    finally:
        for s in (server, other):
            s.shutdown()
            s.server_close()
    assert errors == []
