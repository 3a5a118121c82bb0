"""The explorer's JSON answers: check a request, ask the model (through model_access), shape the reply.

Each handler takes the parsed request (query parameters or a JSON body, as a dict) and returns a dict to send
as JSON, or raises ApiError with the HTTP status and a message the page shows as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from attnlm.config import MAX_SEED
from attnlm.errors import UserError
from attnlm.explore.model_access import TOP_K, ExploredModel
from attnlm.inspection.heads import SCORES

MAX_SAMPLE = 500
NEXT_SHOWN = 10  # bars of the next-character distribution
DECIMALS = 5  # weights to 1e-5: the page shows two decimals, tests compare with the model at 1e-4


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _rounded(t: torch.Tensor, decimals: int = DECIMALS) -> Any:
    return torch.round(t.double(), decimals=decimals).tolist()


def _shown(value: Any) -> str:
    """A value as a message quotes it: short, and a list or object by its kind, not its contents."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    return repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."


def _field(request: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """One field of a request, of the given type, or a 400 naming the field."""
    if name not in request or request[name] is None:
        if default is None:
            raise ApiError(400, f"missing field '{name}'")
        return default
    value = request[name]
    # Text as query parameters bring it; a whole number past the largest seed is no index, length or seed (and
    # its digits would fill the message).
    if kind is int and isinstance(value, str) and len(value.strip()) <= 20:
        try:
            value = int(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            value = float(value)
        except (ValueError, OverflowError):  # OverflowError: an int past float's range
            value = (math.inf if value > 0 else -math.inf) if isinstance(value, int) else value
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ApiError(400, f"field '{name}' must be {'text' if kind is str else 'a number'}, got {_shown(value)}")
    if kind is int and abs(value) > MAX_SEED:
        raise ApiError(400, f"field '{name}' is far out of range, got a number of {len(str(abs(value)))} digits")
    return value


def _in_range(name: str, value: int, count: int) -> int:
    if not 0 <= value < count:
        raise ApiError(400, f"{name} {value} is out of range: the model has {count} ({name} 0 to {count - 1})")
    return value


def _text(m: ExploredModel, request: dict[str, Any]) -> str:
    text = _field(request, "text", str, "")
    if len(text) > 100_000:
        raise ApiError(413, "the text is far longer than any model context; shorten it")
    try:
        m.check_text(text)
    except UserError as e:
        raise ApiError(400, str(e)) from None
    return text


def info(m: ExploredModel, request: dict[str, Any]) -> dict[str, Any]:
    cfg = m.config.model
    return {
        "source": m.source,
        "run": str(m.run_dir) if m.run_dir else None,
        "model": {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd, "block_size": cfg.block_size,
                  "pos": cfg.pos, "mlp": cfg.mlp, "params": m.module.num_params()},
        "vocab": m.vocab.chars,
        "default_text": m.default_text(),
        "attention_epochs": m.attention_epochs(),
    }


def _top_predictions(m: ExploredModel, probs: torch.Tensor) -> list[list[dict[str, Any]]]:
    """The TOP_K likeliest next characters at every position: probs (T, V) -> T lists of {char, label, p}."""
    p, ids = probs.topk(min(TOP_K, probs.shape[-1]), dim=-1)  # (T, K)
    return [[{"char": m.vocab.chars[i], "label": m.label(m.vocab.chars[i]), "p": round(q, 4)}
             for q, i in zip(qs, js, strict=True)] for qs, js in zip(p.tolist(), ids.tolist(), strict=True)]


def analyze(m: ExploredModel, request: dict[str, Any]) -> dict[str, Any]:
    """Attention of every layer and head, the same between words, and the top next characters per position."""
    a = m.analyze(_text(m, request))
    predictions = _top_predictions(m, a.probs)
    return {
        "text": a.text,
        "labels": [m.label(c) for c in a.text],
        "weights": _rounded(a.weights),
        "predictions": predictions,
        "words": {"labels": [label for label, _ in a.words], "positions": [pos for _, pos in a.words],
                  "weights": _rounded(a.word_weights)},
    }


def ablate(m: ExploredModel, request: dict[str, Any]) -> dict[str, Any]:
    """The top next characters per position with the heads in "off" ("L.H": layer.head, from 0) switched off
    (their output z zeroed before the output projection), the loss on the text with them off and with every head
    on, and the positions whose likeliest next character changed."""
    text = _text(m, request)
    cfg = m.config.model
    off = request.get("off")
    if off is None:
        raise ApiError(400, "missing field 'off': a list of heads \"L.H\" to switch off ([] for none)")
    if not isinstance(off, list):
        raise ApiError(400, f"field 'off' must be a list of heads \"L.H\" (layer.head, from 0), got {_shown(off)}")
    heads: list[tuple[int, int]] = []
    for key in off:
        # Two whole numbers as head_key writes them: ASCII digits, no sign, space or leading zero.
        parts = key.split(".") if isinstance(key, str) else []
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 9 and (p == "0" or p[0] != "0")
                                      for p in parts):
            raise ApiError(400, f"'off' lists {_shown(key)}, which is not a head \"L.H\" (layer.head, from 0, "
                                "such as \"1.0\")")
        layer, head = int(parts[0]), int(parts[1])
        if layer >= cfg.n_layer or head >= cfg.n_head:
            raise ApiError(400, f"head {key} in 'off' is out of range: the model has {cfg.n_layer} layers of "
                                f"{cfg.n_head} heads (0.0 to {cfg.n_layer - 1}.{cfg.n_head - 1})")
        if (layer, head) in heads:
            raise ApiError(400, f"head {key} is listed twice in 'off'")
        heads.append((layer, head))
    a = m.ablate(text, heads)
    predictions = _top_predictions(m, a.probs)
    return {"text": text, "labels": [m.label(c) for c in text], "off": off, "predictions": predictions,
            "flipped": a.flipped,
            "loss": None if a.loss is None else round(a.loss, DECIMALS),
            "intact_loss": None if a.intact_loss is None else round(a.intact_loss, DECIMALS)}


def trace(m: ExploredModel, request: dict[str, Any]) -> dict[str, Any]:
    """One head's computation for one query position i, with the model's numbers: x_i, q_i, every k_j and
    v_j, the scores q_i.k_j / sqrt(d), the softmax row a_i and z_i = sum_j a_ij v_j."""
    text = _text(m, request)
    cfg = m.config.model
    layer = _in_range("layer", _field(request, "layer", int, 0), cfg.n_layer)
    head = _in_range("head", _field(request, "head", int, 0), cfg.n_head)
    i = _in_range("query", _field(request, "query", int, len(text) - 1), len(text))
    t = m.trace(text, layer, head).tensors  # each (1, ...)
    q, k, v = t["q"][0], t["k"][0], t["v"][0]  # (T, D)
    row = t["weights"][0, i]  # (T,)
    weighted = row[: i + 1, None] * v[: i + 1]  # (i+1, D): a_ij v_j
    z = t["out"][0, i]  # (D,) the head's output, which run_trace checked against the model's own
    return {
        "text": text, "labels": [m.label(c) for c in text], "layer": layer, "head": head, "query": i,
        "d": q.shape[-1], "sqrt_d": math.sqrt(q.shape[-1]),
        "x": _rounded(t["attn_in"][0, i]),
        "q": _rounded(q[i]), "k": _rounded(k), "v": _rounded(v),
        "scores": [round(float(s), DECIMALS) if j <= i else None for j, s in enumerate(t["scores"][0, i].tolist())],
        "weights": _rounded(row),
        "weighted_v": _rounded(weighted),
        "z": _rounded(z),
        "row_sum": float(row.sum()),
        "sum_error": float((weighted.sum(0) - z).abs().max()),
    }


def _sampling(request: dict[str, Any]) -> tuple[float, int | None, float | None]:
    """Temperature, top-k and top-p of a request, checked; top-k 0 and top-p 1 (their defaults) mean off."""
    temperature = _field(request, "temperature", float, 0.8)
    top_k = _field(request, "top_k", int, 0)
    top_p = _field(request, "top_p", float, 1.0)
    if not (0 < temperature <= 10 and math.isfinite(temperature)):
        raise ApiError(400, f"temperature must be in (0, 10], got {temperature}")
    if top_k < 0:
        raise ApiError(400, f"top_k must be a whole number >= 1, or 0 for no top-k filtering, got {top_k}")
    if not (0 < top_p <= 1 and math.isfinite(top_p)):
        raise ApiError(400, f"top_p must be in (0, 1] (1: no top-p filtering), got {top_p}")
    return temperature, top_k or None, None if top_p == 1 else top_p


def sample(m: ExploredModel, request: dict[str, Any]) -> dict[str, Any]:
    text = _text(m, request)
    n = _field(request, "n", int, 200)
    seed = _field(request, "seed", int, 0)
    if not 1 <= n <= MAX_SAMPLE:
        raise ApiError(400, f"n must be between 1 and {MAX_SAMPLE} characters, got {n}")
    temperature, top_k, top_p = _sampling(request)
    if not 0 <= seed <= MAX_SEED:
        raise ApiError(400, f"seed must be between 0 and {MAX_SEED}, got {seed}")
    return {"text": text, "seed": seed, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "continuation": m.sample(text, n, seed, temperature, top_k, top_p)}


def next_char(m: ExploredModel, request: dict[str, Any]) -> dict[str, Any]:
    """The distribution the first sampled character is drawn from: the model's after the whole text, under the
    temperature, top-k and top-p given (filtered and renormalised, as Model.generate draws), its top 10."""
    text = _text(m, request)
    temperature, top_k, top_p = _sampling(request)
    probs = m.next_distribution(text, temperature, top_k, top_p)  # (V,) sums to 1, zero where filtered out
    p, ids = probs.topk(min(NEXT_SHOWN, probs.numel()))
    return {"text": text, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "kept": int((probs > 0).sum()), "vocab_size": probs.numel(),
            "next": [{"char": m.vocab.chars[i], "label": m.label(m.vocab.chars[i]), "p": round(q, DECIMALS)}
                     for q, i in zip(p.tolist(), ids.tolist(), strict=True) if q > 0]}


def training(m: ExploredModel, request: dict[str, Any]) -> dict[str, Any]:
    """The run's epoch and step rows, the epochs with saved attention, and the head scores after each epoch
    (epoch 0: before training) as {"epoch", "step", "heads": {"layer.head": {score: value}}}."""
    return {"run": str(m.run_dir) if m.run_dir else None, "epochs": m.epochs(),
            "steps": [{k: r.get(k) for k in ("step", "loss", "lr", "grad_norm")} for r in m.steps()],
            "attention_epochs": m.attention_epochs(), "scores": list(SCORES),
            "heads": [{"epoch": s.epoch, "step": s.step, "heads": s.scores.heads} for s in m.head_history()]}


def epoch(m: ExploredModel, request: dict[str, Any]) -> dict[str, Any]:
    """The attention after epoch N: of the given "text" under the weights the run kept then ("replayed":
    "typed"), or else of the probe text saved then ("replayed": "probe", "reason" saying why)."""
    n = _field(request, "epoch", int)
    text = _text(m, request) if request.get("text") is not None else None  # a bad one is refused, weights or not
    reason = None
    if text is not None:
        kept = m.weight_epochs()
        if n in kept:
            try:
                saved = m.replay(n, text)
            except UserError as e:  # the file cut short or gone: the probe's attention is still there
                reason = str(e)
            else:
                return {"epoch": saved.epoch, "step": saved.step, "text": text, "labels": [m.label(c) for c in text],
                        "weights": _rounded(saved.weights), "replayed": "typed", "reason": None}
        else:
            reason = (f"this run kept no weights for epoch {n}" if kept else "this run kept no per-epoch weights")
    try:
        saved = m.epoch_attention(n)
    except UserError as e:
        raise ApiError(404, str(e)) from None
    return {"epoch": saved.epoch, "step": saved.step, "text": saved.text, "labels": [m.label(c) for c in saved.text],
            "weights": _rounded(saved.weights), "replayed": "probe", "reason": reason}


ROUTES: dict[str, Callable[[ExploredModel, dict[str, Any]], dict[str, Any]]] = {
    "/api/info": info, "/api/analyze": analyze, "/api/trace": trace, "/api/sample": sample,
    "/api/training": training, "/api/epoch": epoch, "/api/next": next_char,
    "/api/ablate": ablate,
}
FIELDS = {"/api/info": (), "/api/analyze": ("text",), "/api/trace": ("text", "layer", "head", "query"),
          "/api/sample": ("text", "n", "seed", "temperature", "top_k", "top_p"),
          "/api/next": ("text", "temperature", "top_k", "top_p"), "/api/training": (), "/api/epoch": ("epoch", "text"),
          "/api/ablate": ("text", "off")}


def answer(m: ExploredModel, path: str, request: dict[str, Any]) -> dict[str, Any]:
    """The reply of the endpoint at `path`; a field it does not take is refused by name (a mistyped
    "temprature" would otherwise be ignored in silence)."""
    unknown = [str(k) for k in request if k not in FIELDS[path]]
    if unknown:
        takes = f"it takes {', '.join(FIELDS[path])}" if FIELDS[path] else "it takes none"
        raise ApiError(400, f"unknown field {_shown(unknown[0])} for {path}; {takes}")
    return ROUTES[path](m, request)
