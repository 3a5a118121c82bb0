"""The attention math against the seed documents, causality, and the fast path against the explicit one."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from attnlm.config import ModelConfig
from attnlm.lm.model import (
    AttnLM,
    ReLUSquared,
    Rotary,
    SelfAttention,
    attention_scores,
    causal_attention,
    causal_softmax,
)

# The seed's worked example (001): three items with four features, key = query.
QUERY = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]]])
VALUE = torch.tensor([[[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])


def softmax_row(scores: list[float]) -> list[float]:
    exps = [math.exp(s) for s in scores]
    return [e / sum(exps) for e in exps]


def test_seed_worked_example_matches_the_formula() -> None:
    # Q K^T / sqrt(4): the dot products by hand are [[2,0,2],[0,8,4],[2,4,4]], halved.
    scores = attention_scores(QUERY, QUERY.clone())
    assert torch.equal(scores, torch.tensor([[[1.0, 0.0, 1.0], [0.0, 4.0, 2.0], [1.0, 2.0, 2.0]]]))
    weights = F.softmax(scores, dim=-1)  # the seed's unmasked self_attention
    expected = torch.tensor([[softmax_row([1, 0, 1]), softmax_row([0, 4, 2]), softmax_row([1, 2, 2])]])
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights[0, 0], torch.tensor([0.4223, 0.1554, 0.4223]), atol=1e-4, rtol=0)
    torch.testing.assert_close(weights @ VALUE, expected @ VALUE)
    # First output row by hand: 0.4223*[0,1,0,1] + 0.1554*[1,0,1,0] + 0.4223*[0,0,1,1].
    torch.testing.assert_close((weights @ VALUE)[0, 0], torch.tensor([0.1554, 0.4223, 0.5777, 0.8446]), atol=1e-4, rtol=0)


def test_causal_version_of_the_worked_example() -> None:
    out, weights = causal_attention(QUERY, QUERY.clone(), VALUE)
    expected = torch.tensor([[[1.0, 0.0, 0.0], softmax_row([0, 4]) + [0.0], softmax_row([1, 2, 2])]])
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 3))
    assert torch.all(weights.triu(1) == 0)
    torch.testing.assert_close(out, expected @ VALUE)


def test_self_attention_head_returns_causal_weights() -> None:
    torch.manual_seed(0)
    head = SelfAttention(n_embd=8, head_size=4)
    x = torch.randn(2, 5, 8)  # (B, T, C)
    out, weights = head(x, return_weights=True)
    assert out.shape == (2, 5, 4) and weights.shape == (2, 5, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))
    assert torch.all(weights.triu(1) == 0)
    q, k, v = head.query(x), head.key(x), head.value(x)
    torch.testing.assert_close(weights, causal_softmax(q @ k.transpose(-2, -1) / 2.0))
    torch.testing.assert_close(out, weights @ v)
    assert torch.equal(head(x), out)  # without return_weights: the output alone


@pytest.mark.parametrize("bias", [True, False])
def test_model_bias_gives_every_linear_layer_and_layer_norm_a_bias_or_none(bias: bool) -> None:
    cfg = ModelConfig(block_size=8, n_layer=2, n_head=2, n_embd=8, norm="layernorm", bias=bias)
    model = AttnLM(cfg, vocab_size=5)
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm))]
    assert len(layers) == 2 * (2 + 2 + 2) + 2  # per block: qkv, proj, up, down and two norms; the final norm, head
    without = [name for name, m in model.named_modules() if m in layers and m.bias is None]
    assert without == (["head"] if bias else [name for name, m in model.named_modules() if m in layers])


def test_a_head_of_a_layer_with_biases_is_refused_by_name() -> None:
    model = AttnLM(ModelConfig(block_size=8, n_layer=1, n_head=2, n_embd=8, bias=True), vocab_size=5)
    with pytest.raises(ValueError, match=r"^head\(\) needs a bias-free Q/K/V projection \(model\.bias: false\)$"):
        model.blocks[0].attn.head(0)


def test_relu_squared_has_the_gradient_of_relu_squared() -> None:
    """The hand-written backward of relu2 (2 relu(x) times the incoming gradient) against autograd's own
    derivative of relu(x)^2, on values of both signs and with an incoming gradient that is not all ones."""
    x = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    incoming = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ReLUSquared.apply(x).backward(incoming)
    reference = x.detach().clone().requires_grad_()
    (torch.relu(reference) ** 2).backward(incoming)
    assert torch.equal(ReLUSquared.apply(x.detach()), torch.relu(x.detach()) ** 2)
    torch.testing.assert_close(x.grad, reference.grad, rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(ReLUSquared.apply, (x.detach()[:2, :3].requires_grad_(),))


CONFIGS = [
    ModelConfig(block_size=16, n_layer=2, n_head=4, n_embd=32, pos="learned"),
    ModelConfig(block_size=16, n_layer=2, n_head=2, n_embd=32, pos="rope", qk_norm=True, norm="rmsnorm",
                activation="relu2", tie_weights=True),
    ModelConfig(block_size=16, n_layer=3, n_head=2, n_embd=16, mlp=False),
    ModelConfig(block_size=16, n_layer=2, n_head=2, n_embd=16, pos="rope", bigram=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["learned", "rope-qknorm", "attention-only", "bigram"])
def test_changing_later_characters_never_changes_earlier_logits(cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    model = AttnLM(cfg, vocab_size=11).eval()
    idx = torch.randint(11, (1, 16))
    changed = idx.clone()
    changed[0, 9:] = (changed[0, 9:] + 1) % 11
    logits, _ = model(idx)
    logits2, _ = model(changed)
    torch.testing.assert_close(logits[0, :9], logits2[0, :9])
    assert not torch.allclose(logits[0, 9:], logits2[0, 9:])


@pytest.mark.parametrize("cfg", CONFIGS, ids=["learned", "rope-qknorm", "attention-only", "bigram"])
def test_fast_path_equals_explicit_path(cfg: ModelConfig) -> None:
    torch.manual_seed(1)
    model = AttnLM(dataclasses.replace(cfg, attention="sdpa"), vocab_size=13).eval()
    idx = torch.randint(13, (3, 16))
    fast, _ = model(idx)  # F.scaled_dot_product_attention(is_causal=True)
    explicit, weights = model(idx, return_attention=True)  # causal_attention written out
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    assert len(weights) == cfg.n_layer and weights[0].shape == (3, cfg.n_head, 16, 16)


def test_attention_kernel_choice() -> None:
    """auto takes the explicit math for short contexts under CPU bf16 autocast (faster there, measured) and
    SDPA otherwise (fp32 CPUs included); both give the same logits."""
    cfg = CONFIGS[1]
    torch.manual_seed(1)
    model = AttnLM(cfg, vocab_size=13).eval()
    attn = model.blocks[0].attn
    assert not attn.math_attention(torch.device("cpu"), 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attn.math_attention(torch.device("cpu"), 64) and not attn.math_attention(torch.device("cpu"), 65)
    assert not attn.math_attention(torch.device("cuda"), 16)
    idx = torch.randint(13, (2, 16))
    outs = []
    for kind in ("math", "sdpa"):
        for block in model.blocks:
            block.attn.attention = kind
        outs.append(model(idx)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_rotary_written_out_for_the_compiler_equals_the_complex_product(monkeypatch: pytest.MonkeyPatch) -> None:
    rotary = Rotary(head_size=8, max_len=16)
    x = torch.randn(2, 3, 10, 8)
    eager = rotary(x, start=4)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    written_out = rotary(x, start=4)
    torch.testing.assert_close(eager, written_out)
    # A rotation keeps each pair's length, and position 0 is not rotated at all.
    torch.testing.assert_close(eager.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rotary(x)[..., 0, :], x[..., 0, :])


def test_each_head_is_the_seed_self_attention() -> None:
    """Every head of the fused multi-head layer computes exactly what a standalone SelfAttention does."""
    torch.manual_seed(2)
    cfg = CONFIGS[1]
    model = AttnLM(cfg, vocab_size=9).eval()
    idx = torch.randint(9, (2, 12))
    captured = {}
    block = model.blocks[1]
    block.norm1.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    _, weights = model(idx, return_attention=True)
    x = captured["x"]  # (B, T, C): the attention layer's real input
    mha = block.attn
    B, T, C = x.shape
    pre_proj = []
    for h in range(cfg.n_head):
        out, w = mha.head(h)(x, return_weights=True)
        torch.testing.assert_close(w, weights[1][:, h], atol=1e-6, rtol=1e-5)
        pre_proj.append(out)
    y = mha.proj(torch.cat(pre_proj, dim=-1))  # heads side by side, then the output projection
    fast, _ = mha(x)
    torch.testing.assert_close(y, fast, atol=1e-5, rtol=1e-5)


def test_block_size_is_a_hard_limit() -> None:
    cfg = CONFIGS[0]
    model = AttnLM(cfg, vocab_size=7).eval()
    model(torch.zeros(1, cfg.block_size, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"^sequence of {cfg.block_size + 1} exceeds block_size {cfg.block_size}$"):
        model(torch.zeros(1, cfg.block_size + 1, dtype=torch.long))


def test_tied_head_shares_the_embedding() -> None:
    model = AttnLM(ModelConfig(block_size=8, n_layer=1, n_head=1, n_embd=8, tie_weights=True), 5)
    assert model.head.weight is model.tok_emb.weight


def test_bigram_adds_the_vector_of_each_character_pair() -> None:
    """x_t = E[c_t] + P[c_(t-1) * V + c_t], and P[V * V] at the window's first character (no previous one)."""
    V = 5
    model = AttnLM(ModelConfig(block_size=8, n_layer=1, n_head=1, n_embd=8, pos="rope", bigram=True), V)
    assert model.pair_emb.weight.shape == (V * V + 1, 8)
    idx = torch.tensor([[3, 1, 4, 1]])
    assert model.pairs(idx).tolist() == [[V * V, 3 * V + 1, 1 * V + 4, 4 * V + 1]]
    want = model.tok_emb.weight[idx[0]] + model.pair_emb.weight[[V * V, 16, 9, 21]]
    torch.testing.assert_close(model.embed(idx)[0], want)
    # The same character after another one is another input: 'a' after 'b' is not 'a' after 'c'.
    assert not torch.equal(model.embed(torch.tensor([[2, 0]]))[0, 1], model.embed(torch.tensor([[3, 0]]))[0, 1])
