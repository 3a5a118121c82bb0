"""The character-level attention language model.

Embedding (+ positions) -> n_layer x [x + Attn(Norm(x)); x + MLP(Norm(x))] -> Norm -> linear head.
Shapes use B = batch, T = time (characters), C = n_embd, H = n_head, D = head size (C / H).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:  # only a type: this file runs on its own beside an exported model (attnlm export)
    from attnlm.config import ModelConfig


def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Q K^T / sqrt(d): how well each query matches each key. q, k: (..., T, D) -> (..., T, T)."""
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def causal_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Mask the future (a position never sees a later one), then softmax so each row sums to 1."""
    T = scores.shape[-1]
    future = torch.ones(T, T, dtype=torch.bool, device=scores.device).triu(1)
    return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)  # (..., T, T)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention written out step by step: scores, causal mask, softmax, weighted values.

    q, k, v: (..., T, D). Returns the output (..., T, D) and the weights (..., T, T).
    """
    weights = causal_softmax(attention_scores(q, k))
    return weights @ v, weights


class Rotary(nn.Module):
    """Rotary position embedding: rotates each pair of q/k features (0, 1), (2, 3), ... by the angle
    pos * f_pair, so q . k depends on how far apart two positions are, not where they are."""

    def __init__(self, head_size: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_size, 2).float() / head_size)  # (D/2,)
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (T_max, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        self.register_buffer("turn", torch.polar(torch.ones_like(angles), angles), persistent=False)  # e^(i angle)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x (..., T, D) at positions start .. start + T - 1."""
        T = x.shape[-2]
        if torch.compiler.is_compiling():
            # Inductor cannot fuse complex arithmetic (it falls back to eager kernels), so compiled code
            # gets the rotation written out on the real and imaginary parts.
            cos, sin = self.cos[start : start + T].to(x.dtype), self.sin[start : start + T].to(x.dtype)  # (T, D/2)
            x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., T, D/2)
            out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., T, D/2, 2)
            return out.flatten(-2)  # (..., T, D)
        # Eagerly, a pair (a, b) read as a + ib is rotated by one complex product with e^(i angle): one kernel
        # each way instead of the half dozen that slicing and stacking the pairs take.
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (..., T, D/2) complex
        return torch.view_as_real(pairs * self.turn[start : start + T]).flatten(-2).to(x.dtype)  # (..., T, D)


def make_norm(kind: str, size: int, bias: bool) -> nn.Module:
    return nn.RMSNorm(size) if kind == "rmsnorm" else nn.LayerNorm(size, bias=bias)


class SelfAttention(nn.Module):
    """One causal head of self-attention: Q, K, V projections, softmax(Q K^T / sqrt(d)) V."""

    def __init__(self, n_embd: int, head_size: int, rotary: Rotary | None = None,
                 qk_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.rotary = rotary
        self.qk_norm = qk_norm

    def stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate tensor of the head, for teaching views. x: (B, T, C)."""
        q, k, v = self.query(x), self.key(x), self.value(x)  # (B, T, D) each
        if self.qk_norm is not None:
            q, k = self.qk_norm(q), self.qk_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        scores = attention_scores(q, k)  # (B, T, T)
        weights = causal_softmax(scores)  # (B, T, T)
        out = weights @ v  # (B, T, D)
        return {"q": q, "k": k, "v": v, "scores": scores, "weights": weights, "out": out}

    def forward(self, x: torch.Tensor, return_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s = self.stages(x)
        return (s["out"], s["weights"]) if return_weights else s["out"]


class MultiHeadAttention(nn.Module):
    """n_head SelfAttention heads computed together, then an output projection."""

    def __init__(self, cfg: ModelConfig, rotary: Rotary | None) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.head_size = cfg.n_embd // cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # all heads' Q, K, V at once
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.qk_norm = nn.RMSNorm(self.head_size) if cfg.qk_norm else None
        self.rotary = rotary
        self.dropout = nn.Dropout(cfg.dropout)
        self.attention = cfg.attention
        # Head ablation (switch_off), off by default: plain attributes, not buffers, so never in a checkpoint,
        # and on the training path one `is None` test.
        self.off: torch.Tensor | None = None  # (H,) bool: the heads switched off
        self.off_value: torch.Tensor | None = None  # (H, D): what they output instead; None: zeros

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every head's queries, keys and values for x (B, T, C), each (B, H, T, D), normalised and rotated as
        attention uses them (the sampler's key/value cache holds these keys and values)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, self.head_size).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu":
            # Under CPU bf16 autocast only the linear layers' matmuls stay bf16: the per-head norm, rotary
            # and the CPU flash kernel (measured much slower in bf16 than fp32, fwd+bwd) all run faster in fp32.
            q, k, v = q.float(), k.float(), v.float()
        if self.qk_norm is not None:
            q, k = self.qk_norm(q), self.qk_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        return q, k, v

    def forward(self, x: torch.Tensor, explicit: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C) -> (B, T, C), and with `explicit` the weights (B, H, T, T) of the written-out path."""
        B, T, C = x.shape
        q, k, v = self.heads(x)  # (B, H, T, D) each
        weights = None
        if explicit:
            y, weights = causal_attention(q, k, v)  # (B, H, T, D), (B, H, T, T)
        elif self.math_attention(x.device, T):
            y, _ = causal_attention(q, k, v)  # (B, H, T, D)
        else:
            with torch.autocast(x.device.type, enabled=False):  # or autocast would recast q, k, v to bf16
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        if self.off is not None:
            y = self.replace_heads(y)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side
        return self.dropout(self.proj(y)), weights

    def switch_off(self, off: torch.Tensor | None, value: torch.Tensor | None = None) -> None:
        """Head ablation: each head h with off[h] (off: (H,) bool) outputs value[h] (value: (H, D)) at every
        position instead of its own z, or zeros when `value` is None; the output projection and the residual
        stream take it as they would z. switch_off(None) turns every head back on. The KV-cache sampler
        (kv_cache.py) reads the weights itself and ignores this."""
        if off is not None and (off.shape != (self.n_head,) or off.dtype != torch.bool):
            raise ValueError(f"off must be a bool tensor of shape ({self.n_head},), got {off.dtype} {tuple(off.shape)}")
        if value is not None and (off is None or value.shape != (self.n_head, self.head_size)):
            raise ValueError(f"value must be ({self.n_head}, {self.head_size}), with off, got {tuple(value.shape)}")
        self.off, self.off_value = off, value

    def replace_heads(self, y: torch.Tensor) -> torch.Tensor:
        """y (B, H, T, D) with each switched-off head's output replaced by its value (or zeros)."""
        off = self.off.to(y.device)[:, None, None]  # (H, 1, 1)
        instead = y.new_zeros(()) if self.off_value is None else self.off_value.to(y)[:, None, :]  # (H, 1, D)
        return torch.where(off, instead, y)  # (B, H, T, D)

    def math_attention(self, device: torch.device, T: int) -> bool:
        """Whether to use the explicit attention rather than SDPA. On a CPU under bf16 autocast the explicit
        path measured a faster training step for short contexts (up to 64), about even at 128 and slower beyond:
        the CPU flash kernel only pays for longer contexts. In fp32 SDPA was as fast or faster even at 64, so
        auto takes the explicit path only under CPU bf16 autocast."""
        if self.attention == "auto":
            return device.type == "cpu" and T <= 64 and torch.is_autocast_enabled("cpu")
        return self.attention == "math"

    def head(self, h: int) -> SelfAttention:
        """Head `h` as a standalone SelfAttention with this layer's weights (shares nothing mutable)."""
        C, D = self.qkv.in_features, self.head_size
        sa = SelfAttention(C, D, rotary=self.rotary, qk_norm=self.qk_norm)
        w = self.qkv.weight.detach()  # (3C, C): rows [0, C) are Q, [C, 2C) K, [2C, 3C) V
        rows = slice(h * D, (h + 1) * D)
        with torch.no_grad():
            sa.query.weight.copy_(w[:C][rows])
            sa.key.weight.copy_(w[C : 2 * C][rows])
            sa.value.weight.copy_(w[2 * C :][rows])
        if self.qkv.bias is not None:
            raise ValueError("head() needs a bias-free Q/K/V projection (model.bias: false)")
        return sa.to(w.device)


class ReLUSquared(torch.autograd.Function):
    """relu(x)^2, keeping only relu(x) for the backward pass: d/dx relu(x)^2 = 2 relu(x). Autograd's chain of
    relu and square makes six elementwise passes over the (B, T, 4C) activations, this one four, with the same
    numbers (times 2 is exact in floating point), and measured a slightly faster training step."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return torch.mul(grad, r).mul_(2.0)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=cfg.bias)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.activation = cfg.activation
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)  # (B, T, r*C)
        h = ReLUSquared.apply(h) if self.activation == "relu2" else F.gelu(h)
        return self.dropout(self.down(h))  # (B, T, C)


class Block(nn.Module):
    """Residual connection around normalised attention, then (optionally) around an MLP."""

    def __init__(self, cfg: ModelConfig, rotary: Rotary | None) -> None:
        super().__init__()
        self.norm1 = make_norm(cfg.norm, cfg.n_embd, cfg.bias)
        self.attn = MultiHeadAttention(cfg, rotary)
        self.norm2 = make_norm(cfg.norm, cfg.n_embd, cfg.bias) if cfg.mlp else None
        self.mlp = MLP(cfg) if cfg.mlp else None

    def forward(self, x: torch.Tensor, explicit: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.norm1(x), explicit)
        x = x + a  # (B, T, C)
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x, weights


class AttnLM(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        head_size = cfg.n_embd // cfg.n_head
        rotary = Rotary(head_size, cfg.block_size) if cfg.pos == "rope" else None
        self.tok_emb = nn.Embedding(vocab_size, cfg.n_embd)
        # model.bigram: each (previous, current) character pair's own vector. Without it the first layer's
        # attention has to fetch the previous character before anything can use it. Row V*V stands for a
        # window's first character, whose previous one is out of view.
        self.pair_emb = nn.Embedding(vocab_size * vocab_size + 1, cfg.n_embd) if cfg.bigram else None
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, rotary) for _ in range(cfg.n_layer))
        self.norm_f = make_norm(cfg.norm, cfg.n_embd, cfg.bias)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init)
        # Residual projections start small so the residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def pairs(self, idx: torch.Tensor) -> torch.Tensor:
        """Each position's row of pair_emb: previous * V + current, and V * V at the window's start. (B, T)."""
        V = self.vocab_size
        first = torch.full_like(idx[:, :1], V * V)  # (B, 1)
        return torch.cat((first, idx[:, :-1] * V + idx[:, 1:]), dim=1)  # (B, T)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token embeddings plus, where configured, character-pair embeddings and learned positions (rotary
        positions act inside attention). idx: (B, T)."""
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pair_emb is not None:
            x = x + self.pair_emb(self.pairs(idx))  # (B, T, C)
        if self.pos_emb is not None:
            pos = torch.arange(idx.shape[1], device=idx.device)  # (T,)
            x = x + self.pos_emb(pos)  # (B, T, C) + (T, C)
        return self.drop(x)

    def forward(self, idx: torch.Tensor, return_attention: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """idx: (B, T) -> logits (B, T, V); with return_attention, each layer's weights (B, H, T, T)
        from the explicit path. Sampling feeds one new position at a time through attnlm.decoder instead."""
        if idx.shape[1] > self.cfg.block_size:
            raise ValueError(f"sequence of {idx.shape[1]} exceeds block_size {self.cfg.block_size}")
        x = self.embed(idx)
        attention = []
        for block in self.blocks:
            x, weights = block(x, explicit=return_attention)
            if weights is not None:
                attention.append(weights)
        logits = self.head(self.norm_f(x))  # (B, T, V)
        return logits, attention
