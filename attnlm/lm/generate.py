"""Text generation with a key/value cache, temperature, top-k and top-p."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from attnlm.checks import SamplingOptions
from attnlm.device import eager
from attnlm.lm.kv_cache import Decoder, KVCache
from attnlm.lm.model import AttnLM


def next_token_probs(logits: torch.Tensor, opts: SamplingOptions) -> torch.Tensor:
    """logits (V,) -> probabilities (V,) after temperature, top-k and top-p (nucleus) filtering."""
    # Shifted so the largest is 0, and in float64: then any temperature > 0 works, the smallest tending to the
    # argmax, where float32 would round a tiny one to 0 and divide 0 by it (NaN). On the CPU, where the draw
    # happens anyway: MPS has no float64.
    logits = logits.cpu().double()
    logits = (logits - logits.max()) / opts.temperature
    if opts.top_k is not None and opts.top_k < logits.numel():
        kth = torch.topk(logits, opts.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if opts.top_p is not None and opts.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the most likely token always survives).
        drop = sorted_probs.cumsum(0) - sorted_probs >= opts.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
    return probs.float()


def context_start(n_tokens: int, anchor: int, block_size: int) -> int:
    """Where the model's context begins. Once it would exceed block_size it slides forward to keep the
    last half window, so a cache can be refilled once per block_size / 2 characters instead of every one.
    Both generation paths follow this rule, which is what makes their outputs identical. At least the last
    character stays: half of a block_size of 1 would be an empty context."""
    if n_tokens - anchor > block_size:
        return n_tokens - max(1, block_size // 2)
    return anchor


@torch.inference_mode()  # lighter than no_grad: no version counters or view tracking per op
def generate(
    model: AttnLM,
    prompt: torch.Tensor,
    max_new_tokens: int,
    opts: SamplingOptions,
    generator: torch.Generator,
    use_cache: bool = True,
    on_token: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Continue `prompt` (1-D token ids) by `max_new_tokens` sampled tokens; returns only the new ones.

    With `use_cache` each step feeds one new position through the model; without it every step
    recomputes the whole context (the reference the cache is tested against).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    block = model.cfg.block_size
    tokens = prompt.tolist()
    anchor = context_start(len(tokens), 0, block)
    cache: KVCache | None = None
    dtype = next(model.parameters()).dtype
    decoder = Decoder(model) if use_cache else None
    new: list[int] = []
    with eager():  # entered once: switching the compile stance costs a noticeable share of a cached step
        for _ in range(max_new_tokens):
            start = context_start(len(tokens), anchor, block)
            if decoder is None:
                logits = model(torch.tensor([tokens[start:]], device=device))[0][0, -1]
            elif cache is None or start != anchor:
                cache = KVCache.empty(model.cfg, 1, device, dtype)
                logits = decoder.feed(tokens[start:], cache)  # (re)fill with the whole context
            else:
                logits = decoder.feed(tokens[-1:], cache)  # one new position
            anchor = start
            probs = next_token_probs(logits, opts).cpu()
            token = int(torch.multinomial(probs, 1, generator=generator))
            tokens.append(token)
            new.append(token)
            if on_token is not None:
                on_token(token)
    model.train(was_training)
    return torch.tensor(new, dtype=torch.long)
