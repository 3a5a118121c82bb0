"""`attnlm explore`: its JSON answers are the model's own tensors, bad requests get a 4xx with a message and
the server lives on, and the command serves the page it ships."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from run_helpers import ROOT

from attnlm.api.explore import explore, open_explored
from attnlm.errors import UserError
from attnlm.explore.server import ExploreServer, start, static_file
from attnlm.inspection.attention import attention_weights, group_matrix, word_groups
from attnlm.inspection.probe import epoch_files, load_epoch
from attnlm.inspection.trace import run_trace

TEXT = "To be, or not to be"


def call(server: ExploreServer, path: str, body: object = None, raw: bytes | None = None,
         method: str | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url.rstrip("/") + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def close(answer: list, tensor: torch.Tensor, atol: float = 1e-4) -> bool:
    return torch.allclose(torch.tensor(answer, dtype=torch.float32), tensor.float(), atol=atol)


def test_analyze_answers_the_models_own_attention_and_predictions(served) -> None:
    server, m = served
    status, a = call(server, "/api/analyze", {"text": TEXT})
    assert status == 200 and a["text"] == TEXT and a["labels"][2] == "␣"
    expected = torch.stack(attention_weights(m.module, m.vocab.encode(TEXT)))  # (L, H, T, T)
    assert close(a["weights"], expected)
    with torch.no_grad():
        probs = torch.softmax(m.module(m.vocab.encode(TEXT)[None])[0][0], -1)  # (T, V)
    top_p, top_i = probs.topk(5, dim=-1)
    assert [[p["char"] for p in row] for row in a["predictions"]] == [[m.vocab.chars[i] for i in r] for r in top_i.tolist()]
    assert close([[p["p"] for p in row] for row in a["predictions"]], top_p, atol=1e-4)
    groups = word_groups(TEXT)
    assert a["words"]["labels"] == ["To", "be", ",", "or", "not", "to", "be"]
    assert close(a["words"]["weights"][1][0], group_matrix(expected[1, 0], groups))


def test_trace_answers_the_trace_commands_tensors_for_one_query(served) -> None:
    server, m = served
    status, t = call(server, "/api/trace", {"text": TEXT, "layer": 1, "head": 1, "query": 7})
    assert status == 200 and (t["layer"], t["head"], t["query"]) == (1, 1, 7)
    own = run_trace(m.module, m.vocab, TEXT, 1, 1).tensors
    assert close(t["x"], own["attn_in"][0, 7]) and close(t["q"], own["q"][0, 7])
    assert close(t["k"], own["k"][0]) and close(t["v"], own["v"][0])
    assert close(t["scores"][:8], own["scores"][0, 7, :8]) and t["scores"][8:] == [None] * (len(TEXT) - 8)
    model_row = attention_weights(m.module, m.vocab.encode(TEXT))[1][1, 7]  # what the model itself used
    assert close(t["weights"], model_row) and t["weights"][8:] == [0.0] * (len(TEXT) - 8)
    assert t["row_sum"] == pytest.approx(1.0, abs=1e-5)
    assert close(t["z"], own["out"][0, 7])
    assert close(torch.tensor(t["weighted_v"]).sum(0).tolist(), own["out"][0, 7], atol=1e-3)
    assert t["d"] == 16 and t["sqrt_d"] == pytest.approx(4.0)


def test_training_and_epoch_answers_come_from_the_run_folder(served, trained_run) -> None:
    server, _ = served
    run_dir, _ = trained_run
    status, tr = call(server, "/api/training")
    assert status == 200 and [r["epoch"] for r in tr["epochs"]] == [1, 2, 3]
    assert tr["attention_epochs"] == [1, 2, 3] and all(r["observation"] for r in tr["epochs"])
    assert [s["step"] for s in tr["steps"]] == list(range(10, 91, 10)) and all(s["grad_norm"] > 0 for s in tr["steps"])
    status, e = call(server, "/api/epoch?epoch=2")
    saved = load_epoch(epoch_files(run_dir)[2])
    assert status == 200 and e["text"] == saved.text and e["step"] == 60
    assert close(e["weights"], saved.weights, atol=1e-5)
    status, info = call(server, "/api/info")
    assert status == 200 and info["default_text"] == saved.text and info["model"]["n_head"] == 2


def test_sampling_is_seeded(served) -> None:
    server, _ = served
    body = {"text": "The ", "n": 12, "seed": 3}
    first, again = call(server, "/api/sample", body)[1], call(server, "/api/sample", body)[1]
    other = call(server, "/api/sample", {**body, "seed": 4})[1]
    assert len(first["continuation"]) == 12 and first == again and other["continuation"] != first["continuation"]


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/analyze", {"text": ""}, 400, "the text is empty"),
    ("/api/analyze", {"text": "日本"}, 400, "the model never saw: '日' '本'"),
    ("/api/analyze", {"text": "x" * 40}, 400, "shorten it to at most 32"),
    ("/api/analyze", {"text": 5}, 400, "field 'text' must be text"),
    ("/api/analyze", [1, 2], 400, "must be a JSON object"),
    ("/api/analyze", b"{not json", 400, "not JSON"),
    ("/api/trace", {"text": TEXT, "layer": 2}, 400, "layer 2 is out of range"),
    ("/api/trace", {"text": TEXT, "query": 99}, 400, "query 99 is out of range"),
    ("/api/trace", {"text": TEXT, "head": "two"}, 400, "field 'head' must be a number"),
    ("/api/sample", {"text": "a", "n": 0}, 400, "n must be between 1 and 500"),
    ("/api/sample", {"text": "a", "temperature": -1}, 400, "temperature must be in"),
    ("/api/epoch", None, 400, "missing field 'epoch'"),
    ("/api/epoch?epoch=9", None, 404, "no saved attention for epoch 9"),
    ("/api/nothing", {}, 404, "no such endpoint"),
    ("/nothing.html", None, 404, "no such page"),
])
def test_bad_requests_get_a_4xx_with_a_message(served, path: str, body: object, status: int, message: str) -> None:
    server, _ = served
    got, answer = call(server, path, raw=body if isinstance(body, bytes) else None,
                       body=None if isinstance(body, bytes) else body)
    assert (got, answer["status"]) == (status, status) and message in answer["error"], answer


def test_the_server_survives_oversized_and_odd_requests(served) -> None:
    server, _ = served
    assert call(server, "/api/analyze", raw=b"x" * (2 << 20))[0] == 413
    assert call(server, "/api/analyze", {"text": TEXT}, method="PUT")[0] == 405
    assert call(server, "/api/info")[0] == 200  # still serving


def test_the_page_is_shipped_and_works_offline() -> None:
    page = static_file("index.html").decode()
    assert 'src="app.js"' in page and 'href="style.css"' in page
    for name in ("index.html", "app.js", "style.css"):
        assert not re.search(r"(src|href)=\"(https?:)?//", static_file(name).decode()), f"{name} loads from the network"
    assert '"attnlm.explore" = ["static/*"]' in (ROOT / "pyproject.toml").read_text()  # in the wheel, too


def test_explore_command_prints_the_url_and_serves_until_stopped(trained_run) -> None:
    run_dir, _ = trained_run
    proc = subprocess.Popen([sys.executable, "-m", "attnlm", "explore", "--run", str(run_dir), "--port", "0",
                             "--no-browser"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url and str(run_dir) in line, line
        with urllib.request.urlopen(url.group(), timeout=30) as page:
            assert b"attnlm explore" in page.read()
        with urllib.request.urlopen(url.group() + "api/info", timeout=30) as info:
            assert json.loads(info.read())["model"]["block_size"] == 32
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with pytest.raises(UserError, match="--port must be between 0 and 65535"):
        explore(str(run_dir), None, "127.0.0.1", 70000, open_browser=False, device="cpu")


def test_a_lone_checkpoint_still_serves_attention(trained_run, tmp_path: Path) -> None:
    """Copied out of its run folder, a checkpoint has no training history, and the page is told so."""
    run_dir, _ = trained_run
    lone = tmp_path / "model.pt"
    lone.write_bytes((run_dir / "checkpoints" / "best.pt").read_bytes())
    server = start(open_explored(None, str(lone)))
    try:
        status, info = call(server, "/api/info")
        assert status == 200 and info["run"] is None and info["attention_epochs"] == []
        assert 1 <= len(info["default_text"]) <= 32 and call(server, "/api/analyze", {"text": info["default_text"]})[0] == 200
        assert call(server, "/api/training")[1]["epochs"] == []
    finally:
        server.shutdown()
        server.server_close()
