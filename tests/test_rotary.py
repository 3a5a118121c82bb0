"""Rotary positions against their formula: at position m, features (2i, 2i+1) of a head of size D are rotated
by the angle m * 10000^(-2i/D), on the complex path used eagerly, on the written-out path used under
torch.compile, inside the model's attention and in the sampler's key/value cache. The expected rotations are
computed here in float64 from the formula, not from the module's own tables."""

from __future__ import annotations

import math

import pytest
import torch

from attnlm.config import ModelConfig
from attnlm.lm.kv_cache import Decoder, KVCache
from attnlm.lm.model import AttnLM, Rotary

BASE = 10000.0


def angle(m: int, i: int, d: int, base: float = BASE) -> float:
    return m * base ** (-2 * i / d)


def rotated(x: torch.Tensor, start: int = 0, base: float = BASE) -> torch.Tensor:
    """x (..., T, D) at positions start.., each pair (x[2i], x[2i+1]) turned counter-clockwise by its angle."""
    x = x.double()
    T, D = x.shape[-2:]
    out = torch.empty_like(x)
    for t in range(T):
        for i in range(D // 2):
            a = angle(start + t, i, D, base)
            c, s = math.cos(a), math.sin(a)
            x1, x2 = x[..., t, 2 * i], x[..., t, 2 * i + 1]
            out[..., t, 2 * i] = x1 * c - x2 * s
            out[..., t, 2 * i + 1] = x1 * s + x2 * c
    return out


@pytest.fixture(params=["eager", "compiled"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways Rotary.forward computes: the complex product, and the real/imaginary parts written out that
    compiled code takes (chosen by torch.compiler.is_compiling, which is made to answer yes)."""
    if request.param == "compiled":
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    return request.param


@pytest.mark.parametrize(("head_size", "max_len", "start"), [(2, 8, 0), (4, 16, 3), (8, 40, 0), (16, 64, 17), (64, 80, 9)])
def test_rotary_turns_each_feature_pair_by_position_times_its_frequency(path: str, head_size: int, max_len: int,
                                                                         start: int) -> None:
    x = torch.randn(2, 3, max_len - start, head_size, generator=torch.Generator().manual_seed(head_size))
    got = Rotary(head_size, max_len)(x, start=start)
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got.double(), rotated(x, start), rtol=0, atol=2e-5)


def test_one_unit_vector_per_pair_lands_at_its_angle(path: str) -> None:
    """Feature 2i set to 1 alone, at position m, comes out as (cos, sin) of m * 10000^(-2i/D): the frequencies
    fall geometrically from 1 radian per position for the first pair to 10000^(-(D-2)/D) for the last."""
    D, m = 8, 5
    x = torch.zeros(D // 2, m + 1, D)
    for i in range(D // 2):
        x[i, :, 2 * i] = 1.0
    out = Rotary(D, 16)(x)[:, m]  # (D/2, D): each pair's own unit vector, at position m
    for i in range(D // 2):
        a = m * BASE ** (-2 * i / D)
        assert out[i, 2 * i].item() == pytest.approx(math.cos(a), abs=1e-5)
        assert out[i, 2 * i + 1].item() == pytest.approx(math.sin(a), abs=1e-5)
        others = torch.cat((out[i, : 2 * i], out[i, 2 * i + 2 :]))
        assert others.abs().max().item() < 1e-6  # the other pairs stay zero: features only mix within a pair
    assert [round(BASE ** (-2 * i / D), 6) for i in range(D // 2)] == [1.0, 0.1, 0.01, 0.001]


def test_a_custom_base_sets_the_frequencies(path: str) -> None:
    x = torch.randn(1, 12, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(Rotary(6, 12, base=100.0)(x).double(), rotated(x, base=100.0), rtol=0, atol=2e-5)


@pytest.mark.parametrize("shift", [1, 5, 20])
def test_query_key_products_depend_only_on_how_far_apart_they_are(path: str, shift: int) -> None:
    g = torch.Generator().manual_seed(shift)
    rotary = Rotary(16, 48)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)

    def product(m: int, n: int) -> float:
        seq = torch.zeros(1, max(m, n) + 1, 16)
        qs, ks = seq.clone(), seq.clone()
        qs[0, m], ks[0, n] = q, k
        return float(rotary(qs)[0, m] @ rotary(ks)[0, n])

    for m, n in [(0, 0), (3, 1), (7, 7), (2, 9), (10, 0)]:
        assert product(m + shift, n + shift) == pytest.approx(product(m, n), abs=1e-4)
    assert product(4, 0) != pytest.approx(product(0, 0), abs=1e-3)  # but the distance itself does matter


def rope_model() -> AttnLM:
    cfg = ModelConfig(block_size=20, n_layer=2, n_head=2, n_embd=16, pos="rope")
    torch.manual_seed(0)
    return AttnLM(cfg, 7).eval()


def test_the_models_attention_rotates_queries_and_keys_by_the_formula() -> None:
    """A model's heads(): the Q and K projections of each head, rotated as the formula says, V untouched."""
    model = rope_model()
    attn = model.blocks[0].attn
    x = torch.randn(2, 20, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        q, k, v = attn.heads(x)  # (B, H, T, D)
        raw = attn.qkv(x).split(16, dim=-1)  # (B, T, C) each, unrotated
    D = 8
    raw_q, raw_k, raw_v = (t.view(2, 20, 2, D).transpose(1, 2) for t in raw)
    torch.testing.assert_close(q.double(), rotated(raw_q), rtol=0, atol=2e-5)
    torch.testing.assert_close(k.double(), rotated(raw_k), rtol=0, atol=2e-5)
    torch.testing.assert_close(v, raw_v)


def test_the_sampling_cache_holds_keys_rotated_by_the_formula() -> None:
    """The key/value cache rotates with its own table (rotary.turn): its keys, fed in two pieces, are the
    unrotated projections turned by the formula too."""
    model = rope_model()
    ids = [1, 4, 2, 6, 0, 3, 5, 5, 2, 1, 0, 6]
    captured: list[torch.Tensor] = []
    hook = model.blocks[1].attn.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    with torch.inference_mode():
        model(torch.tensor([ids]))
        hook.remove()
        raw_k = model.blocks[1].attn.qkv(captured[0]).split(16, dim=-1)[1]  # (1, T, C)
        cache = KVCache.empty(model.cfg, 1, torch.device("cpu"), torch.float32)
        decoder = Decoder(model)
        decoder.feed(ids[:5], cache)
        decoder.feed(ids[5:], cache)
    expected = rotated(raw_k.view(1, len(ids), 2, 8).transpose(1, 2))
    torch.testing.assert_close(cache.k[1][:, :, : len(ids)].double(), expected, rtol=0, atol=1e-4)
