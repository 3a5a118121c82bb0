"""scripts/install_torch.py, which `make install` runs: a CPU index it cannot reach costs no time, and it
names the build it installed."""

from __future__ import annotations

import sys
import time

import torch
from run_helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import install_torch  # noqa: E402


def test_an_unreachable_index_is_detected_at_once() -> None:
    start = time.monotonic()
    why = install_torch.unreachable("http://127.0.0.1:9/whl/cpu/torch/")  # nothing listens on the discard port
    assert why is not None and "Connection refused" in why, why
    # Real time is the point: a refused connection must not cost the probe's TIMEOUT (5 s); it takes milliseconds.
    assert time.monotonic() - start < install_torch.TIMEOUT


def test_it_names_the_build_in_the_environment() -> None:
    build = install_torch.installed_build()
    assert build.startswith(f"torch {torch.__version__} in {sys.prefix}: the ")
    assert build.endswith(f"the CUDA {torch.version.cuda} build" if torch.version.cuda else "the CPU build")
