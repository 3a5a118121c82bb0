"""Head ablation: the model's switch (MultiHeadAttention.switch_off) against the formula on random models, a
hand-built induction circuit whose heads have known jobs switched off one by one, `attnlm ablate` and
attnlm.api.ablate on a real trained run, and the explorer's /api/ablate, its refusals and its page."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from run_helpers import ROOT, run_cli
from test_explore import call

from attnlm.api import AblationReport, ablate, load
from attnlm.api.model import Model
from attnlm.config import Config, DataConfig, ModelConfig
from attnlm.data.tasks import SYMBOLS
from attnlm.data.vocab import Vocab
from attnlm.errors import ArgumentTypeError, ArgumentValueError, UnknownCharacters
from attnlm.explore.endpoints import ApiError, answer
from attnlm.explore.model_access import ExploredModel
from attnlm.explore.server import static_file
from attnlm.inspection.ablation import Measured, head_means, heads_off, predict, text_windows
from attnlm.inspection.heads import measure, repeat_probe
from attnlm.lm.model import AttnLM

CONFIGS = [
    ModelConfig(block_size=16, n_layer=2, n_head=4, n_embd=32, pos="learned", bias=True),
    ModelConfig(block_size=16, n_layer=2, n_head=2, n_embd=32, pos="rope", qk_norm=True, norm="rmsnorm"),
    ModelConfig(block_size=16, n_layer=3, n_head=2, n_embd=16, mlp=False),
]
IDS = ["learned-bias", "rope-qknorm", "attention-only"]


def random_model(cfg: ModelConfig, seed: int = 0) -> AttnLM:
    torch.manual_seed(seed)
    model = AttnLM(dataclasses.replace(cfg, attention="sdpa"), vocab_size=13).eval()
    with torch.no_grad():  # larger than at init, so that every head's output matters
        for block in model.blocks:
            block.attn.proj.weight.mul_(20.0)
            if block.attn.proj.bias is not None:
                block.attn.proj.bias.normal_()
    return model


def captured(model: AttnLM, layer: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What layer `layer`'s attention hands its output projection (B, T, C: the heads' z side by side) and
    what it returns (B, T, C), in one forward pass of idx."""
    seen = {}
    attn = model.blocks[layer].attn
    hooks = [attn.proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("z", args[0].clone())),
             attn.register_forward_hook(lambda m, args, out: seen.__setitem__("out", out[0].clone()))]
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return seen["z"], seen["out"]


# ----- the switch in the model ------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_every_head_on_is_the_normal_forward_exactly(cfg: ModelConfig) -> None:
    model = random_model(cfg)
    idx = torch.randint(13, (3, 16))
    with torch.no_grad():
        fast, _ = model(idx)
        explicit, _ = model(idx, return_attention=True)
        for block in model.blocks:
            block.attn.switch_off(torch.zeros(cfg.n_head, dtype=torch.bool))
        assert torch.equal(model(idx)[0], fast)
        assert torch.equal(model(idx, return_attention=True)[0], explicit)
        with heads_off(model, []):
            assert torch.equal(model(idx)[0], fast)
    assert all(block.attn.off is not None for block in model.blocks)  # heads_off put back what it found


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_with_heads_off_the_fast_path_still_equals_the_explicit_one(cfg: ModelConfig,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model = random_model(cfg)
    idx = torch.randint(13, (3, 16))
    kernel = F.scaled_dot_product_attention
    calls = []
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    with torch.no_grad():
        intact, _ = model(idx)
        assert len(calls) == cfg.n_layer  # no ablation: the fused kernel
        means = head_means(model, [(idx, idx)])
        for chosen in ([(0, 1)], [(0, 0), (1, 1)], [(cfg.n_layer - 1, 0)]):
            for mode_means in (None, means):
                with heads_off(model, chosen, mode_means):
                    fast, _ = model(idx)
                    explicit, _ = model(idx, return_attention=True)
                torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
                assert (fast - intact).abs().max() > 1e-4  # switching them off changed the logits
    assert len(calls) == cfg.n_layer * 8  # with heads off (and for their means), still the fused kernel
    assert all(block.attn.off is None and block.attn.off_value is None for block in model.blocks)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_a_head_off_takes_exactly_its_share_out_of_the_output_projection(cfg: ModelConfig) -> None:
    """attn(x) = W_O z + b with z the heads' outputs side by side: zero ablation of head h takes W_O[:, h] z_h away
    (the bias stays), mean ablation puts W_O[:, h] mean(z_h) in its place, the mean over every position and
    window."""
    model = random_model(cfg)
    idx = torch.randint(13, (3, 16))
    D = cfg.n_embd // cfg.n_head
    z, out = captured(model, 0, idx)
    mean = z.mean((0, 1))  # (C,)
    W = model.blocks[0].attn.proj.weight  # (C, C)
    means = head_means(model, [(idx, idx)])
    torch.testing.assert_close(means[0], mean.view(cfg.n_head, D))
    for h in range(cfg.n_head):
        cols = slice(h * D, (h + 1) * D)
        with heads_off(model, [(0, h)]):
            z_zero, out_zero = captured(model, 0, idx)
        with heads_off(model, [(0, h)], means):
            z_mean, out_mean = captured(model, 0, idx)
        assert torch.equal(z_zero[..., cols], torch.zeros_like(z[..., cols]))
        assert torch.equal(z_mean[..., cols], means[0][h].expand_as(z[..., cols]))  # the value it was given
        others = torch.ones(cfg.n_embd, dtype=torch.bool)
        others[cols] = False
        assert torch.equal(z_zero[..., others], z[..., others]) and torch.equal(z_mean[..., others], z[..., others])
        with torch.no_grad():
            torch.testing.assert_close(out_zero, out - z[..., cols] @ W[:, cols].T, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out_mean, out - (z[..., cols] - mean[cols]) @ W[:, cols].T, atol=1e-5, rtol=1e-5)


def test_head_means_average_every_position_of_every_window() -> None:
    model = random_model(CONFIGS[0])
    windows = [(torch.randint(13, (3, 16)), None), (torch.randint(13, (1, 5)), None)]  # a batch and a short tail
    zs = [captured(model, 1, x)[0].flatten(0, 1) for x, _ in windows]  # (B*T, C) each
    expected = torch.cat(zs).mean(0).view(4, 8)
    torch.testing.assert_close(head_means(model, windows)[1], expected)


def test_switch_off_refuses_a_mask_it_cannot_apply() -> None:
    attn = random_model(CONFIGS[0]).blocks[0].attn  # 4 heads of 8
    with pytest.raises(ValueError, match=r"off must be a bool tensor of shape \(4,\), got torch.bool \(3,\)"):
        attn.switch_off(torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"off must be a bool tensor of shape \(4,\), got torch.float32 \(4,\)"):
        attn.switch_off(torch.zeros(4))
    with pytest.raises(ValueError, match=r"value must be \(4, 8\), with off, got \(4, 4\)"):
        attn.switch_off(torch.zeros(4, dtype=torch.bool), torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"value must be \(4, 8\), with off"):
        attn.switch_off(None, torch.zeros(4, 8))
    assert attn.off is None and attn.off_value is None


def test_heads_off_turns_them_back_on_after_an_error() -> None:
    model = random_model(CONFIGS[0])
    with pytest.raises(RuntimeError, match="boom"), heads_off(model, [(1, 2)]):
        assert model.blocks[1].attn.off.tolist() == [False, False, True, False]
        raise RuntimeError("boom")
    assert all(block.attn.off is None for block in model.blocks)


def test_the_windows_know_where_each_prediction_sits() -> None:
    ids = torch.randint(13, (1000,))
    for max_chars in (None, 100):  # every window, then a fixed subset of them
        measured = text_windows(ids, 16, 8, max_chars)
        x = torch.cat([x.flatten() for x, _ in measured.windows])
        y = torch.cat([y.flatten() for _, y in measured.windows])
        assert torch.equal(x, ids[measured.positions]) and torch.equal(y, ids[measured.positions + 1])
    assert measured.predictions == 112  # 7 windows of 16


# ----- a hand-built induction circuit ---------------------------------------------------------------------
V = T = 16  # 16 symbols; a 16-character window: the probe is 8 random symbols, then the same 8 again
R = T // 2
TOK, POS, PREV, OUT = 0, V, V + T, 2 * V + T  # where each one-hot lives in the residual stream
SHARP = 40.0


def induction_circuit() -> AttnLM:
    """Two attention-only layers of two heads, weights set by hand. The residual stream holds one-hot blocks:
    the token, the position, the previous token (written by head 0.0) and the answer (written by head 1.0),
    which alone the unembedding reads. Heads 0.1 and 1.1 are all zeros.

    0.0, a previous-token head: the query of position i is position i-1, the key of j is j; it copies the token
        it finds into the previous-token block.
    1.0, an induction head: the query is the current token, the key of j the token before j, so it finds the
        position after an earlier occurrence of the current token and copies that position's token (the one
        that came next last time) into the answer block.
    """
    C = 3 * V + T
    cfg = ModelConfig(block_size=T, n_layer=2, n_head=2, n_embd=C, mlp=False, pos="learned", norm="rmsnorm")
    model = AttnLM(cfg, V).eval()
    eye_v = torch.eye(V)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.norm_f, *(block.norm1 for block in model.blocks)):
            norm.weight.fill_(1.0)
        model.tok_emb.weight[:, TOK : TOK + V] = eye_v
        model.pos_emb.weight[:, POS : POS + T] = torch.eye(T)
        previous, induction = model.blocks[0].attn, model.blocks[1].attn  # head 0 of each: rows [0, D) of Q, K, V
        previous.qkv.weight[0 : T - 1, POS + 1 : POS + T] = SHARP * torch.eye(T - 1)  # q_i = e_(i-1)
        previous.qkv.weight[C : C + T, POS : POS + T] = torch.eye(T)  # k_j = e_j
        previous.qkv.weight[2 * C : 2 * C + V, TOK : TOK + V] = eye_v  # v_j = the token at j
        previous.proj.weight[PREV : PREV + V, 0:V] = eye_v
        induction.qkv.weight[0:V, TOK : TOK + V] = SHARP * eye_v  # q_i = the token at i
        induction.qkv.weight[C : C + V, PREV : PREV + V] = eye_v  # k_j = the token before j
        induction.qkv.weight[2 * C : 2 * C + V, TOK : TOK + V] = eye_v  # v_j = the token at j
        induction.proj.weight[OUT : OUT + V, 0:V] = eye_v
        model.head.weight[:, OUT : OUT + V] = 10.0 * eye_v
    return model


def circuit_model() -> Model:
    """The circuit as attnlm.Model of a run trained on the induction task: ablate() measures it on the probe."""
    config = Config(data=DataConfig(task="induction", task_vocab=V), model=induction_circuit().cfg)
    return Model(induction_circuit(), Vocab.from_text(SYMBOLS[:V]), config, "the hand-built circuit")


def test_the_hand_built_circuit_is_the_textbook_one() -> None:
    scores = measure(induction_circuit(), repeat_probe(V, T)).heads
    assert scores["0.0"]["previous_token"] == 1.0
    assert scores["1.0"]["induction"] == pytest.approx(1.0, abs=0.07)  # the repeat's first row has no earlier match


def test_with_the_only_head_that_writes_the_answer_off_every_prediction_is_uniform() -> None:
    model = induction_circuit()
    probe = repeat_probe(V, T).ids
    with heads_off(model, [(1, 0)]), torch.no_grad():
        logits, _ = model(probe[None])
    assert torch.equal(logits, torch.zeros_like(logits))  # nothing reaches the unembedding: uniform, ln V each
    measured = Measured([(probe[None, :-1], probe[None, 1:])], torch.arange(T - 1))
    with heads_off(model, [(1, 0)]):
        assert predict(model, measured).loss == pytest.approx(math.log(V), abs=1e-6)


def test_switching_off_the_induction_circuit_costs_the_repeat_and_the_idle_heads_nothing() -> None:
    report = ablate(circuit_model())
    assert isinstance(report, AblationReport) and report.mode == "zero"
    assert report.predictions == R - 1 and "second copy" in report.measured_on
    assert report.intact_loss < 0.2  # the circuit predicts the repeat
    induction = report.heads["1.0"]
    assert induction.loss == pytest.approx(math.log(V), abs=1e-6)  # off: uniform over the 16 symbols
    assert induction.delta == pytest.approx(math.log(V) - report.intact_loss, abs=1e-6)
    # Every prediction of the repeat flips, to symbol 0 (the first of sixteen equal logits), except where 0 was
    # the right answer already.
    probe = repeat_probe(V, T).ids
    assert [f.position for f in induction.flips] == [i for i in range(R, T - 1) if probe[i + 1] != 0]
    assert all(f.after == "0" and f.before == SYMBOLS[int(probe[f.position + 1])] for f in induction.flips)
    assert all(f.char == SYMBOLS[int(probe[f.position])] for f in induction.flips)
    assert report.heads["0.0"].delta > 2.0  # no previous token to match: the induction head reads noise
    for idle in ("0.1", "1.1"):
        assert report.heads[idle].delta == 0.0 and report.heads[idle].flips == []
    assert report.to_json() == {key: result.delta for key, result in report.heads.items()}
    assert list(report.to_json()) == ["0.0", "0.1", "1.0", "1.1"]

    mean = ablate(circuit_model(), mode="mean")
    assert mean.intact_loss == report.intact_loss
    assert mean.heads["1.0"].delta > 1.0  # its average answer is no answer
    assert mean.heads["0.1"].delta == 0.0 and mean.heads["1.1"].delta == 0.0  # the mean of zeros is zero


def test_the_explorer_switches_the_heads_off_that_it_is_asked_to() -> None:
    m = ExploredModel(circuit_model(), None)
    text = "".join(SYMBOLS[i] for i in repeat_probe(V, T).ids)
    a = answer(m, "/api/ablate", {"text": text, "off": ["1.0"]})
    assert a["text"] == text and a["off"] == ["1.0"] and len(a["predictions"]) == T
    assert all(p["p"] == pytest.approx(1 / V, abs=1e-4) for row in a["predictions"] for p in row)  # uniform
    assert a["loss"] == pytest.approx(math.log(V), abs=1e-5)
    intact = answer(m, "/api/ablate", {"text": text, "off": []})
    assert intact["flipped"] == [] and intact["loss"] == intact["intact_loss"] == a["intact_loss"]
    # Off, every logit is 0 and the likeliest character the first, "0": what flipped is where it was not "0".
    tops = m.ablate(text, []).probs.argmax(-1)
    assert a["flipped"] == [i for i, top in enumerate(tops.tolist()) if top != 0] != []
    assert answer(m, "/api/ablate", {"text": "0", "off": ["0.1"]})["loss"] is None  # no next character to score
    with pytest.raises(ApiError, match=r"head 2.0 in 'off' is out of range: the model has 2 layers of 2 heads "
                                       r"\(0.0 to 1.1\)"):
        answer(m, "/api/ablate", {"text": text, "off": ["2.0"]})


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"model": 3}, ArgumentTypeError, "model must be an attnlm.Model, a run folder, a checkpoint file or None, "
                                      "got 3 (int)"),
    ({"mode": "half"}, ArgumentValueError, "mode must be 'zero' or 'mean', got 'half'"),
    ({"mode": 0}, ArgumentTypeError, "mode must be 'zero' or 'mean', got 0 (int)"),
    ({"text": 5}, ArgumentTypeError, "text must be a str, got 5 (int)"),
    ({"text": "0"}, ArgumentValueError, "text is too short to measure a loss on (1 character); give at least two"),
    ({"text": "0a"}, UnknownCharacters, "text has characters the model never saw: 'a'; use only characters from its "
                                        "training text"),
])
def test_ablate_names_a_wrong_argument(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        ablate(**{"model": circuit_model(), **kwargs})


# ----- a real trained run -------------------------------------------------------------------------------------
KEYS = ["0.0", "0.1", "1.0", "1.1"]  # run_helpers.TINY: 2 layers x 2 heads
TEXT = "To be, or not to be, that is the question."


def test_the_intact_loss_is_what_attnlm_eval_reports(trained_run) -> None:
    run_dir, _ = trained_run
    model = load(run_dir)
    report, evaluation = ablate(model), model.evaluate()
    assert report.intact_loss == pytest.approx(evaluation.loss, abs=1e-5)
    assert report.predictions == evaluation.tokens and "validation split" in report.measured_on
    on_text = ablate(model, text=TEXT, mode="mean")
    assert on_text.intact_loss == pytest.approx(model.evaluate(TEXT).loss, abs=1e-5)
    assert on_text.predictions == len(TEXT) - 1 and list(on_text.heads) == KEYS
    for result in on_text.heads.values():
        assert result.delta == pytest.approx(result.loss - on_text.intact_loss, abs=1e-12)
        assert all(0 <= f.position < len(TEXT) - 1 and f.char == TEXT[f.position] and f.before != f.after
                   for f in result.flips)


def test_ablate_prints_a_row_per_head_under_the_intact_loss(trained_run) -> None:
    run_dir, _ = trained_run
    result = run_cli("ablate", "--run", str(run_dir), "--text", TEXT, env={"COLUMNS": "150"}, check=True)
    report = ablate(load(run_dir), text=TEXT)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"head ablation of {run_dir / 'checkpoints' / 'best.pt'}: each head in turn "
                               "switched off (zero ablation: its output z replaced by zeros")
    assert lines[1].startswith(f"on the text given ({len(TEXT)} characters), {len(TEXT) - 1} predictions: intact loss ")
    assert float(lines[1].split()[-1]) == pytest.approx(report.intact_loss, abs=2e-4)
    assert lines[2].split()[:5] == ["head", "loss", "off", "Δ", "loss"]
    for key, line in zip(KEYS, lines[3:7], strict=True):
        head = report.heads[key]
        cells = line.split()
        assert cells[0] == key and cells[3] == str(len(head.flips)) and cells[2][0] in "+-"
        assert [float(cells[1]), float(cells[2])] == pytest.approx([head.loss, head.delta], abs=2e-4)
        if head.flips:
            f = head.flips[0]
            assert f"{f.position} {f.char.replace(' ', '␣')}: {f.before.replace(' ', '␣')}→" in line
    assert lines[7].startswith("Δ loss: the loss with the head off minus the intact loss")
    mean = run_cli("ablate", "--run", str(run_dir), "--mode", "mean", "--checkpoint", "last", env={"COLUMNS": "50"},
                   check=True).stdout
    assert "(mean ablation: its output z replaced by its mean over every position of the same text" in mean
    assert "last.pt" in mean and "validation split" in mean and "e.g." not in mean  # narrow: no examples


def test_ablate_json_is_each_heads_loss_change(trained_run) -> None:
    run_dir, _ = trained_run
    printed = json.loads(run_cli("ablate", "--run", str(run_dir), "--json", check=True).stdout)
    assert list(printed) == KEYS and all(isinstance(v, float) for v in printed.values())
    assert printed == pytest.approx(ablate(load(run_dir)).to_json(), abs=1e-6)


@pytest.mark.parametrize(("args", "message"), [
    (["--run", "{run}", "--mode", "half"], "error: --mode must be 'zero' or 'mean', got 'half'"),
    (["--run", "{run}", "--text", "To bé"], "error: --text has characters the model never saw: 'é'; use only "
                                            "characters from its training text"),
    (["--run", "{run}", "--text", "T"], "error: --text is too short to measure a loss on (1 character); give at "
                                        "least two"),
    (["--run", "{missing}"], "error: run folder not found: {missing}; `attnlm runs` lists the runs"),
    ([], "error: no trained run under runs/; train one first with `attnlm train --config configs/tiny.yaml`"),
    (["--run", "{empty}", "--checkpoint", "last"],
     "error: run {empty} has no checkpoints/last.pt yet; try --checkpoint best, or train it first"),
])
def test_ablate_refuses_in_one_line(trained_run, tmp_path: Path, args: list[str], message: str) -> None:
    run_dir, _ = trained_run
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    names = {"run": run_dir, "missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    result = run_cli("ablate", *(a.format(**names) for a in args), cwd=tmp_path)  # tmp_path has no runs/
    assert (result.returncode, result.stderr, result.stdout) == (2, message.format(**names) + "\n", "")


def test_a_task_run_is_measured_on_the_probe(tmp_path: Path) -> None:
    """A few steps of configs/induction.yaml form no induction head, so only the shape of the answer is asserted
    here; what switching one off costs is the hand-built circuit's test above."""
    run_cli("train", "--config", str(ROOT / "configs" / "induction.yaml"), "--set", "model.block_size=16",
            "--set", "model.n_embd=16", "--set", "model.n_head=2", "--set", "train.epochs=1",
            "--set", "train.steps_per_epoch=2", "--set", "train.warmup_steps=1", "--set", "train.eval_chars=256",
            "--set", f"log.dir={tmp_path}", "--set", "log.timestamp=false", "--set", "log.head_scores=false",
            "--name", "task", check=True)
    out = run_cli("ablate", "--run", str(tmp_path / "task"), env={"COLUMNS": "200"}, check=True).stdout
    assert "on the probe of `attnlm heads` (8 random symbols, then the same 8 again), the second copy after its " \
           "first symbol, 7 predictions: intact loss" in out
    assert [line.split()[0] for line in out.splitlines()[3:7]] == KEYS


# ----- the explorer ------------------------------------------------------------------------------------------
SHORT = TEXT[:20]  # the explorer reads at most the model's context: 32 characters
def test_api_ablate_answers_the_predictions_with_those_heads_off(served) -> None:
    server, m = served
    status, a = call(server, "/api/ablate", {"text": SHORT, "off": ["1.1", "0.0"]})
    assert status == 200 and a["text"] == SHORT and a["off"] == ["1.1", "0.0"] and a["labels"][2] == "␣"
    ablated = m.ablate(SHORT, [(1, 1), (0, 0)])
    top_p, top_i = ablated.probs.topk(5, dim=-1)
    assert [[p["char"] for p in row] for row in a["predictions"]] == [[m.vocab.chars[i] for i in r] for r in top_i.tolist()]
    assert torch.allclose(torch.tensor([[p["p"] for p in row] for row in a["predictions"]]), top_p, atol=1e-4)
    assert a["flipped"] == ablated.flipped and all(isinstance(i, int) for i in a["flipped"])
    assert a["intact_loss"] == pytest.approx(m.model.evaluate(SHORT).loss, abs=1e-4)
    assert a["loss"] == pytest.approx(ablated.loss, abs=1e-5) and a["loss"] != a["intact_loss"]
    # No head off: the predictions /api/analyze gives, and nothing flipped.
    status, none_off = call(server, "/api/ablate", {"text": SHORT, "off": []})
    _, analyzed = call(server, "/api/analyze", {"text": SHORT})
    assert status == 200 and none_off["flipped"] == [] and none_off["loss"] == none_off["intact_loss"]
    assert [[p["char"] for p in row] for row in none_off["predictions"]] == \
           [[p["char"] for p in row] for row in analyzed["predictions"]]
    assert all(block.attn.off is None for block in m.module.blocks)  # the model every request reads is intact


@pytest.mark.parametrize(("body", "message"), [
    ({"text": SHORT}, "missing field 'off': a list of heads \"L.H\" to switch off ([] for none)"),
    ({"text": SHORT, "off": "1.0"}, "field 'off' must be a list of heads \"L.H\" (layer.head, from 0), got '1.0'"),
    ({"text": SHORT, "off": {"1": 0}}, "field 'off' must be a list of heads \"L.H\" (layer.head, from 0), got a "
                                      "JSON object"),
    ({"text": SHORT, "off": [1.0]}, "'off' lists 1.0, which is not a head \"L.H\" (layer.head, from 0, such as "
                                   "\"1.0\")"),
    ({"text": SHORT, "off": [["1", "0"]]}, "'off' lists a JSON array, which is not a head"),
    ({"text": SHORT, "off": ["1"]}, "'off' lists '1', which is not a head"),
    ({"text": SHORT, "off": ["1.0.0"]}, "'off' lists '1.0.0', which is not a head"),
    ({"text": SHORT, "off": ["-1.0"]}, "'off' lists '-1.0', which is not a head"),
    ({"text": SHORT, "off": ["01.0"]}, "'off' lists '01.0', which is not a head"),
    ({"text": SHORT, "off": [" 1.0"]}, "'off' lists ' 1.0', which is not a head"),
    ({"text": SHORT, "off": ["1.٠"]}, "'off' lists '1.٠', which is not a head"),  # an Arabic-Indic zero
    ({"text": SHORT, "off": ["2.0"]}, "head 2.0 in 'off' is out of range: the model has 2 layers of 2 heads "
                                     "(0.0 to 1.1)"),
    ({"text": SHORT, "off": ["0.2"]}, "head 0.2 in 'off' is out of range"),
    ({"text": SHORT, "off": ["1.1", "0.0", "1.1"]}, "head 1.1 is listed twice in 'off'"),
    ({"text": SHORT, "off": [], "mode": "mean"}, "unknown field 'mode' for /api/ablate; it takes text, off"),
    ({"text": "To bé", "off": []}, "the text has characters the model never saw: 'é'"),
])
def test_api_ablate_refuses_a_bad_request_in_one_line(served, body: dict, message: str) -> None:
    server, _ = served
    status, reply = call(server, "/api/ablate", body)
    assert (status, reply["status"]) == (400, 400) and message in reply["error"] and "\n" not in reply["error"]


def test_the_page_loads_ablate_js_without_inline_styles_or_the_network() -> None:
    script = static_file("ablate.js").decode()
    assert not re.search(r"""https?:|["'`]//""", script)  # nothing from the network: only the page's own /api
    assert not re.search(r"\.style\b|setAttribute\(\s*[\"']style", script)  # classes only: the CSP
    page = static_file("index.html").decode()
    assert '<script src="ablate.js"></script>' in page and 'id="ablate-heads"' in page


def test_clicking_a_head_shows_the_predictions_without_it(trained_run) -> None:
    from playwright.sync_api import expect
    from test_explore_browser import open_page

    from attnlm.api.explore import start_explorer

    run_dir, _ = trained_run
    server = start_explorer(str(run_dir))
    m = server.model
    text = SHORT
    intact = m.ablate(text, [])
    # The head whose absence moves the shown probabilities most.
    key = max(KEYS, key=lambda k: float((m.ablate(text, [tuple(map(int, k.split(".")))]).probs - intact.probs)
                                        .abs().sum()))
    ablated = m.ablate(text, [tuple(map(int, key.split(".")))])
    errors: list[str] = []
    try:
        with open_page(server.url, errors) as page:
            buttons = page.locator("#ablate-heads button")
            expect(buttons).to_have_count(4, timeout=60_000)
            assert buttons.all_inner_texts() == KEYS
            expect(page.locator("#text")).to_have_value(m.default_text(), timeout=60_000)  # app.js filled it in
            page.locator("#text").fill(text)
            expect(page.locator("#ablate-strip .pos")).to_have_count(0)  # every head on: nothing to compare

            page.locator(f"#ablate-heads button[data-head='{key}']").click()
            expect(page.locator(f"#ablate-heads button[data-head='{key}']")).to_have_attribute("aria-pressed", "true")
            expect(page.locator("#ablate-strip .pos")).to_have_count(len(text))
            shown = [[float(v) for v in pos.locator(".pred span:nth-child(2)").all_inner_texts()]
                     for pos in page.locator("#ablate-strip .pos").all()]
            top = ablated.probs.topk(5, dim=-1).values
            assert torch.allclose(torch.tensor(shown), top, atol=6e-3)  # shown with two decimals
            assert not torch.allclose(torch.tensor(shown), intact.probs.topk(5, dim=-1).values, atol=6e-3)
            flagged = page.locator("#ablate-strip .pos.flipped").evaluate_all("ps => ps.map(p => Number(p.dataset.index))")
            assert flagged == ablated.flipped
            expect(page.locator("#ablate-loss")).to_contain_text(f"With head {key} off: loss ")
            said = page.locator("#ablate-loss").inner_text()
            losses = re.match(r"With head \S+ off: loss (\d+\.\d{3}) on this text \(every head on: (\d+\.\d{3}), ", said)
            assert losses, said
            assert [float(x) for x in losses.groups()] == pytest.approx([ablated.loss, intact.loss], abs=1.1e-3)

            page.locator(f"#ablate-heads button[data-head='{key}']").click()  # back on
            expect(page.locator("#ablate-strip .pos")).to_have_count(0)
            expect(page.locator("#ablate-loss")).to_have_text("")
    finally:
        server.shutdown()
        server.server_close()
    assert errors == []
