"""The pipeline trace shows the model's own numbers: real models, real checkpoints, the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from run_helpers import TINY, run_cli

from attnlm.config import ModelConfig, load_config
from attnlm.data import Vocab
from attnlm.errors import UserError
from attnlm.inspection.trace import run_trace, truncate, verify
from attnlm.lm.model import AttnLM
from attnlm.store.load import load_model
from attnlm.training.build import build

TEXT = "To be, or not"
STAGES = ["Input embeddings", "Layer 1 input", "Linear projections (Q, K, V)", "Attention scores",
          "Softmax on scores", "Weighted sum of values", "Rest of the model", "Next-character probabilities"]


def tiny_model(**overrides: object) -> tuple[AttnLM, Vocab]:
    torch.manual_seed(0)
    vocab = Vocab.from_text("To be, or not that is the question.\n")
    cfg = ModelConfig(block_size=16, n_layer=2, n_head=2, n_embd=16, **overrides)
    return AttnLM(cfg, vocab.size).eval(), vocab


@pytest.mark.parametrize("overrides", [{}, {"pos": "rope", "qk_norm": True, "norm": "rmsnorm", "mlp": False}])
def test_head_weights_are_the_weights_the_model_used(overrides: dict) -> None:
    model, vocab = tiny_model(**overrides)
    idx = vocab.encode(TEXT)[None]  # (1, T)
    T = idx.shape[1]
    with torch.no_grad():
        _, attention = model(idx, return_attention=True)
    for layer in range(2):
        for head in range(2):
            tr = run_trace(model, vocab, TEXT, layer, head)
            w = tr.tensors["weights"]  # (1, T, T)
            assert torch.allclose(w, attention[layer][:, head], atol=1e-6)
            assert torch.allclose(w.sum(-1), torch.ones(1, T), atol=1e-6)
            future = torch.ones(T, T, dtype=torch.bool).triu(1)
            assert (w[0][future] == 0).all() and (w[0][~future] > 0).all()
            # The head's input is what the layer really received: norm1 of the residual stream.
            if layer == 0:
                expected = model.blocks[0].norm1(model.embed(idx))
                assert torch.allclose(tr.tensors["attn_in"], expected, atol=1e-6)
            # SelfAttention's own forward returns the same weights from the same input.
            out, weights = model.blocks[layer].attn.head(head)(tr.tensors["attn_in"], return_weights=True)
            assert torch.equal(weights, w) and torch.equal(out, tr.tensors["out"])
            assert torch.allclose(tr.tensors["probs"].sum(), torch.tensor(1.0))


def test_verify_refuses_weights_that_differ_from_the_model() -> None:
    w = torch.softmax(torch.randn(1, 4, 4), -1)
    out = torch.randn(1, 4, 8)
    verify(w, w.clone(), out, out.clone())
    with pytest.raises(RuntimeError, match="weights differ"):
        verify(w, w + 1e-3, out, out)
    with pytest.raises(RuntimeError, match="output differ"):
        verify(w, w, out, out * 1.01)


def test_values_are_truncated_the_way_the_seed_shows_them() -> None:
    t = torch.tensor([[0.1, 0.3, 0.4, 0.9, 0.2], [0.0, 0.5, 0.7, 0.6, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0]])
    assert truncate(t) == "[[0.10, 0.30, ..., 0.20], [0.00, 0.50, ..., 0.10], ...]"
    assert truncate(t[None, :1, :3]) == "[[0.10, 0.30, 0.40]]"
    assert truncate(torch.tensor([[-0.001, 2.0]])) == "[[0.00, 2.00]]"  # no "-0.00"


def test_user_errors_name_the_problem() -> None:
    model, vocab = tiny_model()
    cases = {
        "^layer 2 is out of range": dict(text=TEXT, layer=2, head=0),
        "^head 5 is out of range": dict(text=TEXT, layer=0, head=5),
        "^text is empty": dict(text="", layer=0, head=0),
        "never saw: 'Z'": dict(text="Zoo", layer=0, head=0),
        "shorten it to at most 16": dict(text="To be, or not to be", layer=0, head=0),
    }
    for message, kwargs in cases.items():
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            run_trace(model, vocab, **kwargs)


def test_trace_cli_prints_every_stage_of_a_trained_model(trained_run: tuple[Path, object]) -> None:
    run_dir, _ = trained_run
    result = run_cli("trace", "--run", str(run_dir), "--text", TEXT, "--layer", "1", "--head", "1", check=True)
    out = result.stdout
    positions = [out.index(f"{n} {title}") for n, title in enumerate(STAGES, 1)]
    assert positions == sorted(positions)
    for shape in ("1 x 13 x 32", "1 x 13 x 16 for each Q, K, V", "1 x 13 x 13", "divided by sqrt(16) = 4.00"):
        assert shape in out
    assert "every row sums to 1" in out and "78 of 78 weights above the diagonal are 0" in out
    assert "equal to the model's own layer 1 head 1 weights" in out
    assert "[[1.00, 0.00, 0.00, ..., 0.00], [" in out  # the first character can only see itself
    assert "probabilities, top 5" in out


def test_trained_and_untrained_traces_differ(trained_run: tuple[Path, object], small_corpus: Path) -> None:
    run_dir, _ = trained_run
    trained, vocab, _, _ = load_model(run_dir / "checkpoints" / "best.pt", torch.device("cpu"))
    overrides = [*TINY[1::2], f"data.path={small_corpus}", "train.device=cpu"]
    built = build(load_config("configs/tiny.yaml", overrides))
    fresh = built.model
    assert built.corpus.vocab == vocab
    a, b = run_trace(fresh.eval(), vocab, TEXT, 1, 0), run_trace(trained, vocab, TEXT, 1, 0)
    for name in ("embeddings", "attn_in", "q", "k", "v", "scores", "weights", "out", "logits", "probs"):
        assert not torch.allclose(a.tensors[name], b.tensors[name], atol=1e-3), name
    # Training moves the prediction away from the near-uniform guess of a fresh model.
    assert b.top[0][1] > 2 * a.top[0][1]

    # The CLI's --config path prints exactly the fresh model's numbers, and none of the trained one's.
    result = run_cli("trace", "--config", "configs/tiny.yaml", *TINY, "--set", f"data.path={small_corpus}",
                     "--set", "train.device=cpu", "--text", TEXT, "--layer", "1", check=True)
    assert "untrained model from configs/tiny.yaml" in result.stdout
    printed = "".join(result.stdout.split())  # rich may wrap long value lines
    values = [(v, w) for sa, sb in zip(a.stages, b.stages, strict=True) for v, w in zip(sa.values, sb.values, strict=True)
              if v.startswith(("[[", "Q:", "K:", "V:"))]
    assert len(values) == 9
    for fresh_value, trained_value in values:
        assert "".join(fresh_value.split()) in printed
        assert "".join(trained_value.split()) not in printed


def test_trace_cli_user_error_is_one_line(trained_run: tuple[Path, object]) -> None:
    run_dir, _ = trained_run
    result = run_cli("trace", "--run", str(run_dir), "--text", TEXT, "--layer", "7")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --layer 7 is out of range: the model has 2 layers (0 to 1); "
                                     "pick one of those")


def test_query_row_is_the_textbook_computation_of_one_context_vector() -> None:
    model, vocab = tiny_model()
    tr = run_trace(model, vocab, TEXT, 1, 1, query=4)  # 'e' of "To be"
    t = tr.tensors
    q, k, v = t["q"][0], t["k"][0], t["v"][0]  # (T, D)
    assert tr.query == 4 and [key.position for key in tr.row] == [0, 1, 2, 3, 4]
    assert "".join(key.char for key in tr.row) == "To be"
    for key in tr.row:
        assert key.score == pytest.approx(float(q[4] @ k[key.position]) / 8**0.5, abs=1e-5)  # D = 16 / 2 heads
        assert key.weight == pytest.approx(float(t["weights"][0, 4, key.position]), abs=1e-6)
    assert [key.total for key in tr.row] == pytest.approx(torch.cumsum(t["weights"][0, 4, :5], 0).tolist(), abs=1e-6)
    assert tr.row[-1].total == pytest.approx(1.0, abs=1e-6)
    partial = t["weights"][0, 4, :3] @ v[:3]  # (D,) what the first three keys add up to
    assert torch.allclose(tr.row[2].z, partial, atol=1e-6)
    assert torch.allclose(tr.row[-1].z, t["out"][0, 4], atol=1e-6) and tr.row_error < 1e-6
    # The next-character guesses are the ones after the query, not after the whole text.
    expected = torch.softmax(t["logits"][0, 4], -1).topk(5)
    assert [vocab.chars[i] for i in expected.indices.tolist()] == [c for c, _ in tr.top]
    assert tr.stages[-1].inputs.endswith("logits of position 4") and "after 'To be'" in tr.stages[-1].does
    last = run_trace(model, vocab, TEXT, 1, 1)
    assert last.query == 12 and len(last.row) == 13 and last.stages[-1].inputs.endswith("logits of the last position")


def test_query_out_of_range_or_not_an_int_is_refused() -> None:
    from attnlm.api.model import Model
    from attnlm.config import Config
    from attnlm.errors import ArgumentTypeError, ArgumentValueError

    model, vocab = tiny_model()
    for query in (-1, 13):
        with pytest.raises(ArgumentValueError, match=rf"^query {query} is out of range: the text \('To be, or not'\) "
                                                     r"has 13 positions \(0 to 12\); pick one of those$"):
            run_trace(model, vocab, TEXT, 0, 0, query=query)
    wrapped = Model(model, vocab, Config(), "a test model")
    with pytest.raises(ArgumentTypeError, match="^query must be an int"):
        wrapped.trace(TEXT, 0, 0, query="3")
    assert wrapped.trace(TEXT, 0, 0, query=3).query == 3


def test_trace_cli_prints_the_querys_row(trained_run: tuple[Path, object]) -> None:
    run_dir, _ = trained_run
    result = run_cli("trace", "--run", str(run_dir), "--text", TEXT, "--layer", "1", "--query", "4", "--row", check=True)
    out = result.stdout
    assert "Attention row of query 4 'e'" in out and "logits of position 4" in out and "after 'To be'" in out
    rows = [line.split() for line in out[out.index("Attention row"):].splitlines()
            if line.split()[:1] and line.split()[0].isdigit()]
    assert [(int(r[0]), r[1]) for r in rows] == [(0, "'T'"), (1, "'o'"), (2, "'␣'"), (3, "'b'"), (4, "'e'")]
    weights = [float(r[3]) for r in rows]
    totals = [float(r[4]) for r in rows]
    assert totals == pytest.approx(torch.cumsum(torch.tensor(weights), 0).tolist(), abs=0.003) and totals[-1] == 1.0
    assert "the weights sum to 1.000000" in out and "keys 5 to 12 are later characters: masked, weight 0" in out
    for bad in ("-1", "13"):
        result = run_cli("trace", "--run", str(run_dir), "--text", TEXT, "--query", bad)
        assert result.returncode == 2
        assert result.stderr.strip() == (f"error: --query {bad} is out of range: the text ('To be, or not') has 13 "
                                         "positions (0 to 12); pick one of those")
