"""torch.compile on CPU trusts the CPU's ISA flags unless the user says otherwise."""

from __future__ import annotations

import pytest
import torch._inductor.config as inductor_config

from attnlm.device import trust_cpu_isa_flags


def test_isa_probe_is_skipped_unless_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inductor_config.cpp, "vec_isa_ok", None)
    monkeypatch.setenv("TORCHINDUCTOR_VEC_ISA_OK", "0")
    trust_cpu_isa_flags()
    assert inductor_config.cpp.vec_isa_ok is None  # the user's choice stands: inductor probes
    monkeypatch.delenv("TORCHINDUCTOR_VEC_ISA_OK")
    trust_cpu_isa_flags()
    assert inductor_config.cpp.vec_isa_ok is True
