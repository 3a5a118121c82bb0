"""Typed configuration: defaults < YAML file < `--set` overrides, validated once."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attnlm.errors import ArgumentTypeError, ArgumentValueError, UserError, clipped, got


def _f(default: Any, doc: str) -> Any:
    """A dataclass field that carries its one-line documentation."""
    return field(default=default, metadata={"doc": doc})


@dataclass
class DataConfig:
    path: str | list[str] = _f("data/shakespeare.txt", "text to train on (relative to the working dir): a UTF-8 "
                                                       "file, a folder (its files, recursively), a glob "
                                                       "(`poems/**/*.txt`), a folder made by `attnlm data "
                                                       "prepare`, or a list of these")
    val_fraction: float = _f(0.1, "fraction of each document (file), taken from its end, held out for validation")
    separator: str = _f("\n\n", "text put between documents where they are joined")
    cache_dir: str | None = _f(None, "folder for prepared (memory-mapped) corpora (default: "
                                     "$XDG_CACHE_HOME/attnlm/data, i.e. ~/.cache/attnlm/data)")
    task: str | None = _f(None, "a built-in task generated on the fly instead of text (docs/tasks.md): induction "
                                "(a random segment repeated later), copy, reverse or sort (a sequence, `=`, then it "
                                "copied, reversed or sorted); data.path, val_fraction, separator and cache_dir are then "
                                "unused (null: train on data.path)")
    task_vocab: int | None = _f(None, "with data.task: how many symbols (digits, then capital and small letters, at "
                                      "most 62) its random sequences use (null: 40 for induction, the 10 digits for "
                                      "the others)")
    task_length: int | None = _f(None, "with data.task: the longest copied segment (induction; the shortest is 6) or "
                                       "input sequence (copy, reverse, sort; the shortest is 1) (null: block_size // 2 "
                                       "- 3 for induction, 8 for the others, as far as the window holds it)")


@dataclass
class ModelConfig:
    block_size: int = _f(64, "context length in characters")
    n_layer: int = _f(4, "number of attention blocks")
    n_head: int = _f(4, "attention heads per block")
    n_embd: int = _f(128, "embedding width; must be divisible by n_head")
    dropout: float = _f(0.0, "dropout on residual branches and embeddings, in [0, 1)")
    mlp: bool = _f(True, "add an MLP after attention in each block (off: pure attention stack)")
    mlp_ratio: int = _f(4, "MLP hidden width as a multiple of n_embd")
    activation: str = _f("gelu", "MLP activation: gelu or relu2 (ReLU squared)")
    pos: str = _f("learned", "position information: learned (absolute embeddings) or rope (rotary)")
    norm: str = _f("layernorm", "normalisation: layernorm or rmsnorm")
    qk_norm: bool = _f(False, "RMS-normalise queries and keys per head before the dot product")
    tie_weights: bool = _f(False, "share the token embedding matrix with the output head")
    bigram: bool = _f(False, "also embed each (previous, current) character pair, a table of vocab^2 + 1 vectors "
                             "added to the token's: the first layer already sees two-character units")
    bias: bool = _f(False, "use biases in linear layers and norms")
    attention: str = _f("auto", "attention kernel: sdpa (F.scaled_dot_product_attention), math (the explicit "
                                "softmax(QK^T/sqrt(d))V) or auto: math under CPU bf16 autocast for contexts up to 64, "
                                "where it measured faster than the CPU flash kernel, sdpa elsewhere")


@dataclass
class TrainConfig:
    batch_size: int = _f(32, "sequences per optimizer step (per process)")
    epochs: int = _f(5, "epochs to train; an epoch is one pass over the training characters")
    steps_per_epoch: int | None = _f(None, "optimizer steps per epoch (default: one pass over the data; with "
                                           "data.task, whose data never ends, 500)")
    max_steps: int | None = _f(None, "stop after this many optimizer steps in total")
    max_time: float | None = _f(None, "stop after this many seconds of wall time (also anneals the LR)")
    fit_epochs: bool = _f(False, "with max_time: after the first steps, shorten the epochs (steps_per_epoch is "
                                 "then an upper bound) so that all of them, evaluations included, fit the budget "
                                 "on this machine")
    lr: float = _f(1e-3, "peak learning rate")
    min_lr: float = _f(1e-4, "learning rate at the end of the decay")
    schedule: str = _f("cosine", "after warmup: cosine (decay to min_lr along a cosine) or wsd (hold lr, "
                                 "then decay linearly to min_lr over the last decay_fraction of training)")
    decay_fraction: float = _f(0.5, "with schedule wsd: the share of training spent decaying")
    warmup_steps: int = _f(100, "steps of linear learning-rate warmup")
    weight_decay: float = _f(0.1, "AdamW weight decay (applied to weight matrices only)")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.99, "AdamW beta2")
    optimizer: str = _f("adamw", "adamw (every parameter) or muon: the blocks' weight matrices on torch.optim.Muon "
                                 "(orthogonalised momentum), embeddings, head, norms and biases on AdamW")
    embedding_lr: float | None = _f(None, "AdamW peak learning rate of the embeddings (token, pair, learned position) "
                                          "(null: train.lr); the schedule scales it like train.lr. With "
                                          "tie_weights the shared matrix is the embedding")
    muon_lr: float = _f(0.02, "with optimizer muon: the Muon matrices' peak learning rate (the schedule scales it "
                              "like train.lr)")
    muon_momentum: float = _f(0.95, "with optimizer muon: Muon's momentum (Nesterov)")
    muon_weight_decay: float = _f(0.0, "with optimizer muon: decoupled weight decay of the Muon matrices")
    grad_clip: float = _f(1.0, "clip the global gradient norm to this value (0: off)")
    grad_accum_steps: int = _f(1, "micro-batches per optimizer step; gradients are all-reduced on the last only")
    global_batch_size: int | None = _f(None, "sequences per optimizer step over all processes (instead of "
                                             "grad_accum_steps, which is then derived from it)")
    seed: int = _f(1337, "seed for weights, batches and dropout")
    device: str = _f("auto", "auto (CUDA if present, else Apple's MPS, else CPU), cpu, cuda, cuda:N or mps")
    precision: str = _f("auto", "auto, fp32 or bf16 (autocast); auto uses bf16 on a GPU that supports it and on a "
                                "CPU with native bf16 (AVX512-BF16 or AMX), fp32 on MPS and elsewhere")
    compile: bool | str = _f(False, "torch.compile the blocks (compile time up front; not on MPS): true, false or auto "
                                    "(on CUDA and under CPU bf16, where it paid; an fp32 CPU lost more to compiling)")
    eval_batch_size: int = _f(64, "windows per batch in the validation pass")
    eval_chars: int | None = _f(1_000_000, "validation predictions per epoch: a longer split is evaluated on a "
                                           "fixed, evenly spaced subset of windows this long (null: all of it); "
                                           "with data.task, the held-out windows generated once per run hold this "
                                           "many (null: 1,000,000)")
    checkpoint_every: int | None = _f(None, "also write last.pt every this many steps mid-epoch")
    init_from: str | None = _f(None, "fine-tune: start from the weights of this run folder (its best.pt) or "
                                     "checkpoint file, with a fresh optimizer and schedule; the model section and "
                                     "vocabulary must match it")


@dataclass
class LogConfig:
    dir: str = _f("runs", "folder that holds run folders")
    name: str | None = _f(None, "run name (default: the config file's stem)")
    timestamp: bool = _f(True, "append -YYYYmmdd-HHMMSS to the run folder name")
    tensorboard: bool = _f(True, "write TensorBoard event files into the run folder")
    sample_chars: int = _f(200, "characters of text sampled at the end of each epoch and of training")
    sample_prompt: str = _f("\n", "prompt for those samples")
    probe_text: str | None = _f(None, "text whose attention is saved after every epoch (attention/epoch-NNN.pt, the "
                                      "explorer's epoch slider) and measured for the Observation column (default: "
                                      "32 characters of validation text from the start of its first full line of words)")
    attention_images: bool = _f(True, "also log probe_text's attention to TensorBoard every epoch, one image per head")
    epoch_weights: bool | str = _f("auto", "keep the model's weights after every epoch (attention/model-NNN.pt, fp16, "
                                           "no optimizer), so the explorer's epoch slider replays any typed text: true, "
                                           "false or auto (models of at most 2M parameters: 4 MB an epoch at most)")
    head_scores: bool = _f(True, "score every head as a previous-token, duplicate-token and induction head on a "
                                 "repeated random sequence after every epoch (metrics.jsonl, TensorBoard, the "
                                 "Observation column; `attnlm heads`)")
    print_every: int = _f(10, "steps between live loss updates on the progress bar")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "log": LogConfig,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "model.activation": ("gelu", "relu2"),
    "model.pos": ("learned", "rope"),
    "model.norm": ("layernorm", "rmsnorm"),
    "model.attention": ("auto", "sdpa", "math"),
    "train.schedule": ("cosine", "wsd"),
    "train.optimizer": ("adamw", "muon"),
    "train.precision": ("auto", "fp32", "bf16"),
}


def _suggest(name: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _allows_list(cls: type, name: str) -> bool:
    return list[str] in typing.get_args(typing.get_type_hints(cls)[name])


DEVICES = "auto, cpu, cuda, cuda:N or mps"
# torch takes seeds as unsigned 64-bit numbers; a negative one would be wrapped round to a large one, so it is
# refused rather than silently meaning another seed.
MAX_SEED = 2**64 - 1


def check_device_name(name: str, what: str) -> None:
    """A device name is auto, cpu, cuda, cuda:N or mps (whether this machine has it is device.py's question)."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"{what} must be a device name ({DEVICES}), got {got(name)}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", name):
        hint = " (a GPU is cuda on NVIDIA, mps on a Mac)" if "gpu" in name.lower() else \
            _suggest(name, ("auto", "cpu", "cuda", "mps"))
        raise ArgumentValueError(f"{what} must be one of {DEVICES}, got '{name}'{hint}")


def _field_type(cls: type, name: str) -> tuple[type, bool]:
    """The base type of a field and whether it may be None."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        base = next(a for a in args if a is not type(None))
        return base, type(None) in args
    return hint, False


# data.task's names; the tasks themselves are attnlm.data.tasks (config sits below the data layer).
TASKS = ("induction", "copy", "reverse", "sort")

# Switches that take `auto` (attnlm decides by the machine or the model's size) besides true and false.
AUTO_OR_BOOL = ("train.compile", "log.epoch_weights")


def _coerce(key: str, value: Any, cls: type, name: str) -> Any:
    if key in AUTO_OR_BOOL:
        if isinstance(value, bool) or value == "auto":
            return value
        raise UserError(f"config key '{key}' must be true, false or auto, got {value!r}")
    if isinstance(value, list) and _allows_list(cls, name):
        if not value:
            raise UserError(f"config key '{key}' is an empty list; give at least one entry")
        if any(isinstance(item, (list, dict)) for item in value):
            raise UserError(f"config key '{key}' must be a string or a list of strings, got {value!r}")
        return [_coerce(key, item, cls, name) for item in value]
    base, optional = _field_type(cls, name)
    if value is None:
        if optional:
            return None
        raise UserError(f"config key '{key}' must be a {base.__name__}, not empty/null")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads `1e-3` (no dot) as a string; accept any float literal.
            try:
                return float(value)
            except ValueError:
                pass
    elif base is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[base]
    raise UserError(f"config key '{key}' must be {kind}, got {value!r}")


def _quoted(name: str) -> str:
    """A name from the user's file in quotes, escaped where it holds a newline or another unprintable character,
    so that the error stays one line."""
    return f"'{name}'" if name.isprintable() else repr(name)


def _apply(cfg: Config, section: str, key: str, value: Any, origin: str) -> None:
    if section not in SECTIONS:
        raise UserError(
            f"unknown config section {_quoted(section)} in {origin}{_suggest(section, SECTIONS)}; "
            f"sections are {', '.join(SECTIONS)}"
        )
    cls = SECTIONS[section]
    names = [f.name for f in dataclasses.fields(cls)]
    if key not in names:
        raise UserError(f"unknown config key {_quoted(f'{section}.{key}')} in {origin}{_suggest(key, names)}")
    setattr(getattr(cfg, section), key, _coerce(f"{section}.{key}", value, cls, key))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        found = path.is_file()
    except OSError as e:  # a name longer than the file system allows, a loop of links
        raise UserError(f"cannot read config {path} ({e.strerror}); pass an existing file, e.g. configs/tiny.yaml") \
            from None
    if not found:
        raise UserError(f"config file not found: {path} (pass an existing file, e.g. configs/tiny.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"YAML syntax error in {path}{where}: {e.problem}; fix the file") from None
    except yaml.reader.ReaderError as e:  # a control character: YAML allows only printable text
        raise UserError(f"cannot read config {path}: character {e.character!r} at position {e.position} is not "
                        "allowed in YAML; fix the file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read config {path}: {' '.join(str(e).split())}; fix the file") from None
    except OSError as e:
        raise UserError(f"cannot read config {path} ({e.strerror}); check that you may read it") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"config {path} must be a mapping of sections (data, model, train, log)")
    return raw


def _example(name: str) -> str:
    """An override as the caller writes one: an option at the CLI, a list in Python."""
    return f"{name} train.lr=3e-4" if name.startswith("--") else f"{name}=['train.lr=3e-4']"


def parse_override(text: str, name: str = "overrides") -> tuple[str, str, Any]:
    """`section.key=value` with the value read as a YAML scalar; `name` is the argument as the caller wrote
    it (`overrides` in Python, `--set` at the CLI)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ArgumentValueError(f"{name} expects section.key=value, got '{text}' (e.g. {_example(name)})")
    lhs, rhs = text.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    try:
        value = yaml.safe_load(rhs) if rhs.strip() else None
    except yaml.YAMLError:
        value = rhs
    if isinstance(value, dict):
        value = rhs
    return section, key, value


def check_overrides(overrides: typing.Sequence[str], name: str = "overrides") -> list[str]:
    """The overrides as a list, each a known `section.key=value` of the right type, or the error that names
    `name` as the caller wrote it: `overrides` in Python, `--set` at the CLI. Checked on their own (against the
    defaults, not yet validated together) so that a run being resumed hears of a typo in the caller's words
    before its checkpoint is read."""
    if isinstance(overrides, (str, bytes)):
        raise ArgumentTypeError(f"{name} must be a list of 'section.key=value' strings, got one string "
                                f"{clipped(overrides)}; wrap it in a list: {name}=[{clipped(overrides)}]")
    if isinstance(overrides, typing.Mapping):
        raise ArgumentTypeError(f"{name} must be a list of 'section.key=value' strings, got a mapping; write "
                                f"{name}=['train.epochs=2'], or give the mapping of sections as the config "
                                "({'train': {'epochs': 2}})")
    if not isinstance(overrides, typing.Sequence):
        raise ArgumentTypeError(f"{name} must be a list of 'section.key=value' strings, got {got(overrides)}; "
                                f"e.g. {_example(name)}")
    for i, text in enumerate(overrides):
        if not isinstance(text, str):
            raise ArgumentTypeError(f"{name}[{i}] must be a 'section.key=value' string, got {got(text)}; "
                                    f"e.g. {_example(name)}")
    scratch = Config()
    for text in overrides:
        try:
            _apply(scratch, *parse_override(text, name), name)
        except ArgumentValueError:
            raise
        except UserError as e:  # an unknown key or a value of the wrong kind: a bad value of this argument
            raise ArgumentValueError(str(e)) from None
    return list(overrides)


def _check_source(source: object, name: str) -> None:
    if not isinstance(source, (str, os.PathLike, typing.Mapping, Config)):
        raise ArgumentTypeError(f"{name} must be a YAML path, a mapping of sections or a Config, got {got(source)}")


def load_config(source: str | Path | typing.Mapping[str, Any] | None, overrides: typing.Sequence[str] = (),
                base: Config | None = None, *, name: str = "overrides") -> Config:
    """Merge defaults (or `base`), the YAML file (or a mapping of the same sections) and the `section.key=value`
    overrides (`name`: how the caller spells them, `overrides` or `--set`), then validate."""
    overrides = check_overrides(overrides, name)
    if source is not None:
        _check_source(source, "source")
    if isinstance(source, Config):
        raise ArgumentTypeError("source is a Config; pass it as base=, or use config_from_source")
    cfg = copy.deepcopy(base) if base is not None else Config()
    if isinstance(source, typing.Mapping):
        _apply_sections(cfg, source, "the config mapping")
    elif source is not None:
        path = Path(source)
        _apply_sections(cfg, _read_yaml(path), str(path))
        if cfg.log.name is None:
            cfg.log.name = path.stem
    for text in overrides:
        section, key, value = parse_override(text, name)
        _apply(cfg, section, key, value, name)
    if cfg.log.name is None:
        cfg.log.name = "run"
    validate(cfg)
    return cfg


def _apply_sections(cfg: Config, raw: typing.Mapping[str, Any], origin: str) -> None:
    for section, values in raw.items():
        if values is None:
            continue
        if not isinstance(values, typing.Mapping):
            raise UserError(f"config section '{section}' in {origin} must be a mapping of keys")
        for key, value in values.items():
            _apply(cfg, str(section), str(key), value, origin)


# What the Python API takes as a config: a YAML path, a mapping of sections, or a Config.
ConfigSource = str | Path | typing.Mapping[str, Any] | Config


def config_from_source(config: ConfigSource, overrides: typing.Sequence[str] = ()) -> Config:
    """A config from any ConfigSource, with `section.key=value` overrides applied on top."""
    _check_source(config, "config")
    if isinstance(config, Config):
        return load_config(None, overrides, base=config)
    return load_config(config, overrides)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Rebuild a config saved with a run or checkpoint (same checks as a file)."""
    cfg = Config()
    for section, values in raw.items():
        for key, value in (values or {}).items():
            _apply(cfg, section, key, value, "saved config")
    validate(cfg)
    return cfg


MAX_PARAMETERS = 10**10
MAX_BLOCK_SIZE = 2**20


def validate(cfg: Config) -> None:
    m, t, d = cfg.model, cfg.train, cfg.data

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UserError(msg)

    for key, value in CHOICES.items():
        section, name = key.split(".")
        actual = getattr(getattr(cfg, section), name)
        need(actual in value, f"config key '{key}' must be one of {', '.join(value)}, got '{actual}'")
    need(d.task is None or d.task in TASKS, f"config key 'data.task' must be one of {', '.join(TASKS)} or null "
                                            f"(text from data.path), got '{d.task}'{_suggest(str(d.task), TASKS)}")
    positive = {
        "model.block_size": m.block_size, "model.n_layer": m.n_layer, "model.n_head": m.n_head,
        "model.n_embd": m.n_embd, "model.mlp_ratio": m.mlp_ratio, "train.batch_size": t.batch_size,
        "train.epochs": t.epochs, "train.grad_accum_steps": t.grad_accum_steps,
        "train.eval_batch_size": t.eval_batch_size, "train.lr": t.lr, "train.muon_lr": t.muon_lr,
        "log.print_every": cfg.log.print_every,
    }
    optional_positive = {
        "train.steps_per_epoch": t.steps_per_epoch, "train.max_steps": t.max_steps,
        "train.global_batch_size": t.global_batch_size, "train.embedding_lr": t.embedding_lr,
        "train.max_time": t.max_time, "train.checkpoint_every": t.checkpoint_every, "train.eval_chars": t.eval_chars,
        "data.task_vocab": d.task_vocab, "data.task_length": d.task_length,
    }
    for key, value in positive.items():
        need(value > 0 and math.isfinite(value), f"config key '{key}' must be positive, got {value}")
    for key, value in optional_positive.items():
        need(value is None or (value > 0 and math.isfinite(value)),
             f"config key '{key}' must be positive or null, got {value}")
    for key, value in {"train.min_lr": t.min_lr, "train.warmup_steps": t.warmup_steps,
                       "train.weight_decay": t.weight_decay, "train.muon_weight_decay": t.muon_weight_decay,
                       "train.grad_clip": t.grad_clip,
                       "log.sample_chars": cfg.log.sample_chars}.items():
        need(value >= 0 and math.isfinite(value), f"config key '{key}' must be >= 0, got {value}")
    need(t.min_lr <= t.lr, f"config key 'train.min_lr' ({t.min_lr}) must not exceed train.lr ({t.lr})")
    need(0.0 < t.decay_fraction <= 1.0, f"config key 'train.decay_fraction' must be in (0, 1], got {t.decay_fraction}")
    need(0.0 <= m.dropout < 1.0, f"config key 'model.dropout' must be in [0, 1), got {m.dropout}")
    need(0.0 < d.val_fraction < 1.0, f"config key 'data.val_fraction' must be in (0, 1), got {d.val_fraction}")
    for key, value in {"train.beta1": t.beta1, "train.beta2": t.beta2, "train.muon_momentum": t.muon_momentum}.items():
        need(0.0 <= value < 1.0, f"config key '{key}' must be in [0, 1), got {value}")
    need(m.n_embd % m.n_head == 0,
         f"model.n_embd ({m.n_embd}) must be divisible by model.n_head ({m.n_head}); change one of them")
    # Far past any model attnlm is for, yet large enough not to stand in anyone's way: a typo here
    # (a few extra zeros) would otherwise try to allocate the model and hang or exhaust memory.
    params = m.n_layer * (4 + 2 * m.mlp_ratio) * m.n_embd ** 2
    need(params <= MAX_PARAMETERS, f"model.n_layer ({m.n_layer}) and model.n_embd ({m.n_embd}) make about {params:.2g} "
                                   f"parameters, more than attnlm builds ({MAX_PARAMETERS:.0e}); make the model smaller")
    need(m.block_size <= MAX_BLOCK_SIZE, f"config key 'model.block_size' must be at most {MAX_BLOCK_SIZE:,} "
                                         f"characters, got {m.block_size}")
    head = m.n_embd // m.n_head
    need(m.pos != "rope" or head % 2 == 0,
         f"rotary positions need an even head size, got n_embd/n_head = {head}; change n_embd or n_head")
    check_device_name(t.device, "config key 'train.device'")
    need(0 <= t.seed <= MAX_SEED, f"config key 'train.seed' must be from 0 to 2**64 - 1 (the seeds torch takes), "
                                  f"got {t.seed}")
    need(bool(cfg.log.name) and not set("/\\") & set(cfg.log.name) and cfg.log.name not in (".", ".."),
         f"log.name must be a plain folder name, got '{cfg.log.name}'")


def resolve_accumulation(cfg: Config, world: int) -> Config:
    """The config with train.grad_accum_steps derived from train.global_batch_size for `world` processes.

    Done once the number of processes is known (torchrun's WORLD_SIZE), so one config file gives the
    same effective batch on 1 process or on 8.
    """
    t = cfg.train
    if t.global_batch_size is None:
        return cfg
    per_step = t.batch_size * world
    if t.global_batch_size % per_step:
        raise UserError(f"train.global_batch_size ({t.global_batch_size}) must be a multiple of train.batch_size x "
                        f"processes = {t.batch_size} x {world} = {per_step}; change one of them")
    steps = t.global_batch_size // per_step
    if t.grad_accum_steps not in (1, steps):
        raise UserError(f"train.grad_accum_steps ({t.grad_accum_steps}) contradicts train.global_batch_size "
                        f"({t.global_batch_size}), which gives {steps} on {world} process(es); set only one of them")
    cfg = copy.deepcopy(cfg)
    cfg.train.grad_accum_steps = steps
    return cfg


def model_differences(a: ModelConfig, b: ModelConfig) -> list[str]:
    """`model.KEY` for every key where two model sections differ."""
    return [f"model.{k}" for k in vars(a) if getattr(a, k) != getattr(b, k)]


def reference() -> list[tuple[str, str, str]]:
    """(key, default, doc) for every field: the config reference in docs/configuration.md is generated from this."""
    rows = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            rows.append((f"{section}.{f.name}", repr(f.default), f.metadata["doc"]))
    return rows
