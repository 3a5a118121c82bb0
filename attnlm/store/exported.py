"""The export format (`attnlm export`): what an export folder holds and how it is read back.

Every file is checked before anything is built from it: config.json and vocab.json against each other and
against the tensors model.safetensors declares (its header is read and checked before its data), so an edited,
truncated or foreign file ends with one line naming it, never with a model that quietly gives wrong text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load

from attnlm.config import Config, config_from_dict
from attnlm.data.sources import NotText, open_regular, read_regular
from attnlm.data.vocab import Vocab
from attnlm.disk import size_text
from attnlm.errors import UserError
from attnlm.lm.model import AttnLM

FORMAT = "attnlm-export"


VERSION = 1


WEIGHTS, CONFIG, VOCAB, MODEL_CODE = "model.safetensors", "config.json", "vocab.json", "model.py"


# safetensors refuses tensors that share memory: a tied head is stored once, under the embedding's name, and
# the model re-ties it when built (model.tie_weights), so loading the embedding fills both.
TIED = {"head.weight": "tok_emb.weight"}

# Model keys that change how the weights are run, not what they mean: config.json may differ from the weights'
# own record in these (a reader may pick another attention kernel).
RUNTIME_KEYS = ("dropout", "attention")

JSON_LIMIT = 64 << 20  # config.json and vocab.json are kilobytes; a larger file is no export's
HEADER_LIMIT = 100_000_000  # safetensors' own limit on the header
ROTARY_LIMIT = 1 << 30  # bytes of rotary tables block_size may ask for (the weights cannot vouch for it)
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
AGAIN = "export the run again with `attnlm export RUN`"


def is_export(folder: Path) -> bool:
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def weights_metadata(model_section: dict[str, Any], chars: str) -> dict[str, str]:
    """What model.safetensors records of itself: the model section and the vocabulary the weights were trained
    with, so an edited config.json or vocab.json is caught even where the tensors' shapes cannot tell."""
    return {"format": FORMAT, "model": json.dumps(model_section, sort_keys=True),
            "vocab": json.dumps(list(chars))}


def _bad(path: Path, problem: str, fix: str = AGAIN) -> UserError:
    return UserError(f"{path} {problem}; {fix}")


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """One of the export's files read inside: a missing, special or unreadable file is one line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"{path.parent} is not a complete attnlm export ({path.name} is missing); {AGAIN}") from None
    except NotText as e:
        raise _bad(path, e.reason) from None
    except OSError as e:
        raise _bad(path, f"cannot be read ({e.strerror})", "check that you may read it") from None


def _read_json(path: Path) -> Any:
    with _reading(path):
        raw = read_regular(path, JSON_LIMIT)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"is not valid JSON ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_config(path: Path, meta: Any) -> tuple[Config, int, dict[str, str]]:
    """The config, vocabulary size and tied weights config.json gives, with its own parts agreeing."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path} is not an attnlm export's config; pass a folder `attnlm export` wrote")
    if meta.get("version") != VERSION:
        raise UserError(f"{path.parent} has export version {meta.get('version')!r}, this attnlm reads {VERSION}")
    model, rest, vocab_size, tied = meta.get("model"), meta.get("config", {}), meta.get("vocab_size"), meta.get("tied")
    if not isinstance(model, dict):
        raise _bad(path, "has no \"model\" section (a mapping of model keys)")
    if not isinstance(rest, dict) or not all(isinstance(v, dict) or v is None for v in rest.values()):
        raise _bad(path, "has a \"config\" that is not a mapping of config sections")
    if not _is_int(vocab_size) or vocab_size < 1:
        raise _bad(path, f"has vocab_size {vocab_size!r}, not a positive whole number")
    # "model" is what the model is built from (and what docs/export.md reads); the copy inside the whole
    # training config must say the same.
    copy = rest.get("model")
    if copy is not None and copy != model:
        differ = sorted(k for k in set(copy) | set(model) if copy.get(k, None) != model.get(k, None))
        raise _bad(path, f"has a \"model\" section that \"config\".\"model\" contradicts ({', '.join(differ)})",
                   "make the two say the same or " + AGAIN)
    try:
        cfg = config_from_dict({**rest, "model": model})
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as e:
        raise _bad(path, f"holds a config that cannot be read ({_first_line(e)})") from None
    want = TIED if cfg.model.tie_weights else {}
    if tied != want:
        raise _bad(path, f"has tied {tied!r} but model.tie_weights is {cfg.model.tie_weights} (which needs {want})")
    return cfg, vocab_size, want


def _check_vocab(path: Path, raw: Any, vocab_size: int, config: Path) -> Vocab:
    chars = raw.get("chars") if isinstance(raw, dict) else None
    if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise _bad(path, "must be {\"chars\": [...]}, a list of single characters")
    if len(set(chars)) != len(chars):
        twice = sorted({c for c in chars if chars.count(c) > 1})
        raise _bad(path, f"lists {', '.join(map(repr, twice[:5]))} more than once (each token needs its own "
                         "character)")
    if len(chars) != vocab_size:
        raise _bad(path, f"lists {len(chars)} characters but {config.name} has vocab_size {vocab_size}")
    return Vocab("".join(chars))


def _read_header(path: Path, f: BinaryIO) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor name -> {"dtype", "shape", "data_offsets"}, the metadata) of the safetensors file `f`, checked to
    be whole; its data is left unread."""
    try:
        size = f.seek(0, 2)
        f.seek(0)
        first = f.read(8)
        if len(first) < 8:
            raise _bad(path, f"is truncated ({size} bytes, not even a safetensors header)")
        n = int.from_bytes(first, "little")
        if n > HEADER_LIMIT or n > size - 8:
            raise _bad(path, f"is truncated or not a safetensors file (its header claims {n:,} bytes, the "
                             f"file has {size:,})")
        header = json.loads(f.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a mapping")
        metadata = header.pop("__metadata__", None) or {}
        end = 0
        for name, entry in header.items():
            offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                    or not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape)):
                raise ValueError(f"tensor {name} has no valid shape and data_offsets")
            end = max(end, offsets[1])
    except OSError as e:
        raise _bad(path, f"cannot be read ({e.strerror})", "check that you may read it") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"has an unreadable safetensors header ({_first_line(e)})") from None
    if 8 + n + end > size:
        raise _bad(path, f"is truncated ({size:,} bytes, its header needs {8 + n + end:,})")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(path, "has safetensors metadata that is not a mapping of strings")
    return header, metadata


def _check_weights(path: Path, header: dict[str, Any], metadata: dict[str, str], cfg: Config, vocab: Vocab,
                   tied: dict[str, str], config: Path) -> None:
    """config.json and vocab.json against what model.safetensors holds: the sizes its tensors show, its record of
    the config and vocabulary it was saved with, then every tensor's name, shape and dtype against those of the
    model config.json describes."""
    m = cfg.model
    emb = header.get("tok_emb.weight", {}).get("shape")
    if emb is None or len(emb) != 2:
        raise _bad(path, "holds no token embedding (tok_emb.weight); it is not an attnlm model's weights")
    layers = {int(name.split(".")[1]) for name in header if name.startswith("blocks.") and name.split(".")[1].isdecimal()}
    pos = header.get("pos_emb.weight", {}).get("shape")
    facts = [("vocab_size", vocab.size, emb[0]), ("model.n_embd", m.n_embd, emb[1]),
             ("model.n_layer", m.n_layer, max(layers) + 1 if layers else 0)]
    if m.pos == "learned" and pos is not None and len(pos) == 2:
        facts.append(("model.block_size", m.block_size, pos[0]))
    differ = [f"{key} {said} (the weights: {found})" for key, said, found in facts if said != found]
    if differ:
        raise _bad(config, f"does not match {path.name}: {', '.join(differ)}", f"put back the weights' values or {AGAIN}")
    if "model" in metadata:  # weights that carry only the format have no record to compare
        try:
            saved = json.loads(metadata["model"])
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise _bad(path, "has an unreadable record of its model section")
        ours = cfg.to_dict()["model"]
        differ = [f"model.{k} {ours.get(k)!r} (the weights: {v!r})" for k, v in sorted(saved.items())
                  if k not in RUNTIME_KEYS and ours.get(k) != v]
        if differ:
            raise _bad(config, f"does not match {path.name}: {', '.join(differ)}",
                       f"put back the weights' values or {AGAIN}")
    if "vocab" in metadata:
        try:
            saved_chars = json.loads(metadata["vocab"])
        except ValueError:
            saved_chars = None
        if saved_chars != list(vocab.chars):
            raise _bad(config.with_name(VOCAB), f"does not match the vocabulary {path.name} was trained with",
                       f"put back the original vocab.json or {AGAIN}")
    rotary = m.block_size * (m.n_embd // m.n_head) * 8  # cos, sin (4 bytes) and turn (8) per pair of features
    if m.pos == "rope" and rotary > ROTARY_LIMIT:
        raise _bad(config, f"asks for model.block_size {m.block_size}, whose rotary tables would take "
                           f"{size_text(rotary)}", f"put back the original value or {AGAIN}")
    with torch.device("meta"):  # shapes only: nothing is allocated
        shaped = AttnLM(m, vocab.size)
    want = {name: t for name, t in shaped.state_dict().items() if name not in tied}
    problems = [f"{name} is missing" for name in sorted(set(want) - set(header))]
    problems += [f"{name} is unexpected" for name in sorted(set(header) - set(want))]
    for name in sorted(set(want) & set(header)):
        shape, dtype = header[name]["shape"], DTYPES.get(header[name].get("dtype"))
        if shape != list(want[name].shape):
            problems.append(f"{name} has shape {shape}, config.json needs {list(want[name].shape)}")
        elif dtype != want[name].dtype:
            problems.append(f"{name} is {header[name].get('dtype')}, not {str(want[name].dtype).removeprefix('torch.')}")
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise _bad(path, f"does not hold the model {config.name} describes: {'; '.join(problems[:3])}{more}",
                   f"put back the original {config.name} or {AGAIN}")


def load_export(folder: str | Path, device: torch.device | str = "cpu") -> tuple[AttnLM, Vocab, Config, dict[str, Any]]:
    """(model in eval mode, vocab, config, config.json's contents) from an export folder.

    Raises UserError naming the file and the fix for a missing, unreadable or inconsistent file.
    """
    folder = Path(folder)
    config_path, vocab_path, weights_path = folder / CONFIG, folder / VOCAB, folder / WEIGHTS
    meta = _read_json(config_path)
    cfg, vocab_size, tied = _check_config(config_path, meta)
    vocab = _check_vocab(vocab_path, _read_json(vocab_path), vocab_size, config_path)
    try:
        with _reading(weights_path), open_regular(weights_path) as f:
            header, metadata = _read_header(weights_path, f)
            # Read only once it is known to hold the model config.json describes, so its size is that model's.
            _check_weights(weights_path, header, metadata, cfg, vocab, tied, config_path)
            f.seek(0)
            tensors = load(f.read())
    except SafetensorError as e:
        raise _bad(weights_path, f"is not a valid safetensors file ({_first_line(e)})") from None
    model = AttnLM(cfg.model, vocab.size)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if set(missing) != set(tied) or unexpected:  # ruled out by the checks above
        raise RuntimeError(f"weights missing: {sorted(missing)}, unexpected: {sorted(unexpected)}")
    return model.to(device).eval(), vocab, cfg, meta
