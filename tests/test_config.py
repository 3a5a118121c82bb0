"""Config parsing: defaults < file < --set, YAML quirks, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlm.config import Config, load_config, reference
from attnlm.errors import UserError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_defaults_file_then_set(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  n_layer: 3\ntrain:\n  lr: 1e-3\n  batch_size: 8\n")
    cfg = load_config(path, ["train.batch_size=4", "model.pos=rope"])
    assert cfg.model.n_layer == 3  # file
    assert cfg.train.batch_size == 4  # --set beats the file
    assert cfg.model.pos == "rope"
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)  # YAML reads 1e-3 as a string
    assert cfg.model.n_embd == Config().model.n_embd  # default
    assert cfg.log.name == "exp"  # the file's stem names the run


def test_set_values_are_yaml_scalars(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.mlp=false", "train.max_steps=null", "train.max_time=60", "log.sample_prompt=ROMEO:"])
    assert cfg.model.mlp is False and cfg.train.max_steps is None
    assert cfg.train.max_time == 60.0 and cfg.log.sample_prompt == "ROMEO:"


def test_data_path_takes_a_list(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "data:\n  path: [a.txt, poems/]\n")).data.path == ["a.txt", "poems/"]
    assert load_config(None, ["data.path=[a.txt, 'b c.txt']"]).data.path == ["a.txt", "b c.txt"]
    assert load_config(None, ["data.path=**/*.txt"]).data.path == "**/*.txt"  # not YAML: kept as written
    with pytest.raises(UserError, match="'data.path' must be a string or a list of strings"):
        load_config(None, ["data.path=[a.txt, [b.txt]]"])


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("model:\n  n_layers: 2\n", [], "unknown config key 'model.n_layers'.*did you mean 'n_layer'"),
        ("modle:\n  n_layer: 2\n", [], "unknown config section 'modle'.*did you mean 'model'"),
        ("train:\n  batch_size: many\n", [], "'train.batch_size' must be an integer, got 'many'"),
        ("model:\n  mlp: 3\n", [], "'model.mlp' must be true or false"),
        ("train:\n  compile: maybe\n", [], "'train.compile' must be true, false or auto, got 'maybe'"),
        ("train:\n  lr: -1\n", [], "'train.lr' must be positive"),
        ("model:\n  dropout: 1.0\n", [], r"'model.dropout' must be in \[0, 1\)"),
        ("model:\n  n_embd: 30\n  n_head: 4\n", [], r"n_embd \(30\) must be divisible by model.n_head \(4\)"),
        ("model:\n  pos: sinusoid\n", [], "'model.pos' must be one of learned, rope"),
        ("model: [1, 2]\n", [], "section 'model'.*must be a mapping"),
        ("model:\n  n_layer: 2\n   bad: indent\n", [], r"YAML syntax error in .* at line 3, column"),
        ("", ["train.batch_size"],
         r"^overrides expects section.key=value, got 'train.batch_size' \(e.g. overrides=\['train.lr=3e-4'\]\)"),
        ("", ["train.epochz=3"], "did you mean 'epochs'"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, overrides: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_config(write(tmp_path, text), overrides)


def test_compile_takes_true_false_or_auto(tmp_path: Path) -> None:
    assert [load_config(None, [f"train.compile={v}"]).train.compile for v in ("true", "false", "auto")] == \
        [True, False, "auto"]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_every_field_is_documented_and_shipped_configs_load() -> None:
    rows = reference()
    assert len(rows) > 30 and all(doc for _, _, doc in rows)
    for path in sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.yaml")):
        load_config(path)
