"""What a user asks for, checked before any work and without torch: sampling options, a layer or head index,
a seed, a path, the kind of picture file. The command bodies check their requests here before they import
torch, so a mistyped option is answered at once rather than after torch has loaded; the Python API checks its
arguments here too, so a wrong type or size is one attnlm error rather than whatever torch raises.

Every check takes the argument's name as the caller wrote it: `max_new_tokens` for a Python caller,
`--max-new-tokens` at the CLI (`cli_option` spells it), so each surface hears its own words from one check.
"""

from __future__ import annotations

import errno
import math
import numbers
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlm.config import MAX_SEED, check_device_name
from attnlm.errors import ArgumentTypeError, ArgumentValueError, UserError, clipped, got

# One call generates at most this many characters. Each is a forward step of the model (about a millisecond
# for a small model on a CPU) and the text is returned whole, so a million is minutes of work and a few MB;
# a larger request is almost always a slip (1e9 for 1e3), and a long text can be drawn in several calls that
# share one `generator`.
MAX_NEW_TOKENS = 1_000_000

Spelling = Callable[[str], str]


def python_name(name: str) -> str:
    """An argument as a Python caller writes it: the keyword itself."""
    return name


def cli_option(name: str) -> str:
    """An argument as the command line spells it: `max_new_tokens` -> `--max-new-tokens`."""
    return "--" + name.replace("_", "-")


def _is_bool(value: object) -> bool:
    """True and False, and a boolean array's element (a 0-d torch bool tensor would pass as an index)."""
    return isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool")


def need_int(name: str, value: object, kind: str) -> int:
    """`value` as an int, or an ArgumentTypeError saying what `name` must be (`kind`, e.g. "an int >= 0").
    Anything Python treats as an index counts (numpy and 0-d torch integers); bool does not, though Python
    counts True as 1: a flag passed as a count is a slip."""
    if _is_bool(value) or not hasattr(type(value), "__index__"):
        raise ArgumentTypeError(f"{name} must be {kind}, got {got(value)}")
    try:
        return operator.index(value)
    except TypeError:  # a tensor of several elements has __index__ but refuses it
        raise ArgumentTypeError(f"{name} must be {kind}, got {got(value)}") from None


def need_number(name: str, value: object, kind: str) -> float:
    """`value` as a float (ints and numpy numbers count; bool does not), or an ArgumentTypeError. An int too
    large for a float becomes inf, which the range checks then refuse by name."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {kind}, got {got(value)}")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def shown_number(value: object, number: float) -> str:
    """A number as a message quotes it: as given when it is an int (cut short), else as the float it became."""
    return clipped(value) if isinstance(value, int) else repr(number)


def need_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be True or False, got {got(value)}")
    return value


def need_str(name: str, value: object, what: str = "a str") -> str:
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be {what}, got {got(value)}")
    return value


def check_seed(name: str, value: object) -> int:
    """A seed torch takes: 0 to 2**64 - 1 (torch's seeds are unsigned 64-bit)."""
    kind = "an int from 0 to 2**64 - 1"
    seed = need_int(name, value, kind)
    if not 0 <= seed <= MAX_SEED:
        raise ArgumentValueError(f"{name} must be {kind} (the seeds torch takes), got {clipped(seed)}")
    return seed


def check_port(name: str, value: object) -> int:
    """A TCP port to serve on; 0 lets the system pick a free one."""
    port = need_int(name, value, "an int from 0 to 65535")
    if not 0 <= port <= 65535:
        raise ArgumentValueError(f"{name} must be between 0 and 65535, got {clipped(port)}; 0 takes any free port")
    return port


def check_path(name: str, value: object) -> Path:
    """A str or os.PathLike naming a file or folder this system could have (not empty, no NUL, encodable,
    each name short enough); whether it exists is the caller's next question."""
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(f"{name} must be a path (a str or pathlib.Path), got {got(value)}")
    try:
        text = os.fspath(value)
    except TypeError:
        text = None
    if not isinstance(text, str):
        raise ArgumentTypeError(f"{name} must be a path (a str or pathlib.Path), got {got(value)}")
    if not text:
        raise ArgumentValueError(f"{name} is an empty path; give a file or folder, e.g. 'runs/tiny'")
    if "\0" in text:
        raise ArgumentValueError(f"{name} {clipped(text)} has a NUL character, which no file name can hold")
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        raise ArgumentValueError(f"{name} {clipped(text)} cannot be a file name here: it has characters this "
                                 "system's file names cannot encode") from None
    try:
        os.stat(text)
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise ArgumentValueError(f"{name} {clipped(text)} cannot be a file name here ({e.strerror}); "
                                     "give a shorter path") from None
    return Path(text)


def check_text(name: str, value: object) -> str:
    """Text the model reads: a str (its characters are checked against the vocabulary where it is encoded)."""
    return need_str(name, value, "a str")


@dataclass
class SamplingOptions:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def check(self, spell: Spelling = python_name) -> SamplingOptions:
        """The options with their types made plain (a numpy number becomes a float or int), or the error that
        names the option as `spell` writes it."""
        name = spell("temperature")
        temperature = need_number(name, self.temperature, "a number > 0")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ArgumentValueError(f"{name} must be > 0, got {shown_number(self.temperature, temperature)}")
        top_k = self.top_k
        if top_k is not None:
            name = spell("top_k")
            top_k = need_int(name, top_k, "an int >= 1 or None")
            if top_k < 1:
                raise ArgumentValueError(f"{name} must be at least 1, got {clipped(top_k)}")
        top_p = self.top_p
        if top_p is not None:
            name = spell("top_p")
            top_p = need_number(name, top_p, "a number in (0, 1] or None")
            if not 0 < top_p <= 1:
                raise ArgumentValueError(f"{name} must be in (0, 1], got {shown_number(self.top_p, top_p)}")
        return SamplingOptions(temperature, top_k, top_p)


def check_sampling(opts: SamplingOptions, max_new_tokens: Any,
                   spell: Spelling = python_name) -> tuple[SamplingOptions, int]:
    """What every sampling request must hold (`attnlm sample`, Model.generate, the explorer's continuation):
    the options and the length, with their types made plain."""
    opts = opts.check(spell)
    name = spell("max_new_tokens")
    n = need_int(name, max_new_tokens, f"an int from 0 to {MAX_NEW_TOKENS:,}")
    if n < 0:
        raise ArgumentValueError(f"{name} must be >= 0, got {clipped(n)}")
    if n > MAX_NEW_TOKENS:
        raise ArgumentValueError(f"{name} must be at most {MAX_NEW_TOKENS:,}, got {clipped(n)}; ask for fewer characters, "
                                 "or continue the text in several calls")
    return opts, n


def check_request(opts: SamplingOptions, max_new_tokens: int, num_samples: int, prompt: str | None,
                  device_name: str, seed: int = 0) -> None:
    """`attnlm sample`'s options, in the order a user reads them; whether the device exists is device.py's."""
    check_sampling(opts, max_new_tokens, cli_option)
    if num_samples < 1:
        raise ArgumentValueError(f"--num-samples must be at least 1, got {num_samples}")
    if prompt == "":
        raise ArgumentValueError("--prompt is empty; give at least one character, or leave it out to start from a "
                                 "newline")
    check_seed("--seed", seed)
    check_device_name(device_name, "--device")


def check_index(name: str, value: object, count: int, unit: str, owner: str = "the model") -> int:
    """An index of one of `owner`'s `count` `unit`s (a layer, a head, a query position), named as the caller
    wrote it (`layer`, `--layer`)."""
    plural = "s" if count != 1 else ""
    index = need_int(name, value, f"an int from 0 to {count - 1}" if count else "an int")
    if not 0 <= index < count:
        raise ArgumentValueError(f"{name} {clipped(index)} is out of range: {owner} has {count} {unit}{plural} "
                                 f"(0 to {count - 1}); pick one of those")
    return index


def check_png(option: str, path: Path) -> None:
    """Pictures are written as PNG; say so before any work is done."""
    if path.suffix.lower() != ".png":
        raise UserError(f"{option} {path}: the heat map is written as PNG; give a file name ending in .png")
