"""Config files as a careless or hostile user writes them: whatever the YAML holds, loading it gives a valid
config or one attnlm error of one line, never a raw exception from yaml, dataclasses or int(); and at the CLI
such a config ends with exit 2 before anything is written."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from run_helpers import run_cli

from attnlm.config import Config, load_config
from attnlm.errors import UserError

SECTIONS = ["data", "model", "train", "log"]
# Real keys, so that many generated configs reach the type and range checks rather than stopping at the name.
KEYS = {
    "data": ["path", "val_fraction", "task", "cache_dir"],
    "model": ["n_layer", "n_head", "n_embd", "block_size", "dropout", "pos", "mlp", "tie_weights"],
    "train": ["lr", "min_lr", "batch_size", "epochs", "steps_per_epoch", "seed", "max_time", "device", "optimizer"],
    "log": ["dir", "name", "timestamp", "print_every", "sample_chars", "tensorboard"],
}
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**80), 2**80), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["auto", "cpu", "rope", "adamw", "1e-3", "3", "-1", "0", "inf", "nan"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                          max_size=3), max_leaves=6)


@st.composite
def configs(draw: st.DrawFn) -> object:
    """Mostly the shape of a config with odd values; sometimes any YAML value at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(VALUES)
    raw: dict[object, object] = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "extra", "Model"]), max_size=4, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            raw[section] = draw(VALUES)
            continue
        keys = KEYS.get(section, ["x"])
        raw[section] = {draw(st.sampled_from([*keys, "nope", "N_LAYER"])): draw(VALUES)
                        for _ in range(draw(st.integers(0, 4)))}
    return raw


def load_or_refuse(path: Path) -> Config | UserError:
    try:
        return load_config(path, [])
    except UserError as e:
        return e


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=configs())
@example(raw={"data": {"\n": None}})  # found by this test: a key holding a newline split the message in two
@example(raw={"da\nta": {"path": "x"}})
def test_any_yaml_structure_is_a_config_or_one_attnlm_error(tmp_path: Path, raw: object) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = load_or_refuse(path)
    if isinstance(result, UserError):
        message = str(result)
        assert message and "\n" not in message.strip() and "Traceback" not in message
    else:
        assert isinstance(result, Config)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # reading a config writes nothing


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
def test_any_text_in_a_config_file_is_a_config_or_one_attnlm_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    result = load_or_refuse(path)
    assert isinstance(result, (Config, UserError))
    if isinstance(result, UserError):
        assert str(result) and "\n" not in str(result).strip()


def test_odd_configs_at_the_cli_end_with_exit_2_and_nothing_written(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cases = [
        "model: [1, 2]\n",
        "train:\n  lr: {a: 1}\n",
        "model:\n  n_layer: 100000000000000000000000000000\n",
        "train:\n  seed: -5\n",
        "- just\n- a list\n",
        "model:\n  n_embd: &a [*a]\n",  # a YAML alias: refused, not expanded
        "\x00\x01",
    ]
    for i, text in enumerate(cases):
        config = tmp_path / f"c{i}.yaml"
        config.write_text(text, encoding="utf-8")
        result = run_cli("train", "--config", str(config), "--set", f"log.dir={runs}", timeout=60)
        assert result.returncode == 2, (text, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (text, result.stderr)
        assert not runs.exists(), text


def test_a_name_with_a_newline_is_shown_escaped_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"train": {"l\nr": 1}}), encoding="utf-8")
    error = load_or_refuse(path)
    assert isinstance(error, UserError) and str(error).startswith("unknown config key 'train.l\\nr' in ")
