"""The Python API's own argument checks, for what only it takes (a torch device or generator, a rich Console,
training's switches); the checks every surface shares (counts, seeds, paths, sampling, indexes) are in
attnlm.checks and the overrides' in attnlm.config. Each raises before any work, so a wrong argument changes
nothing on disk."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from rich.console import Console

from attnlm.checks import check_path, need_bool, need_str
from attnlm.config import ConfigSource, check_overrides
from attnlm.data.sources import Spec
from attnlm.device import resolve_device
from attnlm.errors import ArgumentTypeError, ArgumentValueError, got
from attnlm.store.run_dir import check_resumable


def check_device(device: object) -> torch.device:
    """A device name (as train.device takes it) or a torch.device, as the torch.device it names."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ArgumentTypeError(f"device must be a device name ('cpu', 'cuda', 'cuda:N', 'mps', 'auto') or a "
                                f"torch.device, got {got(device)}")
    return resolve_device(device, "device")


def check_data(data: object) -> Spec:
    """`data` of Model.evaluate: a path, or a non-empty list of them (files, folders, globs)."""
    if isinstance(data, (str, os.PathLike)):
        check_path("data", data)
        return data
    if not isinstance(data, (list, tuple)):
        raise ArgumentTypeError(f"data must be a path (str or pathlib.Path) or a list of them, got {got(data)}")
    if not data:
        raise ArgumentValueError("data is an empty list; give at least one file, folder or glob")
    for i, item in enumerate(data):
        check_path(f"data[{i}]", item)
    return list(data)


def check_config(config: object) -> None:
    """A config: a YAML path, a mapping of sections or a Config (the kinds config_from_source tells apart)."""
    if isinstance(config, (str, os.PathLike)):
        check_path("config", config)


def check_console(console: object) -> None:
    if console is not None and not isinstance(console, Console):
        raise ArgumentTypeError(f"console must be a rich.console.Console or None, got {got(console)}")


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    need_str(name, value, f"one of {', '.join(map(repr, choices))}")
    if value not in choices:
        raise ArgumentValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_training(config: ConfigSource, overrides: Sequence[str], *, name: str | None, overwrite: bool,
                   console: Console | None, exit_on_second_interrupt: bool) -> list[str]:
    """train()'s arguments; returns the overrides as a list."""
    check_config(config)
    overrides = check_overrides(overrides)
    if name is not None and not need_str("name", name, "a run name (a str) or None"):
        raise ArgumentValueError("name is empty; give a run name, or leave it out to use the config's log.name")
    need_bool("overwrite", overwrite)
    check_console(console)
    need_bool("exit_on_second_interrupt", exit_on_second_interrupt)
    return overrides


def check_resuming(run_dir: object, overrides: Sequence[str], *, config: object, console: Console | None,
                   exit_on_second_interrupt: bool) -> list[str]:
    """resume()'s arguments; returns the overrides as a list."""
    check_resumable(check_path("run_dir", run_dir), "attnlm.train(config, overwrite=True)")
    overrides = check_overrides(overrides)
    if config is not None:
        check_path("config", config)
    check_console(console)
    need_bool("exit_on_second_interrupt", exit_on_second_interrupt)
    return overrides
