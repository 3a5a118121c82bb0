"""Picking the device and the autocast precision."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from attnlm.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"train.device is '{name}' but CUDA is not available here; use --set train.device=cpu")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"train.device is '{name}' but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Whether the CPU does bf16 matmuls natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(device: torch.device, precision: str) -> bool:
    if precision == "fp32":
        return False
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise UserError("train.precision is bf16 but this GPU does not support it; use fp32")
        return supported
    if precision == "bf16":
        if not cpu_has_bf16():
            raise UserError("train.precision is bf16 but this CPU has no native bf16 (AVX512-BF16/AMX); use fp32")
        return True
    # auto on CPU stays fp32 so results do not depend on the CPU model; bf16 is opt-in although it measured
    # 1.3-1.5x the tokens/s of fp32 on an AVX512-BF16 EPYC (README, Performance).
    return False


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def eager() -> contextlib.AbstractContextManager:
    """Run compiled modules eagerly: evaluation and sampling use other shapes and no autograd, so with
    train.compile they would each trigger a fresh compile (measured ~10 s on 2 cores) for one pass."""
    set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


def trust_cpu_isa_flags() -> None:
    """Before its first CPU kernel, torch.compile proves every vector ISA that /proc/cpuinfo lists by
    compiling and loading a test program for each: measured 6.7 s on 2 cores with an empty compile cache,
    about a tenth of a 67 s speedrun. The flags already say which ISAs the CPU has, so the probe is skipped
    unless TORCHINDUCTOR_VEC_ISA_OK is set (=0 brings it back, e.g. for a compiler too old for AVX-512)."""
    if "TORCHINDUCTOR_VEC_ISA_OK" not in os.environ:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.vec_isa_ok = True
