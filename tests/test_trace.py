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
