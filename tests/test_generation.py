"""Generation with the key/value cache must sample exactly what recomputing the context samples."""

from __future__ import annotations

import pytest
import torch

from attnlm.checks import SamplingOptions
from attnlm.config import ModelConfig
from attnlm.lm.generate import context_start, generate
from attnlm.lm.kv_cache import Decoder, KVCache
from attnlm.lm.model import AttnLM

VOCAB = 11


def tiny_model(**overrides: object) -> AttnLM:
    cfg = ModelConfig(**{"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16, **overrides})  # type: ignore[arg-type]
    torch.manual_seed(0)
    return AttnLM(cfg, VOCAB).eval()


def both_paths(model: AttnLM, prompt: list[int], n: int, opts: SamplingOptions, seed: int = 3) -> tuple[list, list]:
    outs = []
    for use_cache in (True, False):
        ids = generate(model, torch.tensor(prompt), n, opts, torch.Generator().manual_seed(seed), use_cache=use_cache)
        outs.append(ids.tolist())
    return outs[0], outs[1]


@pytest.mark.parametrize("overrides", [
    {"pos": "learned"},
    {"pos": "rope", "qk_norm": True, "norm": "rmsnorm", "activation": "relu2"},
    {"pos": "rope", "bigram": True},
])
def test_cached_and_recomputed_generation_are_identical_past_block_size(overrides: dict) -> None:
    model = tiny_model(**overrides)
    # 60 new tokens from a 3-token prompt: the context (16) slides several times.
    cached, recomputed = both_paths(model, [1, 2, 3], 60, SamplingOptions(temperature=1.5))
    assert len(cached) == 60
    assert cached == recomputed


VARIANTS = [
    {"pos": "learned"},
    {"pos": "learned", "norm": "layernorm", "bias": True, "activation": "gelu", "tie_weights": True},
    {"pos": "rope", "qk_norm": True, "norm": "rmsnorm", "activation": "relu2"},
    {"pos": "rope", "mlp": False},
    {"pos": "learned", "mlp": False},  # configs/induction.yaml's attention-only blocks
    {"pos": "learned", "bigram": True, "tie_weights": True},
]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_decoder_steps_give_the_logits_of_the_full_forward(overrides: dict) -> None:
    assert_decoder_gives_the_full_forward(tiny_model(**overrides))


def test_the_decoder_uses_each_norms_own_epsilon() -> None:
    """attnlm's norms leave eps to torch (the dtype's machine epsilon); a norm with its own, large enough to
    change every output, must be followed too."""
    model = tiny_model(pos="rope", qk_norm=True, norm="rmsnorm")
    for module in model.modules():
        if isinstance(module, torch.nn.RMSNorm):
            module.eps = 0.5
    assert_decoder_gives_the_full_forward(model)


def assert_decoder_gives_the_full_forward(model: AttnLM) -> None:
    with torch.no_grad():
        for p in model.parameters():  # biases and norm gains start at 0 and 1; make them matter
            p.add_(0.1 * torch.randn_like(p))
    idx = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full, _ = model(idx)  # (1, 16, V)
        decoder = Decoder(model)
        cache = KVCache.empty(model.cfg, 1, torch.device("cpu"), torch.float32)
        two = decoder.feed(idx[0, :2].tolist(), cache)  # 2 positions, then 3 at once, then one at a time
        first = decoder.feed(idx[0, 2:5].tolist(), cache)
        steps = [decoder.feed([int(t)], cache) for t in idx[0, 5:]]
        assert cache.length == 16
        # The cache holds the keys and values each layer's attention computes in the full forward.
        inputs: list[torch.Tensor] = []
        hooks = [block.attn.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for block in model.blocks]
        model(idx)
        for hook in hooks:
            hook.remove()
        reference = [block.attn.heads(x) for block, x in zip(model.blocks, inputs, strict=True)]  # (q, k, v) (1, H, T, D)
    torch.testing.assert_close(two, full[0, 1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(first, full[0, 4], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack(steps), full[0, 5:], rtol=1e-5, atol=1e-5)
    for layer, (_, k, v) in enumerate(reference):
        torch.testing.assert_close(cache.k[layer], k, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cache.v[layer], v, rtol=1e-5, atol=1e-5)


def test_identical_with_top_k_top_p_and_a_prompt_longer_than_the_context() -> None:
    model = tiny_model(pos="rope")
    prompt = [i % VOCAB for i in range(40)]  # longer than block_size: only its tail is seen
    cached, recomputed = both_paths(model, prompt, 30, SamplingOptions(temperature=0.9, top_k=5, top_p=0.9))
    assert cached == recomputed


def test_same_seed_same_text_other_seed_other_text() -> None:
    model = tiny_model()
    opts = SamplingOptions(temperature=2.0)
    a, _ = both_paths(model, [0], 40, opts, seed=1)
    b, _ = both_paths(model, [0], 40, opts, seed=1)
    c, _ = both_paths(model, [0], 40, opts, seed=2)
    assert a == b
    assert a != c


def test_an_empty_cache_lies_on_the_device_and_in_the_dtype_asked_for() -> None:
    cfg = ModelConfig(block_size=16, n_layer=3, n_head=2, n_embd=16)
    cache = KVCache.empty(cfg, 2, torch.device("meta"), torch.float64)
    assert len(cache.k) == len(cache.v) == 3 and cache.length == 0
    for t in (*cache.k, *cache.v):
        assert t.device.type == "meta" and t.dtype == torch.float64 and t.shape == (2, 2, 16, 8)


def test_context_slides_by_half_a_window_once_full() -> None:
    assert context_start(16, 0, 16) == 0
    assert context_start(17, 0, 16) == 17 - 8  # keeps the last half window
    assert context_start(20, 9, 16) == 9  # still fits after sliding: no refill


@pytest.mark.parametrize("block_size", [1, 2])
def test_contexts_of_one_and_two_characters_work_everywhere(block_size: int, tmp_path) -> None:
    """Sampling (both paths, past the context), evaluation, the trace and the attention views at the
    smallest contexts: half of a block_size of 1 is 0, which once left the sampler an empty context."""
    from attnlm.data import Vocab
    from attnlm.inspection.attention import attention_weights
    from attnlm.inspection.plots import write_heatmaps
    from attnlm.inspection.trace import run_trace
    from attnlm.lm.evaluation import eval_result, evaluate

    for pos in ("learned", "rope"):
        model = tiny_model(block_size=block_size, pos=pos)
        cached, recomputed = both_paths(model, [1, 2, 3], 12, SamplingOptions(temperature=1.5))
        assert cached == recomputed and len(cached) == 12
    vocab = Vocab("abcdefghijk")
    assert vocab.size == VOCAB
    result = eval_result(*evaluate(model, vocab.encode("abcabcabcabcd"), 4, torch.device("cpu")))
    assert result.tokens == 12 and 0 < result.loss < 10
    text = "ab"[:block_size]
    assert run_trace(model, vocab, text).tensors["weights"].shape == (1, block_size, block_size)
    weights = attention_weights(model, vocab.encode(text))
    assert write_heatmaps(weights, text, tmp_path / "h.png").is_file()
