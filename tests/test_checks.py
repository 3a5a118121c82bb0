"""The request checks in attnlm/checks.py, called directly: each boundary on both sides and each message word
for word, as the CLI and Python callers read them. (The CLI tests reach these too, but through a subprocess,
where a changed message is only one of many lines a test could miss.)"""

from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from pathlib import Path

import pytest

from attnlm.checks import (
    MAX_NEW_TOKENS,
    SamplingOptions,
    check_index,
    check_path,
    check_png,
    check_port,
    check_request,
    check_sampling,
    check_seed,
    cli_option,
    need_bool,
    need_int,
    need_number,
    need_str,
    python_name,
    shown_number,
)
from attnlm.config import MAX_SEED
from attnlm.errors import ArgumentTypeError, ArgumentValueError, UserError


def raises(cls: type[Exception], message: str):
    return pytest.raises(cls, match="^" + re.escape(message) + "$")


def test_argument_names_are_spelt_for_each_surface() -> None:
    assert cli_option("max_new_tokens") == "--max-new-tokens"
    assert cli_option("seed") == "--seed"
    assert python_name("max_new_tokens") == "max_new_tokens"


# ----- sampling ---------------------------------------------------------------------------------------------
def test_sampling_boundaries_are_accepted_and_made_plain() -> None:
    opts, n = check_sampling(SamplingOptions(temperature=1, top_k=1, top_p=1), 0)
    assert opts == SamplingOptions(1.0, 1, 1.0) and type(opts.temperature) is float and n == 0
    assert check_sampling(SamplingOptions(), MAX_NEW_TOKENS)[1] == MAX_NEW_TOKENS
    assert SamplingOptions(temperature=1e-9, top_p=1e-9).check() == SamplingOptions(1e-9, None, 1e-9)


@pytest.mark.parametrize(("opts", "n", "cls", "message"), [
    (SamplingOptions(temperature=0), 5, ArgumentValueError, "temperature must be > 0, got 0"),
    (SamplingOptions(temperature=-0.5), 5, ArgumentValueError, "temperature must be > 0, got -0.5"),
    (SamplingOptions(temperature=math.inf), 5, ArgumentValueError, "temperature must be > 0, got inf"),
    (SamplingOptions(temperature=math.nan), 5, ArgumentValueError, "temperature must be > 0, got nan"),
    (SamplingOptions(temperature="1"), 5, ArgumentTypeError, "temperature must be a number > 0, got '1' (str)"),
    (SamplingOptions(top_k=0), 5, ArgumentValueError, "top_k must be at least 1, got 0"),
    (SamplingOptions(top_k=2.0), 5, ArgumentTypeError, "top_k must be an int >= 1 or None, got 2.0 (float)"),
    (SamplingOptions(top_p=0), 5, ArgumentValueError, "top_p must be in (0, 1], got 0"),
    (SamplingOptions(top_p=1.0000001), 5, ArgumentValueError, "top_p must be in (0, 1], got 1.0000001"),
    (SamplingOptions(top_p=True), 5, ArgumentTypeError, "top_p must be a number in (0, 1] or None, got True (bool)"),
    (SamplingOptions(), -1, ArgumentValueError, "max_new_tokens must be >= 0, got -1"),
    (SamplingOptions(), MAX_NEW_TOKENS + 1, ArgumentValueError,
     f"max_new_tokens must be at most 1,000,000, got {MAX_NEW_TOKENS + 1}; ask for fewer characters, "
     "or continue the text in several calls"),
    (SamplingOptions(), "5", ArgumentTypeError, "max_new_tokens must be an int from 0 to 1,000,000, got '5' (str)"),
])
def test_each_sampling_mistake_is_one_error_naming_the_python_argument(opts: SamplingOptions, n: object,
                                                                      cls: type[Exception], message: str) -> None:
    with raises(cls, message):
        check_sampling(opts, n)


def test_the_cli_spelling_reaches_every_sampling_message() -> None:
    with raises(ArgumentValueError, "--top-k must be at least 1, got 0"):
        check_sampling(SamplingOptions(top_k=0), 5, cli_option)
    with raises(ArgumentValueError, "--max-new-tokens must be >= 0, got -3"):
        check_sampling(SamplingOptions(), -3, cli_option)


# ----- attnlm sample's request ------------------------------------------------------------------------------
def test_a_good_sample_request_passes() -> None:
    check_request(SamplingOptions(0.8, 5, 0.9), 0, 1, None, "cpu")
    check_request(SamplingOptions(), 10, 3, "A", "auto", seed=MAX_SEED)


@pytest.mark.parametrize(("args", "cls", "message"), [
    ((SamplingOptions(top_p=2), 5, 1, None, "cpu"), ArgumentValueError, "--top-p must be in (0, 1], got 2"),
    ((SamplingOptions(), -1, 1, None, "cpu"), ArgumentValueError, "--max-new-tokens must be >= 0, got -1"),
    ((SamplingOptions(), 5, 0, None, "cpu"), ArgumentValueError, "--num-samples must be at least 1, got 0"),
    ((SamplingOptions(), 5, 1, "", "cpu"), ArgumentValueError,
     "--prompt is empty; give at least one character, or leave it out to start from a newline"),
    ((SamplingOptions(), 5, 1, None, "cpu", -1), ArgumentValueError,
     "--seed must be an int from 0 to 2**64 - 1 (the seeds torch takes), got -1"),
])
def test_each_sample_request_mistake_names_its_option(args: tuple, cls: type[Exception], message: str) -> None:
    with raises(cls, message):
        check_request(*args)


def test_the_sample_request_checks_its_options_in_the_order_they_are_read() -> None:
    """Several mistakes at once: the user hears about the first option of the command line first."""
    with raises(ArgumentValueError, "--temperature must be > 0, got 0"):
        check_request(SamplingOptions(temperature=0), -1, 0, "", "cpu", -1)
    with raises(ArgumentValueError, "--num-samples must be at least 1, got 0"):
        check_request(SamplingOptions(), 5, 0, "", "cpu", -1)
    with raises(ArgumentValueError, "--prompt is empty; give at least one character, or leave it out to start "
                                    "from a newline"):
        check_request(SamplingOptions(), 5, 1, "", "cpu", -1)


def test_the_sample_request_checks_the_device_name() -> None:
    with pytest.raises(UserError, match="--device"):
        check_request(SamplingOptions(), 5, 1, None, "gpu0")


# ----- numbers, seeds, ports, paths ---------------------------------------------------------------------------
def test_seeds_span_exactly_what_torch_takes() -> None:
    assert check_seed("seed", 0) == 0 and check_seed("seed", MAX_SEED) == MAX_SEED == 2**64 - 1
    with raises(ArgumentValueError, "seed must be an int from 0 to 2**64 - 1 (the seeds torch takes), got "
                                    "18446744073709551616"):
        check_seed("seed", 2**64)
    with raises(ArgumentTypeError, "seed must be an int from 0 to 2**64 - 1, got 1.0 (float)"):
        check_seed("seed", 1.0)


def test_ports_span_0_to_65535() -> None:
    assert check_port("port", 0) == 0 and check_port("port", 65535) == 65535
    with raises(ArgumentValueError, "port must be between 0 and 65535, got 65536; 0 takes any free port"):
        check_port("port", 65536)
    with raises(ArgumentValueError, "--port must be between 0 and 65535, got -1; 0 takes any free port"):
        check_port("--port", -1)


def test_counts_refuse_bools_and_non_integers() -> None:
    assert need_int("n", 3, "an int") == 3
    for bad, shown in ((True, "True (bool)"), (3.0, "3.0 (float)"), ("3", "'3' (str)"), (None, "None (NoneType)")):
        with raises(ArgumentTypeError, f"n must be an int, got {shown}"):
            need_int("n", bad, "an int")


def test_numbers_take_ints_and_floats_and_refuse_the_rest() -> None:
    assert need_number("x", 2, "a number") == 2.0 and need_number("x", 0.5, "a number") == 0.5
    assert need_number("x", 10**400, "a number") == math.inf and need_number("x", -(10**400), "a number") == -math.inf
    with raises(ArgumentTypeError, "x must be a number, got False (bool)"):
        need_number("x", False, "a number")
    assert shown_number(7, 7.0) == "7" and shown_number(0.25, 0.25) == "0.25"
    assert shown_number(Fraction(1, 4), 0.25) == "0.25"  # a number that is not an int is quoted as the float it became


def test_flags_and_strings_take_only_their_type() -> None:
    assert need_bool("flag", False) is False
    with raises(ArgumentTypeError, "flag must be True or False, got 1 (int)"):
        need_bool("flag", 1)
    assert need_str("text", "") == ""
    with raises(ArgumentTypeError, "text must be a str, got b'a' (bytes)"):
        need_str("text", b"a")


def test_paths_are_checked_before_the_file_system_is_asked(tmp_path: Path) -> None:
    assert check_path("run", str(tmp_path)) == tmp_path and check_path("run", tmp_path) == tmp_path
    assert check_path("run", "does/not/exist") == Path("does/not/exist")  # existence is the caller's question
    with raises(ArgumentTypeError, "run must be a path (a str or pathlib.Path), got 123 (int)"):
        check_path("run", 123)
    with raises(ArgumentValueError, "run is an empty path; give a file or folder, e.g. 'runs/tiny'"):
        check_path("run", "")
    with raises(ArgumentValueError, "run 'a\\x00b' has a NUL character, which no file name can hold"):
        check_path("run", "a\0b")
    with raises(ArgumentValueError, "run 'a\\ud800b' cannot be a file name here: it has characters this system's "
                                    "file names cannot encode"):
        check_path("run", "a\ud800b")  # a lone surrogate: no encoding of file names holds it
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    with pytest.raises(ArgumentValueError, match=r"^run '.*\.\.\. cannot be a file name here \(.+\); give a shorter path$"):
        check_path("run", str(tmp_path / ("x" * (name_max + 1))))


# ----- indexes and pictures -----------------------------------------------------------------------------------
def test_indexes_cover_exactly_the_models_range() -> None:
    assert check_index("layer", 0, 2, "layer") == 0 and check_index("layer", 1, 2, "layer") == 1
    with raises(ArgumentValueError, "layer 2 is out of range: the model has 2 layers (0 to 1); pick one of those"):
        check_index("layer", 2, 2, "layer")
    with raises(ArgumentValueError, "--head -1 is out of range: the model has 1 head (0 to 0); pick one of those"):
        check_index("--head", -1, 1, "head")
    with raises(ArgumentValueError, "query 9 is out of range: the text has 3 positions (0 to 2); pick one of those"):
        check_index("query", 9, 3, "position", owner="the text")
    with raises(ArgumentTypeError, "layer must be an int from 0 to 1, got '0' (str)"):
        check_index("layer", "0", 2, "layer")
    # Of nothing there is no range to name, and no index is in it.
    with raises(ArgumentTypeError, "query must be an int, got 'x' (str)"):
        check_index("query", "x", 0, "position", owner="the text")
    with raises(ArgumentValueError, "query 0 is out of range: the text has 0 positions (0 to -1); pick one of those"):
        check_index("query", 0, 0, "position", owner="the text")


def test_pictures_must_be_png() -> None:
    check_png("--heatmap", Path("a.PNG"))
    with raises(UserError, "--heatmap a.jpg: the heat map is written as PNG; give a file name ending in .png"):
        check_png("--heatmap", Path("a.jpg"))
