"""What a resume may change, and the one line when it may not.

A resumed run continues its checkpoint, and the config inside checkpoints/last.pt is the run's. The run's
config.yaml is its readable copy: an edit there is no request (it may be a slip, or meant for a new run), so a
resume takes from it only the changes in SAFE_ON_RESUME, which leave the run the run it was, and refuses the
others. Overrides (`--set`, `overrides=`) and a config file given on resume are requests: they change any key
but the model section and train.optimizer, whose weights and moments the checkpoint holds. Every change taken is
printed. The training data is checked too: other ids than the run was trained on stop the resume, unless an
override of a data key asks for that data.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console

from attnlm import distributed
from attnlm.config import Config, config_from_dict, load_config, model_differences, parse_override, resolve_accumulation
from attnlm.data import Corpus
from attnlm.data.sources import describe
from attnlm.errors import UserError
from attnlm.store.run_info import (
    CONFIG_FILE,
    INFO_FILE,
    config_text,
    config_written,
    data_fingerprint,
    read_run_info,
    update_run_info,
)

if TYPE_CHECKING:
    from attnlm.training.loop import Trainer


def _longer(old: Any, new: Any) -> bool:
    """A limit raised or lifted (None: none): the run goes on further along the way it was going."""
    return new is None or (old is not None and new > old)


def _any(old: Any, new: Any) -> bool:
    return True


# The keys a resume takes from an edited config.yaml, each with the changes it takes. They lengthen the run, or
# set where and how fast it runs and what it shows and logs; none changes what a step computes from the
# checkpoint's weights, moments and data. Overrides are requests and may change more (see the docstring).
SAFE_ON_RESUME: dict[str, Callable[[Any, Any], bool]] = {
    "train.epochs": _longer, "train.max_steps": _longer, "train.max_time": _longer,
    "train.checkpoint_every": _any, "train.eval_batch_size": _any, "train.device": _any, "train.compile": _any,
    "data.cache_dir": _any,
    "log.dir": _any, "log.name": _any, "log.timestamp": _any, "log.tensorboard": _any, "log.attention_images": _any,
    "log.head_scores": _any, "log.epoch_weights": _any,
    "log.sample_chars": _any, "log.sample_prompt": _any, "log.print_every": _any,
}


def safe_on_resume(key: str, old: Any, new: Any) -> bool:
    rule = SAFE_ON_RESUME.get(key)
    return rule is not None and rule(old, new)


def fixed_on_resume(key: str) -> bool:
    """Keys whose state the checkpoint holds: the model's weights, the optimizer's moments."""
    return key.startswith("model.") or key == "train.optimizer"


@dataclass
class Change:
    key: str
    old: Any
    new: Any
    origin: str  # "override", or the config file it came from
    requested: bool  # an override or a config file given on resume, not an edit of the run's config.yaml

    def __str__(self) -> str:
        return f"{self.key} {_show(self.old)} -> {_show(self.new)}"


@dataclass
class Resumed:
    cfg: Config
    saved: Config  # the checkpoint's
    changes: list[Change]
    override_keys: set[str]
    written_text: str | None  # config.yaml's text when attnlm wrote it and nobody edited it since


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _flat(cfg: Config) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in cfg.to_dict().items() for key, value in values.items()}


def _restore_hint(last: Path) -> str:
    return f"delete it and resume again to have it written from {last}, which holds the run's config"


def _run_config(run_dir: Path, saved: Config, last: Path, is_main: bool) -> tuple[Config, str | None]:
    """The checkpoint's config with the edits of the run's config.yaml, and the file's text if attnlm wrote it
    as it is (its differences from the checkpoint, if any, are then those of a resume that never saved)."""
    path = run_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not (run_dir / INFO_FILE).is_file():
            return saved, None  # a folder that never had one (made by a Trainer of one's own): nothing to compare
        if is_main:
            update_run_info(run_dir, cfg=saved)
        raise UserError(f"{path} is missing; it was written again from {last}, which holds the run's config: look "
                        "it over and resume again") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "it is not UTF-8 text"
        raise UserError(f"cannot read {path} ({reason}); make it readable, or {_restore_hint(last)}") from None
    if config_written(run_dir, text):
        return saved, text
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{where} ({getattr(e, 'problem', None) or e}); fix it, or "
                        f"{_restore_hint(last)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a mapping of config sections; fix it, or {_restore_hint(last)}")
    try:
        return load_config(raw, (), base=saved), None
    except UserError as e:
        raise UserError(f"{path} is not a valid config: {e}; fix it, or {_restore_hint(last)}") from None


def _refuse_edits(path: Path, last: Path, edits: list[Change]) -> UserError:
    listed = ", ".join(str(c) for c in edits)
    config = shlex.quote(str(path))
    if any(c.key.startswith("model.") for c in edits):
        fix = f"put the old values back, or train a new model with them: attnlm train --config {config} --name NAME"
    else:
        new_run = (f"start a new run from this checkpoint with them: attnlm train --config {config} "
                   f"--set train.init_from={shlex.quote(str(last))} --name NAME")
        if any(fixed_on_resume(c.key) for c in edits):
            fix = f"put the old values back, or {new_run}"
        else:
            fix = f"put the old values back (or give them with --set to change them on this resume), or {new_run}"
    return UserError(f"{path} differs from the config in {last} ({listed}), which a resume does not take from the "
                     f"file; {fix}")


def resumed_config(run_dir: Path, payload: dict[str, Any], config: str | Path | None, overrides: Sequence[str],
                   *, is_main: bool) -> Resumed:
    """The config a resume of `payload` (run_dir's last.pt) goes on with: the checkpoint's, with the safe edits of
    the run's config.yaml, or a `config` file given instead; then `overrides`. Raises UserError for the rest."""
    last = run_dir / "checkpoints" / "last.pt"
    saved = config_from_dict(payload["config"])
    written_text = None
    if config is None:
        given, written_text = _run_config(run_dir, saved, last, is_main)
        origin = str(run_dir / CONFIG_FILE)
    else:
        given, origin = load_config(config), str(config)
    cfg = load_config(None, overrides, base=given)
    override_keys = {".".join(parse_override(text)[:2]) for text in overrides}
    before, after, edited = _flat(saved), _flat(resolve_accumulation(cfg, distributed.current().world)), _flat(given)
    changes = []
    for key in before:
        if after[key] == before[key]:
            continue
        if key in override_keys or edited[key] == before[key]:  # the latter: derived (grad_accum_steps)
            changes.append(Change(key, before[key], after[key], "override", requested=True))
        else:
            changes.append(Change(key, before[key], after[key], origin, requested=config is not None))
    refused = [c for c in changes if not c.requested and not safe_on_resume(c.key, c.old, c.new)]
    if refused:
        raise _refuse_edits(run_dir / CONFIG_FILE, last, refused)
    diff = model_differences(cfg.model, saved.model)
    if diff:
        raise UserError(f"{last} was trained with a different model shape ({', '.join(diff)} "
                        "differ); resume with the run's own config or start a new run")
    if cfg.train.optimizer != saved.train.optimizer:  # the saved moments belong to the other optimizer
        raise UserError(f"{last} was trained with train.optimizer={saved.train.optimizer}, not "
                        f"{cfg.train.optimizer}; resume with the run's own optimizer or start a new run")
    if cfg.data.task != saved.data.task:  # text and a task, or two tasks, are not one stream of batches
        raise UserError(f"{last} was trained with data.task={_show(saved.data.task)}, not {_show(cfg.data.task)}; "
                        "resume with the run's own data.task or start a new run")
    return Resumed(cfg, saved, changes, override_keys, written_text)


def _data_problem(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    then, now = recorded.get("train", 0) + recorded.get("val", 0), current["train"] + current["val"]
    detail = f"{then:,} characters then, {now:,} now" if then != now else "as long, but other text"
    return f"is not the text this run was trained on ({detail})"


def _check_data(run_dir: Path, cfg: Config, corpus: Corpus, asked: bool) -> tuple[dict[str, Any] | None, str | None]:
    """The fingerprint to record (None: nothing new) and, for other data that an override asked for, what to say;
    other data not asked for is refused."""
    recorded = read_run_info(run_dir).get("data")
    if not isinstance(recorded, dict):
        return data_fingerprint(corpus), None  # a run from before data was recorded: known from now on
    sizes = (recorded.get("train"), recorded.get("val")) == (len(corpus.train), len(corpus.val))
    key = (corpus.meta or {}).get("key")
    if sizes and key is not None and key == recorded.get("key"):
        return None, None  # the very preparation the run started on: its folder is keyed by the sources' state
    current = data_fingerprint(corpus)
    if sizes and current["sha256"] == recorded.get("sha256"):
        return current, None  # the same ids, prepared again (e.g. after a touch): recorded anew for a quick next check
    if asked:
        return current, f"data.path {describe(cfg.data.path)} {_data_problem(recorded, current)}; taken as asked"
    spec = cfg.data.path
    value = spec if isinstance(spec, str) else json.dumps(spec, ensure_ascii=False)
    last = shlex.quote(str(run_dir / "checkpoints" / "last.pt"))
    raise UserError(f"data.path {describe(spec)} {_data_problem(recorded, current)}; put that text back, resume on "
                    f"this one anyway with --set {shlex.quote('data.path=' + value)}, or start a new run from this "
                    f"checkpoint on it: attnlm train --config {shlex.quote(str(run_dir / CONFIG_FILE))} --set "
                    f"train.init_from={last} --name NAME")


def accept_resume(run_dir: Path, resumed: Resumed, trainer: Trainer, console: Console, *, is_main: bool) -> None:
    """Once `trainer` has loaded the data: refuse other data than the run was trained on unless an override of a
    data key asks for it; then print each change taken and bring config.yaml and run.json up to date, so that
    they describe the checkpoint the run goes on from."""
    records = (run_dir / INFO_FILE).is_file()  # not in a folder made by a Trainer of one's own
    asked = any(k.startswith("data.") and k != "data.cache_dir" for k in resumed.override_keys)
    # A task's data is its config (data.task, refused above when changed): there are no files to have changed.
    text = trainer.task is None
    data, note = _check_data(run_dir, trainer.cfg, trainer.corpus, asked) if records and text else (None, None)
    if not is_main:
        return
    for change in resumed.changes:
        how = change.origin if safe_on_resume(change.key, change.old, change.new) else \
            f"{change.origin}: it changes how the run goes on"
        console.print(f"resuming with {change} ({how})", highlight=False, markup=False)
    if not records:
        return
    if note:
        console.print(f"resuming on other data: {note}", highlight=False, markup=False)
    # A finished run trains nothing (its checkpoint keeps its config and data); one that trains saves the
    # config it goes on with. config.yaml is rewritten when it differs from that and attnlm wrote it (e.g. a
    # resume with overrides that never saved), when a change was taken, and when it went missing.
    trains = not trainer.finished()
    target = trainer.cfg if trains else resumed.saved
    path = run_dir / CONFIG_FILE
    stale = resumed.written_text is not None and resumed.written_text != config_text(target)
    rewrite = stale or not path.is_file() or (trains and bool(resumed.changes))
    if note and not trains:
        data = None
    if rewrite or data is not None:
        update_run_info(run_dir, cfg=target if rewrite else None, data=data)
