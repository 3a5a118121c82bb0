"""`attnlm explore` checks every index and number of a request before it reaches the model: a layer, head or
query index outside 0..count-1 (negative ones included, which Python would happily index from the end) and a
temperature outside (0, 10] or a length outside 1..500 get a 400 with a JSON message naming the field, whether
sent as a JSON body or as query parameters; the values just inside the bounds are served."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

import pytest
import torch

from attnlm.errors import UserError
from attnlm.explore.server import ExploreServer

TEXT = "To be, or not"  # 13 characters; the shared run's model has 2 layers of 2 heads


def answer(request: urllib.request.Request) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(server: ExploreServer, path: str, body: dict) -> tuple[int, dict]:
    data = json.dumps(body).encode()  # NaN and Infinity go as the bare words JavaScript's JSON never writes
    return answer(urllib.request.Request(server.url.rstrip("/") + path, data=data,
                                         headers={"Content-Type": "application/json"}))


def get(server: ExploreServer, path: str, params: dict) -> tuple[int, dict]:
    return answer(urllib.request.Request(server.url.rstrip("/") + path + "?" + urllib.parse.urlencode(params)))


def refused(reply: tuple[int, dict], *words: str) -> bool:
    status, body = reply
    return status == 400 and body.get("status") == 400 and all(w in body.get("error", "") for w in words)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("layer", -1, ["layer -1 is out of range", "0 to 1"]),
    ("layer", -2, ["layer -2 is out of range"]),
    ("layer", 2, ["layer 2 is out of range"]),
    ("head", -1, ["head -1 is out of range", "0 to 1"]),
    ("head", 2, ["head 2 is out of range"]),
    ("query", -1, ["query -1 is out of range", f"0 to {len(TEXT) - 1}"]),
    ("query", -len(TEXT), [f"query {-len(TEXT)} is out of range"]),
    ("query", len(TEXT), [f"query {len(TEXT)} is out of range"]),
])
def test_trace_refuses_an_index_outside_the_model(served, field: str, value: int, words: list[str]) -> None:
    server, _ = served
    assert refused(post(server, "/api/trace", {"text": TEXT, field: value}), *words)
    assert refused(get(server, "/api/trace", {"text": TEXT, field: str(value)}), *words)


@pytest.mark.parametrize(("layer", "head", "message"), [
    (-1, 0, r"layer -1 is out of range: the model has 2 layers \(0 to 1\)"),
    (2, 0, r"layer 2 is out of range"),
    (0, -1, r"head -1 is out of range: the model has 2 heads \(0 to 1\)"),
    (0, 2, r"head 2 is out of range"),
])
def test_the_models_own_trace_refuses_an_index_outside_it_too(served, layer: int, head: int, message: str) -> None:
    """Behind the explorer's check, the trace itself (Model.trace, `attnlm trace`) refuses the same indexes."""
    _, m = served
    with pytest.raises(UserError, match=message):
        m.model.trace(TEXT, layer, head)


@pytest.mark.parametrize("value", [1.5, True, "one", "-1.0", None])
def test_trace_refuses_an_index_that_is_not_a_whole_number(served, value: object) -> None:
    server, _ = served
    reply = post(server, "/api/trace", {"text": TEXT, "head": value})
    if value is None:  # an absent index means the default, head 0
        assert reply[0] == 200 and reply[1]["head"] == 0
    else:
        assert refused(reply, "field 'head' must be a number")


def test_trace_serves_the_first_and_last_of_every_index(served) -> None:
    server, _ = served
    for layer, head, query in [(0, 0, 0), (1, 1, len(TEXT) - 1)]:
        status, t = post(server, "/api/trace", {"text": TEXT, "layer": layer, "head": head, "query": query})
        assert status == 200 and (t["layer"], t["head"], t["query"]) == (layer, head, query)
        assert len(t["weights"]) == len(TEXT) and t["row_sum"] == pytest.approx(1.0, abs=1e-5)
    status, t = get(server, "/api/trace", {"text": TEXT, "layer": "1", "head": "0", "query": "3"})
    assert status == 200 and (t["layer"], t["head"], t["query"]) == (1, 0, 3)


@pytest.mark.parametrize("temperature", [0, 0.0, -0.0, -1, -1e-9, 10.5, 1e9, math.inf, -math.inf, math.nan])
def test_sample_refuses_a_temperature_outside_0_to_10(served, temperature: float) -> None:
    server, _ = served
    reply = post(server, "/api/sample", {"text": "To", "n": 5, "temperature": temperature})
    assert refused(reply, "temperature must be in (0, 10]"), reply


@pytest.mark.parametrize("temperature", ["0", "-0", "-2", "nan", "NaN", "inf", "-Infinity", "11"])
def test_sample_refuses_a_bad_temperature_given_as_text(served, temperature: str) -> None:
    server, _ = served
    assert refused(get(server, "/api/sample", {"text": "To", "n": "5", "temperature": temperature}),
                   "temperature must be in (0, 10]")
    assert refused(post(server, "/api/sample", {"text": "To", "n": 5, "temperature": temperature}),
                   "temperature must be in (0, 10]")


def test_sample_refuses_a_temperature_that_is_not_a_number(served) -> None:
    server, _ = served
    for value in ("warm", True, [1]):
        assert refused(post(server, "/api/sample", {"text": "To", "temperature": value}), "field 'temperature' must be a number")


@pytest.mark.parametrize("n", [0, -1, -500, 501, 10_000])
def test_sample_refuses_a_length_outside_1_to_500(served, n: int) -> None:
    server, _ = served
    assert refused(post(server, "/api/sample", {"text": "To", "n": n}), f"n must be between 1 and 500 characters, got {n}")
    assert refused(get(server, "/api/sample", {"text": "To", "n": str(n)}), "n must be between 1 and 500")


def test_sample_serves_the_bounds_themselves(served, one_thread: None) -> None:
    server, _ = served
    for n, temperature in [(1, 10), (500, 0.05), (3, "10"), (2, 1e-3)]:
        status, s = post(server, "/api/sample", {"text": "To", "n": n, "temperature": temperature, "seed": 1})
        assert status == 200 and len(s["continuation"]) == n and s["temperature"] == float(temperature)
    status, s = get(server, "/api/sample", {"text": "To", "n": "4", "temperature": "0.5", "seed": "2"})
    assert status == 200 and len(s["continuation"]) == 4


def test_the_server_keeps_serving_after_refusals(served) -> None:
    server, _ = served
    for body in ({"text": TEXT, "layer": -1}, {"text": TEXT, "query": -1}, {"text": TEXT, "head": -1}):
        assert post(server, "/api/trace", body)[0] == 400
    assert post(server, "/api/sample", {"text": "To", "temperature": 0})[0] == 400
    status, t = post(server, "/api/trace", {"text": TEXT})  # the defaults: layer 0, head 0, the last query
    assert status == 200 and (t["layer"], t["head"], t["query"]) == (0, 0, len(TEXT) - 1)


# ----- top-k, top-p and the next-character distribution --------------------------------------------------
def last_logits(m, text: str) -> torch.Tensor:
    with torch.no_grad():
        return m.module(m.vocab.encode(text)[None])[0][0, -1].double()  # (V,)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("top_k", -1, ["top_k must be a whole number >= 1, or 0 for no top-k filtering, got -1"]),
    ("top_k", 1.5, ["field 'top_k' must be a number, got 1.5"]),
    ("top_k", "three", ["field 'top_k' must be a number"]),
    ("top_p", 0, ["top_p must be in (0, 1] (1: no top-p filtering), got 0.0"]),
    ("top_p", -0.5, ["top_p must be in (0, 1]"]),
    ("top_p", 1.01, ["top_p must be in (0, 1]", "got 1.01"]),
    ("top_p", math.nan, ["top_p must be in (0, 1]"]),
    ("top_p", "most", ["field 'top_p' must be a number"]),
    ("temperature", 0, ["temperature must be in (0, 10]"]),
])
def test_sample_and_next_refuse_bad_top_k_and_top_p(served, field: str, value: object, words: list[str]) -> None:
    server, _ = served
    for path in ("/api/sample", "/api/next"):
        reply = post(server, path, {"text": "To", field: value})
        assert refused(reply, *words), (path, reply)
    assert refused(get(server, "/api/next", {"text": "To", field: str(value)}), words[0].split(",")[0].split(" got")[0])


def test_next_is_the_renormalised_top_k_of_the_models_logits(served) -> None:
    """temperature 0.5, top-k 3: softmax(logits / 0.5) kept on its three largest and divided by their sum."""
    server, m = served
    status, r = post(server, "/api/next", {"text": TEXT, "temperature": 0.5, "top_k": 3})
    assert status == 200 and (r["top_k"], r["top_p"], r["kept"]) == (3, None, 3)
    p = torch.softmax(last_logits(m, TEXT) / 0.5, -1)
    top, ids = p.topk(3)
    assert [c["char"] for c in r["next"]] == [m.vocab.chars[i] for i in ids.tolist()]
    assert [c["p"] for c in r["next"]] == pytest.approx((top / top.sum()).tolist(), abs=1e-5)
    assert sum(c["p"] for c in r["next"]) == pytest.approx(1.0, abs=1e-4)


def test_next_top_p_keeps_the_smallest_set_reaching_it(served) -> None:
    """top-p: the likeliest characters, in order, until their mass reaches top_p (the one that crosses it kept)."""
    server, m = served
    p = torch.softmax(last_logits(m, TEXT), -1).sort(descending=True).values
    # A top_p just past the first two's mass keeps exactly three.
    top_p = float(p[:2].sum()) + 1e-3
    status, r = post(server, "/api/next", {"text": TEXT, "temperature": 1, "top_p": top_p})
    assert status == 200 and r["kept"] == 3 and len(r["next"]) == 3
    assert [c["p"] for c in r["next"]] == pytest.approx((p[:3] / p[:3].sum()).tolist(), abs=1e-5)
    # Off: every character of the vocabulary kept, the ten likeliest shown as the model gives them.
    status, r = post(server, "/api/next", {"text": TEXT, "temperature": 1, "top_k": 0, "top_p": 1})
    assert status == 200 and (r["top_k"], r["top_p"], r["kept"]) == (None, None, r["vocab_size"])
    assert r["vocab_size"] == len(m.vocab.chars) and len(r["next"]) == 10
    assert [c["p"] for c in r["next"]] == pytest.approx(p[:10].tolist(), abs=1e-5)


def test_sample_with_top_k_1_is_the_greedy_continuation(served) -> None:
    """top_k=1 leaves one character at each step, whatever the seed: the argmax, step after step."""
    server, m = served
    text, expected = "To be", "To be"
    for _ in range(6):
        expected += m.vocab.chars[int(last_logits(m, expected).argmax())]
    for seed in (0, 7):
        status, s = post(server, "/api/sample", {"text": text, "n": 6, "seed": seed, "top_k": 1, "temperature": 1.5})
        assert status == 200 and s["top_k"] == 1 and text + s["continuation"] == expected


def test_training_answers_the_saved_head_scores(served, trained_run) -> None:
    from attnlm.inspection.heads import saved_head_scores

    server, _ = served
    run_dir, _ = trained_run
    status, t = get(server, "/api/training", {})
    saved = saved_head_scores(run_dir)
    assert status == 200 and t["scores"] == ["previous_token", "duplicate_token", "induction"]
    assert [h["epoch"] for h in t["heads"]] == [0, 1, 2, 3] == [s.epoch for s in saved]
    assert [h["heads"] for h in t["heads"]] == [s.scores.heads for s in saved]
    assert sorted(t["heads"][0]["heads"]) == ["0.0", "0.1", "1.0", "1.1"]


@pytest.mark.parametrize(("value", "shown"), [
    ("x" * 58, repr("x" * 58)),  # 60 characters quoted: shown whole
    ("x" * 59, "'" + "x" * 56 + "..."),  # one more: cut to 57 and marked
    ([1, 2], "a JSON array"),
    ({"a": 1}, "a JSON object"),
    (True, "True"),
])
def test_a_refused_value_is_quoted_short_and_a_list_or_object_by_its_kind(served, value: object, shown: str) -> None:
    server, _ = served
    assert post(server, "/api/trace", {"text": TEXT, "layer": value}) == (
        400, {"status": 400, "error": f"field 'layer' must be a number, got {shown}"})
