"""The pipeline trace: one attention head's data flow on a real text, stage by stage, as a table of what each
stage takes in, what it does, what it gives out (shapes) and sample values.

Every number comes from the model itself: forward hooks capture what the chosen layer really received and
what it fed to its output projection, `MultiHeadAttention.head(h).stages(x)` gives that head's Q, K, V,
scores, weights and output, and the model's own forward gives the logits. The head's weights and output are
checked against the model's before anything is shown.

One query position (the last by default) is followed through: its row of scores, weights and output, and the
next-character probabilities after it. Its full row, key by key (`Trace.row`), is recomputed from Q, K and V
with the formulas written out (score = q.k / sqrt(D), softmax, z = sum of weight * v) and checked against the
head's own numbers too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from attnlm.checks import check_index
from attnlm.data import Vocab
from attnlm.data.vocab import encode_checked
from attnlm.errors import UserError
from attnlm.labels import show_char
from attnlm.lm.model import AttnLM

TOP_K = 5


@dataclass
class Stage:
    title: str
    inputs: str
    does: str
    output: str
    values: list[str]


@dataclass
class Key:
    """One visible key of the query's row: its score, its weight and the sums so far."""

    position: int
    char: str
    score: float  # q_i . k_j / sqrt(D)
    weight: float  # softmax of the row's scores
    total: float  # the weights of keys 0..j summed: reaches 1 at the query itself
    z: torch.Tensor  # (D,) sum of weight * v over keys 0..j: reaches the head's output at the query


@dataclass
class Trace:
    text: str
    layer: int
    head: int
    stages: list[Stage]
    tensors: dict[str, torch.Tensor]  # every tensor shown, batch dimension kept: (1, T, ...)
    top: list[tuple[str, float]]  # the next character's likeliest candidates after the query
    query: int = -1  # the query position followed through (the last unless asked)
    row: list[Key] | None = None  # the query's attention row, key by key (positions 0..query)
    row_error: float = 0.0  # largest difference of the recomputed row's z from the head's output


def _num(x: float) -> str:
    s = f"{x:.2f}"
    return "0.00" if s == "-0.00" else s


def truncate(t: torch.Tensor, rows: int = 2, head: int = 2, tail: int = 1) -> str:
    """Values shortened so a tensor fits a line: `[[0.1, 0.3, ..., 0.2], [0.0, 0.5, ..., 0.1], ...]`.

    t: (1, T, X) or (T, X); the first `rows` rows, each cut to its first `head` and last `tail` values.
    """
    if t.dim() == 3:
        t = t[0]
    shown = []
    for row in t[:rows].tolist():
        cells = [_num(v) for v in row]
        if len(cells) > head + tail + 1:
            cells = cells[:head] + ["..."] + cells[len(cells) - tail :]
        shown.append("[" + ", ".join(cells) + "]")
    if t.shape[0] > rows:
        shown.append("...")
    return "[" + ", ".join(shown) + "]"


def shape(*dims: int) -> str:
    return " x ".join(str(d) for d in dims)


def encode_text(text: str, vocab: Vocab, block_size: int, name: str = "text") -> torch.Tensor:
    """The text to look at as ids (T,), refusing what the model cannot read; `name` is the argument as the
    caller wrote it (`text` in Python, `--text` at the CLI)."""
    example = f'{name} "To be, or not"' if name.startswith("--") else f"{name}='To be, or not'"
    return encode_checked(text, vocab, name, block_size, empty_hint=f"give at least one character, e.g. {example}")


@torch.no_grad()
def capture(model: AttnLM, idx: torch.Tensor, layer: int) -> dict[str, torch.Tensor]:
    """Run the model once on idx (1, T), recording with hooks what layer `layer` really saw.

    Returns embeddings (1, T, C), attn_in = norm1 of the residual stream (1, T, C), heads_out = all heads'
    outputs side by side before the output projection (1, T, C), logits (1, T, V) and the model's own
    weights of every head of that layer (1, H, T, T).
    """
    block = model.blocks[layer]
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        # model.drop is the last step of model.embed: its output is token + position embeddings.
        model.drop.register_forward_hook(lambda m, args, out: seen.__setitem__("embeddings", out.detach().clone())),
        block.attn.register_forward_pre_hook(lambda m, args: seen.__setitem__("attn_in", args[0].detach().clone())),
        block.attn.proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("heads_out", args[0].detach().clone())),
    ]
    was_training = model.training
    model.eval()
    try:
        logits, attention = model(idx, return_attention=True)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {**seen, "logits": logits, "model_weights": attention[layer]}


def vector(t: torch.Tensor, head: int = 2, tail: int = 1) -> str:
    """A (D,) vector shortened like `truncate`: [0.10, 0.30, ..., 0.20]."""
    return truncate(t[None], rows=1, head=head, tail=tail)[1:-1]


@torch.no_grad()
def query_row(s: dict[str, torch.Tensor], ids: list[int], chars: str, query: int) -> tuple[list[Key], float]:
    """The query's attention row recomputed from the head's Q, K, V (1, T, D) in the textbook's formulas,
    key by key, with running sums; and the largest difference of its z from the head's output row.

    Raises RuntimeError if the recomputed weights differ from the head's: a bug, never shown."""
    q, k, v = s["q"][0].float(), s["k"][0].float(), s["v"][0].float()  # (T, D) each
    D = q.shape[-1]
    scores = (k[: query + 1] @ q[query]) / math.sqrt(D)  # (query + 1,): q_i . k_j / sqrt(D), keys 0..i only
    weights = torch.softmax(scores, dim=-1)  # the future is not in the row at all: masked
    theirs = s["weights"][0, query, : query + 1].float()
    if not torch.allclose(weights, theirs, atol=1e-5, rtol=1e-4):
        raise RuntimeError(f"trace bug: query {query}'s recomputed weights differ from the head's "
                           f"({(weights - theirs).abs().max()})")
    keys, z, total = [], torch.zeros(D), 0.0
    for j in range(query + 1):
        z = z + weights[j].cpu() * v[j].cpu()  # (D,) sum_j' <= j of a_ij' v_j'
        total += float(weights[j])
        keys.append(Key(j, chars[ids[j]], float(scores[j]), float(weights[j]), total, z))
    return keys, float((z - s["out"][0, query].float().cpu()).abs().max())


@torch.no_grad()
def run_trace(model: AttnLM, vocab: Vocab, text: str, layer: int = 0, head: int = 0, query: int | None = None) -> Trace:
    """Trace head `head` of layer `layer` on `text`, following query position `query` (default the last)."""
    cfg = model.cfg
    layer = check_index("layer", layer, cfg.n_layer, "layer")
    head = check_index("head", head, cfg.n_head, "head")
    device = next(model.parameters()).device
    idx = encode_text(text, vocab, cfg.block_size).to(device)[None]  # (1, T)
    T, C, H, V = idx.shape[1], cfg.n_embd, cfg.n_head, vocab.size
    i = T - 1 if query is None else check_index("query", query, T, "position", f"the text ({text!r})")
    D = C // H
    seen = capture(model, idx, layer)
    try:
        sa = model.blocks[layer].attn.head(head)
    except ValueError as e:
        raise UserError(f"cannot split this model into single heads ({e}); `attnlm attention` still shows its "
                        "weights, and models trained with model.bias: false can be traced") from None
    s = sa.stages(seen["attn_in"])  # q, k, v (1, T, D); scores, weights (1, T, T); out (1, T, D)
    verify(s["weights"], seen["model_weights"][:, head], s["out"], seen["heads_out"][..., head * D : (head + 1) * D])
    probs = torch.softmax(seen["logits"][0, i].float(), dim=-1)  # (V,) what follows the query's character
    p, ids = probs.topk(min(TOP_K, V))
    top = [(vocab.chars[i], float(q)) for q, i in zip(p.tolist(), ids.tolist(), strict=True)]

    w = s["weights"][0]  # (T, T)
    row_error = float((w.sum(-1) - 1).abs().max())
    future = torch.ones(T, T, dtype=torch.bool, device=w.device).triu(1)
    zeros = int((w[future] == 0).sum())
    same = float((s["weights"] - seen["model_weights"][:, head]).abs().max())
    rope = cfg.pos == "rope"
    project = f"multiply by head {head}'s W_Q, W_K, W_V ({C} x {D} each)"
    if cfg.qk_norm:
        project += ", RMS-normalise Q and K"
    if rope:
        project += ", rotate Q and K by position (RoPE)"
    later = _span("layer", layer + 1, cfg.n_layer - 1)
    before = text[: i + 1]
    shown = before if len(before) <= 24 else "..." + before[-21:]
    asks = f"query {i} {show_char(text[i])!r}"
    row, z_error = query_row(s, idx[0].tolist(), vocab.chars, i)
    stages = [
        Stage("Input embeddings", f"{shape(1, T)} characters {text!r}",
              "look up each character's vector"
              + (" and its pair's with the previous character (model.bigram)" if cfg.bigram else "")
              + (" (positions act inside attention, see RoPE below)" if rope else " and add its position's vector"),
              shape(1, T, C), [truncate(seen["embeddings"])]),
        Stage(f"Layer {layer} input", shape(1, T, C),
              ("normalise each position's vector" if layer == 0 else
               f"the residual stream after {_span('layer', 0, layer - 1)}, normalised")
              + f" ({cfg.norm}) so attention sees a steady scale",
              shape(1, T, C), [truncate(seen["attn_in"])]),
        Stage("Linear projections (Q, K, V)", shape(1, T, C), project, f"{shape(1, T, D)} for each Q, K, V",
              [f"{name.upper()}: {truncate(s[name], rows=1)}" for name in ("q", "k", "v")]),
        Stage("Attention scores", f"Q: {shape(1, T, D)}, K: {shape(1, T, D)}",
              f"dot product of every query with every key, divided by sqrt({D}) = {math.sqrt(D):.2f}",
              shape(1, T, T),
              [truncate(s["scores"], rows=2, head=3), f"{asks}, keys 0-{i}: {vector(s['scores'][0, i, : i + 1], 3)}"]),
        Stage("Softmax on scores", shape(1, T, T),
              "mask the future (a character never sees a later one), then softmax each row into probabilities",
              shape(1, T, T),
              [truncate(s["weights"], rows=3, head=3),
               f"{asks}, keys 0-{i}: {vector(s['weights'][0, i, : i + 1], 3)}",
               f"every row sums to 1 (largest error {row_error:.1e})",
               f"{zeros} of {T * (T - 1) // 2} weights above the diagonal are 0: the causal mask hides the future",
               f"equal to the model's own layer {layer} head {head} weights (largest difference {same:.1e})"]),
        Stage("Weighted sum of values", f"weights: {shape(1, T, T)}, V: {shape(1, T, D)}",
              "sum of the value vectors weighted by each row: z_i = sum_j a_ij v_j",
              shape(1, T, D), [truncate(s["out"]), f"{asks}: {vector(s['out'][0, i])}"]),
        Stage("Rest of the model", f"{shape(1, T, D)} from this head",
              ("join the other heads" if H > 2 else "join the other head" if H == 2 else "this is the only head")
              + ", project, add to the residual stream" + (", MLP" if cfg.mlp else "")
              + (f", {later}" if later else "") + ", final norm, linear head",
              f"{shape(1, T, V)} logits", [truncate(seen["logits"])]),
        Stage("Next-character probabilities",
              f"{shape(1, V)} logits of " + ("the last position" if i == T - 1 else f"position {i}"),
              f"softmax: what the model expects after {shown!r}", f"{V} probabilities, top {len(top)}",
              ["  ".join(f"{show_char(c)!r} {q:.3f}" for c, q in top)]),
    ]
    tensors = {"embeddings": seen["embeddings"], "attn_in": seen["attn_in"], **s, "logits": seen["logits"],
               "probs": probs[None]}
    return Trace(text, layer, head, stages, tensors, top, i, row, z_error)


def _span(word: str, first: int, last: int) -> str:
    """'layer 2' or 'layers 2-4'; empty when the span is empty."""
    if last < first:
        return ""
    return f"{word} {first}" if first == last else f"{word}s {first}-{last}"


def verify(weights: torch.Tensor, model_weights: torch.Tensor, out: torch.Tensor, model_out: torch.Tensor) -> None:
    """The head's explicit path must reproduce the model's own numbers; a mismatch is a bug, never shown."""
    for name, mine, theirs in (("weights", weights, model_weights), ("output", out, model_out)):
        if mine.shape != theirs.shape or not torch.allclose(mine, theirs, atol=1e-5, rtol=1e-4):
            diff = (mine - theirs).abs().max() if mine.shape == theirs.shape else "shape"
            raise RuntimeError(f"trace bug: the head's {name} differ from the model's ({diff})")


def render(trace: Trace, console: Console, source: str, row: bool = False) -> None:
    """The trace as `attnlm trace` prints it; `row`: then the query's attention row, key by key."""
    console.print(Text.assemble(("Pipeline trace", "bold"), f" of layer {trace.layer}, head {trace.head} of {source}"),
                  highlight=False)
    console.print(Text(f"text: {trace.text!r}"), highlight=False)
    for n, st in enumerate(trace.stages, 1):
        console.print()
        console.print(Text(f"{n} {st.title}", style="bold cyan"), highlight=False)
        # A grid keeps wrapped lines indented under their column in a narrow terminal.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=5, style="dim")
        grid.add_column(overflow="fold")
        for label, value in (("in", st.inputs), ("does", st.does), ("out", st.output)):
            grid.add_row(label, Text(value))
        for line in st.values:
            grid.add_row("", Text(line))
        console.print(Padding(grid, (0, 0, 0, 2), expand=False), highlight=False)
    if row:
        render_row(trace, console)


def render_row(trace: Trace, console: Console) -> None:
    """The query's full attention row: each visible key, its score, its weight and the running sums, the
    way the tutorials compute one context vector z_i = sum_j a_ij v_j by hand."""
    keys, i = trace.row or [], trace.query
    D = keys[0].z.shape[0] if keys else 0
    T = len(trace.text)
    console.print()
    console.print(Text(f"Attention row of query {i} {show_char(trace.text[i])!r}", style="bold cyan"), highlight=False)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=5, style="dim")
    grid.add_column(overflow="fold")
    grid.add_row("does", Text(f"score_j = q_{i} . k_j / sqrt({D}) for each key j <= {i}; weight_j = softmax of the "
                              f"scores; z = sum of weight_j * v_j, summed key by key"))
    console.print(Padding(grid, (0, 0, 0, 2), expand=False), highlight=False)
    table = Table.grid(padding=(0, 2))
    for name in ("key", "char", "score", "weight", "sum of weights", f"z so far ({D} values)"):
        table.add_column(name, justify="right" if name not in ("char", f"z so far ({D} values)") else "left")
    table.add_row(*(Text(h, style="dim") for h in ("key", "char", "score", "weight", "sum of weights",
                                                    f"z so far ({D} values)")))
    for key in keys:
        table.add_row(str(key.position), repr(show_char(key.char)), _num(key.score), f"{key.weight:.3f}",
                      f"{key.total:.3f}", vector(key.z))
    console.print(Padding(table, (0, 0, 0, 8), expand=False), highlight=False)
    checks = Table.grid(padding=(0, 1))
    checks.add_column(width=5)
    checks.add_column(overflow="fold")
    total = keys[-1].total if keys else 0.0
    checks.add_row("", Text(f"the weights sum to {total:.6f}; z equals the head's output at query {i} (stage 6; "
                            f"largest difference {trace.row_error:.1e})"))
    if i < T - 1:
        checks.add_row("", Text(f"keys {i + 1} to {T - 1} are later characters: masked, weight 0"))
    console.print(Padding(checks, (0, 0, 0, 2), expand=False), highlight=False)
