"""The pipeline trace: one attention head's data flow on a real text, stage by stage, as a table of what each
stage takes in, what it does, what it gives out (shapes) and sample values.

Every number comes from the model itself: forward hooks capture what the chosen layer really received and
what it fed to its output projection, `MultiHeadAttention.head(h).stages(x)` gives that head's Q, K, V,
scores, weights and output, and the model's own forward gives the logits. The head's weights and output are
checked against the model's before anything is shown.
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
class Trace:
    text: str
    layer: int
    head: int
    stages: list[Stage]
    tensors: dict[str, torch.Tensor]  # every tensor shown, batch dimension kept: (1, T, ...)
    top: list[tuple[str, float]]  # the next character's likeliest candidates


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


@torch.no_grad()
def run_trace(model: AttnLM, vocab: Vocab, text: str, layer: int = 0, head: int = 0) -> Trace:
    cfg = model.cfg
    layer = check_index("layer", layer, cfg.n_layer, "layer")
    head = check_index("head", head, cfg.n_head, "head")
    device = next(model.parameters()).device
    idx = encode_text(text, vocab, cfg.block_size).to(device)[None]  # (1, T)
    T, C, H, V = idx.shape[1], cfg.n_embd, cfg.n_head, vocab.size
    D = C // H
    seen = capture(model, idx, layer)
    try:
        sa = model.blocks[layer].attn.head(head)
    except ValueError as e:
        raise UserError(f"cannot split this model into single heads ({e}); `attnlm attention` still shows its "
                        "weights, and models trained with model.bias: false can be traced") from None
    s = sa.stages(seen["attn_in"])  # q, k, v (1, T, D); scores, weights (1, T, T); out (1, T, D)
    verify(s["weights"], seen["model_weights"][:, head], s["out"], seen["heads_out"][..., head * D : (head + 1) * D])
    probs = torch.softmax(seen["logits"][0, -1].float(), dim=-1)  # (V,) what follows the text
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
    shown = text if len(text) <= 24 else "..." + text[-21:]
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
              shape(1, T, T), [truncate(s["scores"], rows=2, head=3)]),
        Stage("Softmax on scores", shape(1, T, T),
              "mask the future (a character never sees a later one), then softmax each row into probabilities",
              shape(1, T, T),
              [truncate(s["weights"], rows=3, head=3),
               f"every row sums to 1 (largest error {row_error:.1e})",
               f"{zeros} of {T * (T - 1) // 2} weights above the diagonal are 0: the causal mask hides the future",
               f"equal to the model's own layer {layer} head {head} weights (largest difference {same:.1e})"]),
        Stage("Weighted sum of values", f"weights: {shape(1, T, T)}, V: {shape(1, T, D)}",
              "sum of the value vectors weighted by each row: z_i = sum_j a_ij v_j",
              shape(1, T, D), [truncate(s["out"])]),
        Stage("Rest of the model", f"{shape(1, T, D)} from this head",
              ("join the other heads" if H > 2 else "join the other head" if H == 2 else "this is the only head")
              + ", project, add to the residual stream" + (", MLP" if cfg.mlp else "")
              + (f", {later}" if later else "") + ", final norm, linear head",
              f"{shape(1, T, V)} logits", [truncate(seen["logits"])]),
        Stage("Next-character probabilities", f"{shape(1, V)} logits of the last position",
              f"softmax: what the model expects after {shown!r}", f"{V} probabilities, top {len(top)}",
              ["  ".join(f"{show_char(c)!r} {q:.3f}" for c, q in top)]),
    ]
    tensors = {"embeddings": seen["embeddings"], "attn_in": seen["attn_in"], **s, "logits": seen["logits"],
               "probs": probs[None]}
    return Trace(text, layer, head, stages, tensors, top)


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


def render(trace: Trace, console: Console, source: str) -> None:
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
