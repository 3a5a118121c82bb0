"""The optimizers (AdamW, or Muon on the blocks' matrices beside AdamW) and the learning-rate schedules
(warmup, then cosine or WSD)."""

from __future__ import annotations

import math
from typing import Any

import torch

from attnlm.config import TrainConfig
from attnlm.device import cpu_has_bf16


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer | MuonAdamW:
    """AdamW for every parameter, or with cfg.optimizer == "muon" Muon for the hidden weight matrices of
    the blocks and AdamW for the rest; the embeddings at their own rate where cfg.embedding_lr is set. Every
    param group carries `lr_scale`: its peak learning rate as a multiple of cfg.lr, which the trainer's
    schedule multiplies each step."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # Muon orthogonalises a matrix's update, which suits the maps between hidden states; embeddings and the
    # head map to and from one-hot characters, and norm gains and biases are vectors: those stay on AdamW.
    hidden = [p for n, p in params if cfg.optimizer == "muon" and n.startswith("blocks.") and p.dim() == 2]
    rest = [(n, p) for n, p in params if not any(p is h for h in hidden)]
    # A row of an embedding gets a gradient only from the windows that hold its character, so a larger step
    # than the other matrices' can pay (train.embedding_lr).
    embeddings = [p for n, p in rest if cfg.embedding_lr is not None and n.startswith(("tok_emb.", "pair_emb.", "pos_emb."))]
    # Norm gains and biases are vectors; decaying them toward 0 only hurts, so they get no decay.
    decay = [p for _, p in rest if p.dim() >= 2 and not any(p is e for e in embeddings)]
    no_decay = [p for _, p in rest if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
    if embeddings:  # last: param_groups[0] is the one whose lr the table reports as train.lr
        scale = cfg.embedding_lr / cfg.lr
        groups.append({"params": embeddings, "weight_decay": cfg.weight_decay, "lr_scale": scale, "lr": cfg.lr * scale})
    # The fused kernel: one pass over all parameters instead of ~10 small ops each; for a small model, whose
    # step is dominated by per-op overhead, it measured several times faster than the per-tensor loop.
    adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type in ("cuda", "cpu"))
    if not hidden:
        return adamw
    muon = Muon([{"params": hidden, "lr_scale": cfg.muon_lr / cfg.lr}], lr=cfg.muon_lr, momentum=cfg.muon_momentum,
                weight_decay=cfg.muon_weight_decay, ns_dtype=newton_schulz_dtype(device))
    return MuonAdamW(muon, adamw)


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """bf16 where its matmuls are native (CUDA, or a CPU with AVX512-BF16/AMX); fp32 elsewhere, where a bf16
    matmul is emulated and many times slower than fp32, enough for Muon's update to dominate a training step."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return torch.bfloat16
    return torch.float32


def orthogonalize(g: torch.Tensor, steps: int, coefficients: tuple[float, float, float], eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """Newton-Schulz: each matrix's nearest semi-orthogonal matrix, roughly (U S' V^T with S' ~ 1 rather than
    U V^T), computed in `dtype`. g: (N, m, n), a stack of same-shaped matrices done together. The quintic
    X <- aX + (bA + cA^2)X with A = X X^T is torch.optim.Muon's, step for step."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT  # iterate on the wide side: A = X X^T is then the smaller square
    x = x / x.flatten(1).norm(dim=1).clamp(min=eps)[:, None, None]  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.mT                                          # A = X X^T
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # bA + cA^2
        x = torch.baddbmm(x, poly, x, beta=a)                    # aX + (bA + cA^2) X
    return x.mT if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon (momentum, Nesterov, then each matrix's update orthogonalized) with the Newton-Schulz
    iteration in `ns_dtype`: torch's always iterates in bf16. Same state and state_dict as torch's, so
    checkpoints move between the two; with ns_dtype=bf16 the updates are torch's bit for bit (tested)."""

    def __init__(self, params: Any, *, ns_dtype: torch.dtype = torch.bfloat16, **kwargs: Any) -> None:
        if kwargs.get("adjust_lr_fn") not in (None, "original"):
            raise ValueError("attnlm's Muon scales the learning rate as torch's default ('original') does only")
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype  # not a group hyperparameter: saved optimizer states from torch's Muon still load

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002 - the trainer never passes a closure
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            # Matrices of one shape go through Newton-Schulz as one stack: 3 batched products per iteration
            # for each shape instead of 3 per matrix: fewer, larger kernels, measured faster on CPU.
            by_shape: dict[torch.Size, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                by_shape.setdefault(p.shape, []).append((p, update))
            for (rows, cols), pairs in by_shape.items():
                updates = orthogonalize(torch.stack([u for _, u in pairs]), group["ns_steps"],
                                        group["ns_coefficients"], group["eps"], self.ns_dtype)
                scale = math.sqrt(max(1.0, rows / cols))  # torch's default ("original") lr adjustment
                for (p, _), update in zip(pairs, updates, strict=True):
                    p.mul_(1 - lr * group["weight_decay"])
                    p.add_(update, alpha=-lr * scale)


class MuonAdamW:
    """Muon and AdamW behind one optimizer's surface (step, zero_grad, param_groups, state_dict), so the
    trainer, its schedule and its checkpoints treat the pair as one optimizer."""

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW) -> None:
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.adamw.param_groups + self.muon.param_groups  # AdamW's first: [0] reports train.lr

    def step(self) -> None:
        self.adamw.step()
        self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adamw.load_state_dict(state["adamw"])
        self.muon.load_state_dict(state["muon"])


def skip_update_if(optimizer: torch.optim.Optimizer | MuonAdamW, found_inf: torch.Tensor) -> None:
    """Hand a fused AdamW (CUDA) the step's found_inf (1.0: a non-finite loss or gradient norm): it then
    skips its update on the device, with no host sync. Other optimizers update; the NaN guard stops the
    run before anything of that step is saved."""
    adamw = optimizer.adamw if isinstance(optimizer, MuonAdamW) else optimizer
    if adamw.defaults.get("fused"):
        adamw.found_inf = found_inf


