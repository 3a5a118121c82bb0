"""Picking the device and the autocast precision."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from attnlm.config import check_device_name
from attnlm.errors import UserError


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """The device a name stands for: auto picks CUDA, else Apple's MPS, else the CPU. `what` names the
    setting in messages (train.device, --device). A typo or a device this machine lacks is a UserError."""
    check_device_name(name, what)
    if name == "auto":
        return auto_device()
    # How to ask for the CPU instead, in the words of the setting: an option, a config key or an API argument.
    fix = f"use {what} cpu" if what.startswith("--") else f"set {what} to cpu" if "." in what else f"use {what}='cpu'"
    if name == "mps":
        if not mps_available():
            raise UserError(f"{what} is 'mps' but Apple's MPS is not available here (it needs a Mac with Apple "
                            f"silicon and macOS 12.3 or newer); {fix}")
        return torch.device("mps")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{what} is '{name}' but CUDA is not available here; {fix}")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"{what} is '{name}' but only {torch.cuda.device_count()} CUDA device(s) exist "
                            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        return device
    return torch.device("cpu")


def auto_device() -> torch.device:
    # Spelled out rather than torch.accelerator.current_accelerator(): that needs torch >= 2.6 (the pyproject
    # range starts at 2.4) and would also hand out backends (XPU, ...) attnlm has never been run on.
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def mps_available() -> bool:
    """Apple's Metal GPU backend: a Mac with Apple silicon and a PyTorch built with MPS."""
    return torch.backends.mps.is_available()


def mps_has_bf16() -> bool:
    """bf16 autocast on MPS came with PyTorch 2.6 and needs macOS 14 (Metal's bfloat16 type)."""
    return (mps_available() and torch.__version__ >= "2.6" and torch.backends.mps.is_macos_or_newer(14, 0))


def compile_supported(device: torch.device) -> bool:
    """torch.compile's Metal backend is a prototype in PyTorch 2.x and attnlm has not been run with it on a
    Mac, so train.compile leaves MPS eager (the trainer says so) rather than risk a failed or wrong compile."""
    return device.type != "mps"


def use_compile(device: torch.device, setting: bool | str, bf16: bool) -> bool:
    """Whether train.compile compiles here; never on MPS (compile_supported). Its auto compiles on CUDA, and on
    a CPU under bf16 autocast, where inductor fuses the casts and the step got faster than the compile cost. In
    fp32 on a CPU it did not pay: in a time-budgeted run the compile cost more steps than the faster step won
    back, and the compiled run ended at a worse val loss."""
    if setting == "auto":
        return device.type == "cuda" or (device.type == "cpu" and bf16)
    return bool(setting) and compile_supported(device)


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
    if device.type == "mps":
        if precision == "bf16" and not mps_has_bf16():
            raise UserError("train.precision is bf16 but bf16 autocast on MPS needs PyTorch >= 2.6 and macOS 14; "
                            "use fp32")
        # auto stays fp32: M1/M2 chips emulate bf16 in fp32 (no speed-up), so bf16 is opt-in there.
        return precision == "bf16"
    if precision == "bf16" and not cpu_has_bf16():
        raise UserError("train.precision is bf16 but this CPU has no native bf16 (AVX512-BF16/AMX); use fp32")
    # auto: bf16 where the CPU does it natively (measured more tokens/s than fp32, see docs/records.md);
    # emulated bf16 elsewhere is slower than fp32.
    return cpu_has_bf16()


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def eager() -> contextlib.AbstractContextManager:
    """Run compiled modules eagerly: evaluation and sampling use other shapes and no autograd, so with
    train.compile they would each trigger a fresh compile, costing far more than the one pass it serves."""
    set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


def trust_cpu_isa_flags() -> None:
    """Before its first CPU kernel, torch.compile proves every vector ISA that /proc/cpuinfo lists by
    compiling and loading a test program for each, which with an empty compile cache is a noticeable share
    of a short time-budgeted run. The flags already say which ISAs the CPU has, so the probe is skipped
    unless TORCHINDUCTOR_VEC_ISA_OK is set (=0 brings it back, e.g. for a compiler too old for AVX-512)."""
    if "TORCHINDUCTOR_VEC_ISA_OK" not in os.environ:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.vec_isa_ok = True
