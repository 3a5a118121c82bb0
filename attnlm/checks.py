"""What a user asks for, checked before any work and without torch: sampling options, a layer or head index,
the kind of picture file. The command bodies check their requests here before they import torch, so a mistyped
option is answered at once rather than after torch has loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from attnlm.config import check_device_name
from attnlm.errors import UserError


@dataclass
class SamplingOptions:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def check(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise UserError(f"--temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")


def check_sampling(opts: SamplingOptions, max_new_tokens: int) -> None:
    """What every sampling request must hold (`attnlm sample`, Model.generate, the explorer's continuation)."""
    opts.check()
    if max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")


def check_request(opts: SamplingOptions, max_new_tokens: int, num_samples: int, prompt: str | None,
                  device_name: str) -> None:
    """`attnlm sample`'s options, in the order a user reads them; whether the device exists is device.py's."""
    check_sampling(opts, max_new_tokens)
    if num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {num_samples}")
    if prompt == "":
        raise UserError("--prompt is empty; give at least one character, or leave it out to start from a newline")
    check_device_name(device_name, "--device")


def check_index(what: str, value: int, count: int) -> None:
    """--layer / --head within the model's range."""
    if not 0 <= value < count:
        plural = "s" if count != 1 else ""
        raise UserError(f"--{what} {value} is out of range: the model has {count} {what}{plural} "
                        f"(0 to {count - 1}); pick one of those")


def check_png(option: str, path: Path) -> None:
    """Pictures are written as PNG; say so before any work is done."""
    if path.suffix.lower() != ".png":
        raise UserError(f"{option} {path}: the heat map is written as PNG; give a file name ending in .png")
