"""The sampler's key/value cache and the decoder that reads and extends it, one new position at a time.

The model's forward always sees a whole window; recomputing it for every sampled character repeats the
work of every earlier position. The cache keeps each layer's keys and values of the positions already
seen, so a new character costs one position. For one character of a small model the arithmetic is a few
microseconds per layer and the cost is everything around it (module calls, views, casts, norms that run
as half a dozen small kernels each): on a CPU a cached step through the model's modules measured barely
faster than recomputing a whole short window. `Decoder` therefore runs the
same math for the new positions only (batch 1, no autograd, no dropout) as a short straight list of
tensor ops on weights prepared once:

- tensors are (T, C) for T new positions, the heads' (H, T, D), with no batch dimension; T is 1 for each
  sampled character and the context length when the sampler (re)fills the cache;
- a norm followed by a linear layer is one matrix product: with RMSNorm,
  RMSNorm(x) W^T = (x (W diag(g))^T) / rms(x), so the gain g is folded into W once and a step only
  computes 1 / rms(x) = sqrt(C) / sqrt(x . x + C eps);
- the residual additions ride along in `addmm` (x + y W^T in one kernel), and the query's 1/sqrt(D)
  rides along in the rotary product.

The tests check it against `AttnLM.forward` for every model variant (logits to float rounding, and the
cached keys and values against `MultiHeadAttention.heads`) and that sampling with it gives exactly the text
that recomputing the window gives.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlm.config import ModelConfig
from attnlm.lm.model import AttnLM


@dataclass
class KVCache:
    """Keys and values of every layer for positions [0, length), so a new character costs one position."""

    k: list[torch.Tensor]  # per layer (B, H, T_max, D)
    v: list[torch.Tensor]
    length: int = 0
    last_token: int = -1  # the token at position length - 1: model.bigram pairs the next one with it

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        shape = (batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        return cls([torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)],
                   [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)])


class NormLinear:
    """`linear(norm(x))` for x (T, C): folded into one matrix product for RMSNorm."""

    def __init__(self, norm: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.bias = bias
        if isinstance(norm, nn.RMSNorm):
            C = weight.shape[1]
            eps = norm.eps if norm.eps is not None else torch.finfo(weight.dtype).eps
            # x . x + C eps = C (mean(x^2) + eps). A tensor: adding a Python float costs more (wrapping it).
            self.rms_eps: torch.Tensor | None = torch.tensor(C * eps, dtype=weight.dtype, device=weight.device)
            self.weight = weight * norm.weight * math.sqrt(C)  # (out, C): W diag(g) sqrt(C)
            self.weight_t = self.weight.t().contiguous()  # (C, out): x @ W^T measured faster so laid out
            self.norm = None
        else:
            self.rms_eps, self.weight, self.norm = None, weight, norm

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (T, C) -> (T, out)."""
        if self.rms_eps is None:
            return F.linear(self.norm(x), self.weight, self.bias)
        sq = torch.mm(x, x.t()) if x.shape[0] == 1 else (x * x).sum(-1, keepdim=True)  # (T, 1): x . x, one kernel for T = 1
        inv_rms = sq.add_(self.rms_eps).rsqrt_()  # (T, 1): sqrt(C) / rms(x), the sqrt(C) is in W
        y = torch.mm(x, self.weight_t).mul_(inv_rms)  # (T, out)
        return y if self.bias is None else y.add_(self.bias)


class HeadNorm:
    """The per-head RMSNorm of queries and keys (model.qk_norm) for (2, H, D) in five small kernels:
    g x / sqrt(mean(x^2) + eps) = (g sqrt(D)) x / sqrt(x . x + D eps). F.rms_norm measured slower on such
    tiny inputs, and mean slower than sum."""

    def __init__(self, norm: nn.RMSNorm, head_size: int, dtype: torch.dtype) -> None:
        eps = norm.eps if norm.eps is not None else torch.finfo(dtype).eps
        self.eps = torch.tensor(head_size * eps, dtype=dtype, device=norm.weight.device)
        self.gain = norm.weight.detach() * math.sqrt(head_size)  # (D,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        inv = (x * x).sum(-1, keepdim=True).add_(self.eps).rsqrt_()  # (2, H, 1)
        return x * inv * self.gain


class Decoder:
    """Feeds tokens through `model`'s weights as in eval mode, reading and extending a KVCache of batch 1."""

    def __init__(self, model: AttnLM) -> None:
        cfg = model.cfg
        self.n_head, self.head_size = cfg.n_head, cfg.n_embd // cfg.n_head
        D = self.head_size
        scale = 1.0 / math.sqrt(D)
        self.relu2 = cfg.activation == "relu2"
        with torch.no_grad():
            self.tok_emb = model.tok_emb.weight.detach()  # (V, C)
            self.pos_emb = model.pos_emb.weight.detach() if model.pos_emb is not None else None  # (T_max, C)
            self.pair_emb = model.pair_emb.weight.detach() if model.pair_emb is not None else None  # (V^2 + 1, C)
            self.vocab_size = model.vocab_size
            rotary = model.blocks[0].attn.rotary
            # Per position, what multiplies the query's and the key's feature pairs: e^(i pos f) for both
            # (rotary) or 1, and for the query also the 1/sqrt(D) of the scores, so that costs no extra kernel.
            turn = rotary.turn if rotary is not None else torch.ones(cfg.block_size, D // 2, dtype=torch.complex64)
            turn = turn.to(self.tok_emb.device)
            self.turn = torch.stack((turn * scale, turn)).unsqueeze(1)  # (2, 1, T_max, D/2) complex
            self.layers = []
            for block in model.blocks:
                attn, mlp = block.attn, block.mlp
                self.layers.append((
                    NormLinear(block.norm1, attn.qkv.weight.detach(), attn.qkv.bias),  # x -> (3C,)
                    HeadNorm(attn.qk_norm, D, self.tok_emb.dtype) if attn.qk_norm is not None else None,
                    attn.proj.weight.detach().t().contiguous(), attn.proj.bias,  # (C, C) transposed, for x + y W^T in one addmm
                    NormLinear(block.norm2, mlp.up.weight.detach(), mlp.up.bias) if mlp is not None else None,  # x -> (rC,)
                    mlp.down.weight.detach().t().contiguous() if mlp is not None else None,  # (rC, C)
                    mlp.down.bias if mlp is not None else None,
                ))
            self.head = NormLinear(model.norm_f, model.head.weight.detach(), None)  # x -> (V,)

    def feed(self, tokens: list[int], cache: KVCache) -> torch.Tensor:
        """Logits (V,) for the position after the last of `tokens`, which go in at cache.length onwards."""
        start, T = cache.length, len(tokens)
        S = start + T  # positions the new queries see
        H, D = self.n_head, self.head_size
        x = self.tok_emb[tokens[0] : tokens[0] + 1] if T == 1 else self.tok_emb[tokens]  # (T, C)
        if self.pair_emb is not None:
            V = self.vocab_size  # as AttnLM.pairs: previous * V + current, V * V at the window's start
            first = V * V if start == 0 else cache.last_token * V + tokens[0]
            x = x + self.pair_emb[[first, *(a * V + b for a, b in itertools.pairwise(tokens))]]  # (T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb[start:S]
        turn = self.turn[:, :, start:S]  # (2, 1, T, D/2)
        # Query i (at position start + i) sees keys 0 .. start + i; one query sees them all.
        future = None if T == 1 else torch.ones(T, S, dtype=torch.bool, device=x.device).triu_(start + 1)
        for i, (qkv_of, qk_norm, proj_t, proj_bias, up_of, down_t, down_bias) in enumerate(self.layers):
            qkv = qkv_of(x).view(T, 3, H, D).permute(1, 2, 0, 3)  # (3, H, T, D): each head's Q, K, V
            qk = qkv[:2]  # (2, H, T, D)
            if qk_norm is not None:
                qk = qk_norm(qk)
            # Rotary (as in Rotary.forward: each feature pair times e^(i pos f)) and the query's 1/sqrt(D).
            qk = torch.view_as_real(torch.view_as_complex(qk.unflatten(-1, (-1, 2))) * turn).flatten(-2)
            keys, values = cache.k[i][0], cache.v[i][0]  # (H, T_max, D)
            keys[:, start:S] = qk[1]
            values[:, start:S] = qkv[2]
            scores = torch.bmm(qk[0], keys[:, :S].transpose(1, 2))  # (H, T, S): q . k / sqrt(D)
            if future is not None:
                scores.masked_fill_(future, float("-inf"))
            weights = torch.softmax(scores, dim=-1)  # (H, T, S)
            y = torch.bmm(weights, values[:, :S]).transpose(0, 1).reshape(T, H * D)  # (T, C): heads side by side
            x = torch.addmm(x, y, proj_t)  # x + y W_proj^T
            if proj_bias is not None:
                x = x + proj_bias
            if up_of is not None:
                h = up_of(x)  # (T, rC)
                h = torch.relu_(h).square_() if self.relu2 else F.gelu(h)
                x = torch.addmm(x, h, down_t)
                if down_bias is not None:
                    x = x + down_bias
        cache.length, cache.last_token = S, tokens[-1]
        return self.head(x[-1:])[0]  # (V,): only the last position's logits are sampled
