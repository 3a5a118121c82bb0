"""The Python API's arguments, given as a careless caller gives them: a wrong type or size is one attnlm error
(ArgumentTypeError, a TypeError, or ArgumentValueError, a ValueError) naming the argument as Python spells it,
never a raw exception of torch or the standard library and never a CLI option; nothing is written on an error;
the CLI hears the same checks in its own options."""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from run_helpers import run_cli, snapshot

import attnlm
from attnlm.api import load_config, start_explorer
from attnlm.checks import MAX_NEW_TOKENS
from attnlm.config import MAX_SEED, Config
from attnlm.errors import ArgumentTypeError, ArgumentValueError, UserError

TEXT = "To be, or not"
# A CLI option in a message: two dashes starting a word (`--set`, `--layer`), not inside a quoted value.
FLAG = re.compile(r"(?<![\w'\"-])--[a-z]")


@pytest.fixture(scope="module")
def ctx(trained_run: tuple[Path, object], small_corpus: Path, tmp_path_factory: pytest.TempPathFactory,
        private_data_cache: Path) -> SimpleNamespace:
    run_dir, _ = trained_run
    logs = tmp_path_factory.mktemp("argument-runs")
    config = {"data": {"path": str(small_corpus)}, "log": {"dir": str(logs), "timestamp": False},
              "model": {"block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}, "train": {"epochs": 1}}
    watched = [run_dir, logs, small_corpus] + ([private_data_cache] if private_data_cache.exists() else [])
    return SimpleNamespace(run_dir=run_dir, model=attnlm.load(run_dir), config=config, logs=logs, watched=watched)


def refused(call: Callable[[], Any]) -> Exception:
    """The exception `call` raises, checked to be one of attnlm's: one line, no CLI option."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - which class it is, is what is tested
        assert type(e).__module__ == "attnlm.errors", f"a raw {type(e).__name__} escaped: {e}"
        assert isinstance(e, UserError)
        assert "\n" not in str(e) and not FLAG.search(str(e)), str(e)
        return e
    raise AssertionError("no error was raised")


# ----- the table: each argument given wrongly once ----------------------------------------------------------
@dataclass
class Case:
    id: str
    call: Callable[[SimpleNamespace], Any]
    kind: type  # ArgumentTypeError or ArgumentValueError
    message: str  # regex the message must start with: the argument as Python spells it


def gen(**kwargs: Any) -> Callable[[SimpleNamespace], Any]:
    return lambda c: c.model.generate(**{"prompt": "The ", "max_new_tokens": 3, **kwargs})


def train(*args: Any, **kwargs: Any) -> Callable[[SimpleNamespace], Any]:
    return lambda c: attnlm.train(c.config, *args, **kwargs)


T, V = ArgumentTypeError, ArgumentValueError
CASES = [
    Case("overrides-one-string", train("model.n_layer=2"), T,
         r"overrides must be a list of 'section\.key=value' strings, got one string 'model\.n_layer=2'; wrap it in "
         r"a list: overrides=\['model\.n_layer=2'\]"),
    Case("overrides-numbers", train([1, 2]), T, r"overrides\[0\] must be a 'section\.key=value' string, got 1 \(int\)"),
    Case("overrides-mapping", train({"train.epochs": 2}), T, r"overrides must be a list .*, got a mapping"),
    Case("overrides-not-a-sequence", train(7), T, r"overrides must be a list .*, got 7 \(int\)"),
    Case("overrides-no-equals", train(["model.n_layer"]), V,
         r"overrides expects section\.key=value, got 'model\.n_layer' \(e\.g\. overrides=\['train\.lr=3e-4'\]\)"),
    Case("overrides-unknown-key", train(["train.epohcs=2"]), V,
         r"unknown config key 'train\.epohcs' in overrides \(did you mean 'epochs'\?\)"),
    Case("overrides-wrong-value", train(["train.epochs=many"]), V, r"config key 'train\.epochs' must be an integer"),
    Case("train-config-number", lambda c: attnlm.train(123), T,
         r"config must be a YAML path, a mapping of sections or a Config, got 123 \(int\)"),
    Case("train-name-number", train(name=5), T, r"name must be a run name \(a str\) or None, got 5 \(int\)"),
    Case("train-name-empty", train(name=""), V, r"name is empty"),
    Case("train-overwrite-string", train(overwrite="yes"), T, r"overwrite must be True or False, got 'yes' \(str\)"),
    Case("train-console-string", train(console="rich"), T, r"console must be a rich\.console\.Console or None"),
    Case("resume-run-dir-number", lambda c: attnlm.resume(123), T,
         r"run_dir must be a path \(a str or pathlib\.Path\), got 123 \(int\)"),
    Case("resume-overrides-string", lambda c: attnlm.resume(c.run_dir, "train.epochs=9"), T,
         r"overrides must be a list .*, got one string"),
    Case("load-path-number", lambda c: attnlm.load(123), T, r"path must be a path \(a str or pathlib\.Path\), got 123"),
    Case("load-path-empty", lambda c: attnlm.load(""), V, r"path is an empty path"),
    Case("load-path-nul", lambda c: attnlm.load("runs/a\0b"), V, r"path 'runs/a\\x00b' has a NUL character"),
    Case("load-path-too-long", lambda c: attnlm.load("x" * 300), V,
         r"path 'x+\.\.\. cannot be a file name here \(File name too long\); give a shorter path"),
    Case("load-device-typo", lambda c: attnlm.load(c.run_dir, device="gpu"), V,
         r"device must be one of auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    Case("load-device-number", lambda c: attnlm.load(c.run_dir, device=0), T, r"device must be a device name"),
    Case("run-load-which", lambda c: attnlm.Run(c.run_dir, Config()).load("middle"), V,
         r"which must be one of 'best', 'last', got 'middle'"),
    Case("untrained-overrides-string", lambda c: attnlm.Model.untrained(c.config, "model.n_layer=2"), T,
         r"overrides must be a list"),
    Case("untrained-device", lambda c: attnlm.Model.untrained(c.config, device="gpu"), V, r"device must be one of"),
    Case("load-config-overrides-string", lambda c: load_config(None, "train.epochs=2"), T, r"overrides must be a list"),
    Case("explorer-port-string", lambda c: start_explorer(str(c.run_dir), port="8080"), T,
         r"port must be an int from 0 to 65535, got '8080' \(str\)"),
    Case("explorer-port-too-high", lambda c: start_explorer(str(c.run_dir), port=70000), V,
         r"port must be between 0 and 65535, got 70000; 0 takes any free port"),
    Case("explorer-run-and-checkpoint", lambda c: start_explorer(c.run_dir, c.run_dir / "checkpoints" / "best.pt"), V,
         r"give run \(a run folder\) or checkpoint \(a checkpoint file\), not both"),
    Case("explorer-host-number", lambda c: start_explorer(c.run_dir, host=127), T, r"host must be a host name"),
    Case("explorer-token-short", lambda c: start_explorer(c.run_dir, token="abc"), V, r"token must be at least"),
    Case("generate-prompt-number", lambda c: c.model.generate(5), T, r"prompt must be a str, got 5 \(int\)"),
    Case("max-new-tokens-string", gen(max_new_tokens="5"), T,
         r"max_new_tokens must be an int from 0 to 1,000,000, got '5' \(str\)"),
    Case("max-new-tokens-float", gen(max_new_tokens=2.5), T, r"max_new_tokens must be an int .*, got 2\.5 \(float\)"),
    Case("max-new-tokens-bool", gen(max_new_tokens=True), T, r"max_new_tokens must be an int .*, got True \(bool\)"),
    Case("max-new-tokens-negative", gen(max_new_tokens=-1), V, r"max_new_tokens must be >= 0, got -1"),
    Case("max-new-tokens-too-many", gen(max_new_tokens=MAX_NEW_TOKENS + 1), V,
         r"max_new_tokens must be at most 1,000,000, got 1000001; ask for fewer characters"),
    Case("temperature-string", gen(temperature="hot"), T, r"temperature must be a number > 0, got 'hot' \(str\)"),
    Case("temperature-zero", gen(temperature=0), V, r"temperature must be > 0, got 0"),
    Case("temperature-nan", gen(temperature=math.nan), V, r"temperature must be > 0, got nan"),
    Case("temperature-past-float", gen(temperature=10**400), V, r"temperature must be > 0, got 1000.*\.\.\.$"),
    Case("top-k-zero", gen(top_k=0), V, r"top_k must be at least 1, got 0"),
    Case("top-k-float", gen(top_k=2.0), T, r"top_k must be an int >= 1 or None, got 2\.0 \(float\)"),
    Case("top-p-above-one", gen(top_p=1.5), V, r"top_p must be in \(0, 1\], got 1\.5"),
    Case("top-p-string", gen(top_p="0.9"), T, r"top_p must be a number in \(0, 1\] or None, got '0\.9' \(str\)"),
    Case("seed-past-torch", gen(seed=2**70), V,
         r"seed must be an int from 0 to 2\*\*64 - 1 \(the seeds torch takes\), got 1180591620717411303424"),
    Case("seed-negative", gen(seed=-1), V, r"seed must be an int from 0 to 2\*\*64 - 1"),
    Case("seed-float", gen(seed=1.0), T, r"seed must be an int from 0 to 2\*\*64 - 1, got 1\.0 \(float\)"),
    Case("seed-and-generator", gen(seed=1, generator=torch.Generator()), V, r"give seed .* or generator .*, not both"),
    Case("generator-string", gen(generator="g"), T, r"generator must be a torch\.Generator or None"),
    Case("on-text-string", gen(on_text="print"), T, r"on_text must be a function"),
    Case("use-cache-string", gen(use_cache="no"), T, r"use_cache must be True or False"),
    Case("evaluate-number", lambda c: c.model.evaluate(123), T, r"text must be a str, got 123 \(int\)"),
    Case("evaluate-one-character", lambda c: c.model.evaluate("T"), V, r"text is too short to evaluate"),
    Case("evaluate-data-number", lambda c: c.model.evaluate(data=123), T, r"data must be a path .* or a list of them"),
    Case("evaluate-data-empty", lambda c: c.model.evaluate(data=[]), V, r"data is an empty list"),
    Case("evaluate-text-and-data", lambda c: c.model.evaluate("To be", data="x.txt"), V, r"give text .* or data"),
    Case("evaluate-full-string", lambda c: c.model.evaluate("To be", full="yes"), T, r"full must be True or False"),
    Case("attention-number", lambda c: c.model.attention(42), T, r"text must be a str, got 42 \(int\)"),
    Case("attention-empty", lambda c: c.model.attention(""), V,
         r"text is empty; give at least one character, e\.g\. text='To be, or not'"),
    Case("attention-too-long", lambda c: c.model.attention("x" * 40), V, r"text has 40 characters"),
    Case("trace-layer-string", lambda c: c.model.trace(TEXT, layer="0"), T,
         r"layer must be an int from 0 to 1, got '0' \(str\)"),
    Case("trace-layer-out-of-range", lambda c: c.model.trace(TEXT, layer=2), V,
         r"layer 2 is out of range: the model has 2 layers \(0 to 1\); pick one of those"),
    Case("trace-head-negative", lambda c: c.model.trace(TEXT, head=-1), V, r"head -1 is out of range"),
    Case("trace-head-bool", lambda c: c.model.trace(TEXT, head=True), T, r"head must be an int .*, got True \(bool\)"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_wrong_argument_is_named_as_python_writes_it(case: Case, ctx: SimpleNamespace) -> None:
    before = snapshot(*ctx.watched)
    error = refused(lambda: case.call(ctx))
    assert type(error) is case.kind, f"{type(error).__name__}: {error}"
    assert isinstance(error, TypeError if case.kind is ArgumentTypeError else ValueError)
    assert re.match(case.message, str(error)), str(error)
    assert snapshot(*ctx.watched) == before, "a refused call changed or created files"


def test_the_error_classes_are_exported_and_caught_as_their_builtin_kinds(ctx: SimpleNamespace) -> None:
    assert attnlm.ArgumentTypeError is ArgumentTypeError and attnlm.ArgumentValueError is ArgumentValueError
    with pytest.raises(TypeError):
        ctx.model.generate(max_new_tokens="5")
    with pytest.raises(ValueError):
        ctx.model.generate(max_new_tokens=-5)
    with pytest.raises(ValueError):  # characters outside the vocabulary are a bad value too
        ctx.model.generate("€uro", max_new_tokens=1)


def test_numpy_and_fraction_numbers_are_taken_as_numbers(ctx: SimpleNamespace) -> None:
    """What a notebook computes is often a numpy number: it is a number, not a wrong type."""
    plain = ctx.model.generate("The ", max_new_tokens=8, temperature=0.5, top_k=5, top_p=0.9, seed=3)
    again = ctx.model.generate("The ", max_new_tokens=np.int64(8), temperature=np.float32(0.5), top_k=np.int32(5),
                               top_p=Fraction(9, 10), seed=np.uint64(3))
    assert plain == again and len(plain) == 8
    assert ctx.model.trace(TEXT, layer=np.int64(1), head=torch.tensor(1)).layer == 1


def test_the_smallest_temperature_samples_the_likeliest_character(ctx: SimpleNamespace) -> None:
    """Any temperature > 0 is taken; the smallest ones tend to the argmax instead of dividing by a float32 zero."""
    greedy = ctx.model.generate("The ", max_new_tokens=12, top_k=1, seed=0)
    for temperature in (1e-30, 1e-300, 5e-324):
        assert ctx.model.generate("The ", max_new_tokens=12, temperature=temperature, seed=1) == greedy


# ----- properties: arbitrary values of many types ----------------------------------------------------------
def texts(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Any text but two dashes in a row, which a message quoting it would show as if it named a CLI option, and
    a line break, which would break the message's one line where it quotes the text."""
    return st.text(min_size=min_size, max_size=max_size).filter(lambda s: "--" not in s and "\n" not in s)


ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(), texts(12),
    st.binary(max_size=4).filter(lambda b: b"--" not in b),
    st.lists(st.integers(), max_size=2), st.dictionaries(texts(2), st.integers(), max_size=1),
    st.fractions(), st.decimals(allow_nan=False, allow_infinity=False), st.just(object()), st.just(Path("x")),
    st.integers(-(2**63), 2**63 - 1).map(np.int64), st.floats(width=32).map(np.float32), st.just(np.True_),
    st.integers(-5, 5).map(torch.tensor), st.just(torch.tensor(True)), st.just(torch.tensor([1, 2])),
)


def as_int(value: object) -> int | None:
    """The int a value stands for, by Python's index protocol; None for bools and everything else."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def as_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def int_verdict(value: object, low: int, high: int) -> str:
    n = as_int(value)
    return "type" if n is None else "ok" if low <= n <= high else "value"


def float_verdict(value: object, ok: Callable[[float], bool]) -> str:
    f = as_float(value)
    return "type" if f is None else "ok" if ok(f) else "value"


def optional(verdict: Callable[[object], str]) -> Callable[[object], str]:
    return lambda value: "ok" if value is None else verdict(value)


# Valid lengths stay short, so a call that works is quick; every other int is out of range.
LENGTHS = st.one_of(ANYTHING.filter(lambda v: as_int(v) is None or not 0 <= as_int(v) <= MAX_NEW_TOKENS),
                    st.integers(0, 12), st.integers(0, 12).map(np.int64),
                    st.sampled_from([-1, MAX_NEW_TOKENS + 1, 2**64]))
def mostly(valid: st.SearchStrategy, anything: st.SearchStrategy = ANYTHING) -> st.SearchStrategy:
    """A valid value about three times in four, so a fair share of calls have every argument right and work."""
    return st.integers(0, 3).flatmap(lambda pick: anything if pick == 0 else valid)


VERDICTS: dict[str, Callable[[object], str]] = {
    "max_new_tokens": lambda v: int_verdict(v, 0, MAX_NEW_TOKENS),
    "temperature": lambda v: float_verdict(v, lambda f: f > 0 and math.isfinite(f)),
    "top_k": optional(lambda v: int_verdict(v, 1, 2**80)),
    "top_p": optional(lambda v: float_verdict(v, lambda f: 0 < f <= 1)),
    "seed": optional(lambda v: int_verdict(v, 0, MAX_SEED)),
}


def check_verdict(error: Exception, verdicts: dict[str, str]) -> None:
    """The error names an argument that is wrong, and is a TypeError for a wrong type, a ValueError for a value
    out of range."""
    named = re.match(r"[a-z_]+", str(error)).group(0)
    assert verdicts.get(named, "ok") != "ok", f"{named} is fine but was refused: {error}"
    assert isinstance(error, ArgumentTypeError if verdicts[named] == "type" else ArgumentValueError), str(error)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_new_tokens=mostly(st.integers(0, 12), LENGTHS), temperature=mostly(st.floats(1e-6, 5.0)),
       top_k=mostly(st.none() | st.integers(1, 90)), top_p=mostly(st.none() | st.floats(0.01, 1.0)),
       seed=mostly(st.none() | st.integers(0, MAX_SEED)))
def test_generate_works_or_names_a_wrong_argument(ctx: SimpleNamespace, max_new_tokens: Any, temperature: Any,
                                                 top_k: Any, top_p: Any, seed: Any) -> None:
    given_ = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
              "seed": seed}
    verdicts = {name: VERDICTS[name](value) for name, value in given_.items()}
    event("works" if all(v == "ok" for v in verdicts.values()) else "refused")
    if all(v == "ok" for v in verdicts.values()):
        text = ctx.model.generate("The ", **given_)
        assert len(text) == as_int(max_new_tokens) and not ctx.model.vocab.unknown(text)
    else:
        check_verdict(refused(lambda: ctx.model.generate("The ", **given_)), verdicts)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layer=mostly(st.sampled_from([0, 1]), ANYTHING | st.integers(-3, 4)),
       head=mostly(st.sampled_from([0, 1]), ANYTHING | st.integers(-3, 4)))
def test_trace_works_or_names_a_wrong_index(ctx: SimpleNamespace, layer: Any, head: Any) -> None:
    cfg = ctx.model.config.model
    verdicts = {"layer": int_verdict(layer, 0, cfg.n_layer - 1), "head": int_verdict(head, 0, cfg.n_head - 1)}
    event("works" if all(v == "ok" for v in verdicts.values()) else "refused")
    if all(v == "ok" for v in verdicts.values()):
        trace = ctx.model.trace(TEXT, layer, head)
        assert (trace.layer, trace.head) == (as_int(layer), as_int(head))
    else:
        check_verdict(refused(lambda: ctx.model.trace(TEXT, layer, head)), verdicts)


KEYS = ["train.epochs", "train.lr", "train.seed", "model.n_head", "model.pos", "log.name", "data.val_fraction",
        "train.epohcs", "nosection.key", "model"]
GOOD = ["train.epochs=3", "train.lr=1e-3", "train.seed=7", "model.pos=rope", "log.name=x", "data.val_fraction=0.2"]
OVERRIDE = mostly(st.sampled_from(GOOD), st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), texts(10)),
                                                  texts(16), ANYTHING))
OVERRIDES = mostly(st.lists(OVERRIDE, max_size=3) | st.lists(OVERRIDE, max_size=3).map(tuple), ANYTHING | texts(16))


@settings(max_examples=200, deadline=None)
@given(overrides=OVERRIDES)
def test_overrides_work_or_raise_one_attnlm_error(overrides: Any) -> None:
    is_list_of_text = isinstance(overrides, (list, tuple)) and all(isinstance(o, str) for o in overrides)
    try:
        cfg = load_config(None, overrides)
    except Exception:  # noqa: BLE001 - refused() says which
        event("refused")
        error = refused(lambda: load_config(None, overrides))
        if not is_list_of_text:
            assert isinstance(error, ArgumentTypeError) and str(error).startswith("overrides"), str(error)
    else:
        event("works")
        assert is_list_of_text and isinstance(cfg, Config)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.one_of(ANYTHING, texts(16), st.lists(OVERRIDE, max_size=3)).filter(
    lambda o: not (isinstance(o, (list, tuple)) and all(isinstance(x, str) for x in o))))
def test_training_refuses_overrides_of_the_wrong_type_before_writing(ctx: SimpleNamespace, overrides: Any) -> None:
    before = snapshot(*ctx.watched)
    error = refused(lambda: attnlm.train(ctx.config, overrides))
    assert isinstance(error, ArgumentTypeError) and str(error).startswith("overrides"), str(error)
    assert snapshot(*ctx.watched) == before


PATHS = st.one_of(ANYTHING, texts(300), texts(30, min_size=1).map(Path),
                  st.sampled_from([".", "..", "/", "", "runs", "best.pt", "a\0b", "\ud800", "x" * 256]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, which=st.sampled_from(["load", "resume", "train", "untrained"]))
def test_a_path_works_or_raises_one_attnlm_error_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    path: Any, which: str) -> None:
    """In an empty folder nothing a path names can be a model, a run or a config (load(None) looks for the newest
    run under runs/: there is none): every call is refused, with the argument named when its type is wrong, and
    the folder stays empty."""
    monkeypatch.chdir(tmp_path)
    calls = {"load": lambda: attnlm.load(path), "resume": lambda: attnlm.resume(path),
             "train": lambda: attnlm.train(path), "untrained": lambda: attnlm.Model.untrained(path)}
    error = refused(calls[which])
    named = {"load": "path", "resume": "run_dir", "train": "config", "untrained": "config"}[which]
    if not isinstance(path, (str, Path)) and which in ("load", "resume") and not (which == "load" and path is None):
        assert isinstance(error, ArgumentTypeError) and str(error).startswith(named), str(error)
    assert not any(tmp_path.iterdir()), f"{which}({path!r}) wrote {sorted(tmp_path.iterdir())}"


# ----- the CLI says the same in its own words ---------------------------------------------------------------
@pytest.mark.parametrize(("args", "cli_message", "python", "python_message"), [
    (["sample", "--max-new-tokens", "1000001"],
     "--max-new-tokens must be at most 1,000,000, got 1000001; ask for fewer characters, or continue the text in "
     "several calls", lambda c: c.model.generate(max_new_tokens=1_000_001),
     "max_new_tokens must be at most 1,000,000, got 1000001; ask for fewer characters, or continue the text in "
     "several calls"),
    (["sample", "--seed", str(2**64)],
     f"--seed must be an int from 0 to 2**64 - 1 (the seeds torch takes), got {2**64}",
     lambda c: c.model.generate(max_new_tokens=1, seed=2**64),
     f"seed must be an int from 0 to 2**64 - 1 (the seeds torch takes), got {2**64}"),
    (["train", "--resume", "RUN", "--set", "train.epochs"],
     "--set expects section.key=value, got 'train.epochs' (e.g. --set train.lr=3e-4)",
     lambda c: attnlm.resume(c.run_dir, ["train.epochs"]),
     "overrides expects section.key=value, got 'train.epochs' (e.g. overrides=['train.lr=3e-4'])"),
    (["train", "--resume", "RUN", "--set", "train.epohcs=9"],
     "unknown config key 'train.epohcs' in --set (did you mean 'epochs'?)",
     lambda c: attnlm.resume(c.run_dir, ["train.epohcs=9"]),
     "unknown config key 'train.epohcs' in overrides (did you mean 'epochs'?)"),
    (["trace", "--text", "", "--layer", "1"],
     '--text is empty; give at least one character, e.g. --text "To be, or not"',
     lambda c: c.model.trace("", layer=1), "text is empty; give at least one character, e.g. text='To be, or not'"),
    (["train", "--resume", "EMPTY"],
     "EMPTY has no checkpoints/last.pt to resume from (it was stopped before its first checkpoint); start it afresh "
     "with --config FILE --overwrite", lambda c: attnlm.resume(c.logs),
     "EMPTY has no checkpoints/last.pt to resume from (it was stopped before its first checkpoint); start it afresh "
     "with attnlm.train(config, overwrite=True)"),
], ids=["max-new-tokens", "seed", "set-malformed", "set-unknown-key", "text-empty", "resume-without-last-pt"])
def test_the_cli_names_the_same_check_by_its_option(ctx: SimpleNamespace, args: list[str], cli_message: str,
                                                    python: Callable[[SimpleNamespace], Any],
                                                    python_message: str) -> None:
    run, empty = str(ctx.run_dir), str(ctx.logs)
    argv = [{"RUN": run, "EMPTY": empty}.get(a, a) for a in args]
    if "--resume" not in argv:
        argv += ["--run", run]
    before = snapshot(*ctx.watched)
    result = run_cli(*argv)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {cli_message.replace('EMPTY', empty)}\n"
    assert str(refused(lambda: python(ctx))) == python_message.replace("EMPTY", empty)
    assert snapshot(*ctx.watched) == before


def test_a_run_folder_that_exists_is_refused_in_each_surfaces_words(trained_run: tuple[Path, object],
                                                                    small_corpus: Path) -> None:
    run_dir, _ = trained_run
    overrides = [f"data.path={small_corpus}", f"log.dir={run_dir.parent}", "log.timestamp=false"]
    before = snapshot(run_dir)
    with pytest.raises(UserError, match=rf"^run folder {re.escape(str(run_dir))} already exists; continue it with "
                                        rf"attnlm\.resume\('{re.escape(str(run_dir))}'\), replace it with "
                                        r"overwrite=True, or pick another name$"):
        attnlm.train("configs/tiny.yaml", overrides, name=run_dir.name)
    cli = run_cli("train", "--config", "configs/tiny.yaml", *(a for o in overrides for a in ("--set", o)),
                  "--name", run_dir.name)
    assert cli.returncode == 2
    assert f"--resume {run_dir}, replace it with --overwrite, or pick another --name" in cli.stderr
    assert snapshot(run_dir) == before
