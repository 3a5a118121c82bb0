"""Which device a name picks, the errors for typos and absent devices, precision and compile per device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._inductor.config as inductor_config
from rich.console import Console

from attnlm.api.attention import attention
from attnlm.api.evaluate import eval_
from attnlm.api.sample import sample
from attnlm.api.trace import trace
from attnlm.checks import SamplingOptions
from attnlm.config import load_config
from attnlm.device import compile_supported, resolve_device, trust_cpu_isa_flags, use_bf16, use_compile
from attnlm.errors import UserError

CHOICES = "must be one of auto, cpu, cuda, cuda:N or mps"


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("name, present, why", [
    ("cuda", torch.cuda.is_available(), "CUDA is not available here"),
    ("cuda:0", torch.cuda.is_available(), "CUDA is not available here"),
    ("mps", torch.backends.mps.is_available(), r"Apple's MPS is not available here \(it needs a Mac with Apple "
                                               r"silicon and macOS 12\.3 or newer\)"),
])
def test_an_absent_device_is_one_clear_error(name: str, present: bool, why: str) -> None:
    if present:
        assert resolve_device(name).type == name.split(":")[0]
        return
    with pytest.raises(UserError, match=rf"^train\.device is '{name}' but {why}; set train\.device to cpu$"):
        resolve_device(name)
    with pytest.raises(UserError, match=rf"^--device is '{name}' but {why}; use --device cpu$"):
        resolve_device(name, "--device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_index_past_the_last_is_an_error() -> None:
    n = torch.cuda.device_count()
    with pytest.raises(UserError, match=rf"^train\.device is 'cuda:{n}' but only {n} CUDA device\(s\) exist"):
        resolve_device(f"cuda:{n}")


@pytest.mark.parametrize("name", ["gpu", "CPU", "cuda0", "cuda:", "cuda:x", "mps:0", "metal", "cuda:-1"])
def test_a_device_typo_names_the_choices(name: str) -> None:
    with pytest.raises(UserError, match=rf"^--device {CHOICES}, got '{name}'"):
        resolve_device(name, "--device")
    with pytest.raises(UserError, match=rf"^config key 'train\.device' {CHOICES}, got '{name}'"):
        load_config(Path("configs/tiny.yaml"), [f"train.device={name}"])


def test_config_accepts_every_device_kind() -> None:
    for name in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert load_config(Path("configs/tiny.yaml"), [f"train.device={name}"]).train.device == name


@pytest.mark.parametrize("command", ["sample", "eval", "trace", "attention"])
def test_every_device_option_refuses_a_typo(command: str) -> None:
    """Before anything is loaded: no run or checkpoint exists for these calls."""
    console, nowhere = Console(quiet=True), "no/such/run"
    calls = {
        "sample": lambda: sample(run=nowhere, checkpoint=None, prompt=None, max_new_tokens=1,
                                          opts=SamplingOptions(), num_samples=1, seed=0, device_name="cuda1"),
        "eval": lambda: eval_(run=nowhere, checkpoint=None, data=None, device_name="cuda1", console=console),
        "trace": lambda: trace(run=nowhere, checkpoint=None, config=None, overrides=[], text="ab", layer=0,
                                       head=0, device="cuda1", console=console),
        "attention": lambda: attention(run=nowhere, checkpoint=None, config=None, overrides=[], text="ab",
                                               layer=0, head=None, mean=False, words=False, graph=None,
                                               min_weight=0.1, heatmap=None, device="cuda1", console=console),
    }
    with pytest.raises(UserError, match=rf"^--device {CHOICES}, got 'cuda1' \(did you mean 'cuda'\?\)$"):
        calls[command]()


def test_mps_precision_and_compile() -> None:
    mps = torch.device("mps")
    assert not use_bf16(mps, "auto") and not use_bf16(mps, "fp32")  # fp32 unless asked: M1/M2 emulate bf16
    if not torch.backends.mps.is_available():
        with pytest.raises(UserError, match=r"bf16 autocast on MPS needs PyTorch >= 2\.6 and macOS 14; use fp32"):
            use_bf16(mps, "bf16")
    assert not compile_supported(mps)
    assert compile_supported(torch.device("cpu"))


def test_compile_auto_compiles_on_cuda_and_under_cpu_bf16_only() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [use_compile(cpu, "auto", bf16) for bf16 in (False, True)] == [False, True]
    assert use_compile(cuda, "auto", bf16=False)
    assert use_compile(cpu, True, bf16=False) and not use_compile(cuda, False, bf16=True)
    assert not any(use_compile(torch.device("mps"), setting, bf16=True) for setting in (True, "auto"))


def test_isa_probe_is_skipped_unless_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inductor_config.cpp, "vec_isa_ok", None)
    monkeypatch.setenv("TORCHINDUCTOR_VEC_ISA_OK", "0")
    trust_cpu_isa_flags()
    assert inductor_config.cpp.vec_isa_ok is None  # the user's choice stands: inductor probes
    monkeypatch.delenv("TORCHINDUCTOR_VEC_ISA_OK")
    trust_cpu_isa_flags()
    assert inductor_config.cpp.vec_isa_ok is True
