"""Head detectors: previous-token, duplicate-token and induction scores on hand-built attention patterns whose
answers are known, the in-context learning score on hand-built logits, the probe, and the scores a real training
run records per epoch (metrics.jsonl, TensorBoard, the Observation column) and `attnlm heads` prints."""

from __future__ import annotations

import json
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from run_helpers import run_cli, train_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnlm.api.heads import head_scores
from attnlm.config import ModelConfig
from attnlm.errors import ArgumentTypeError
from attnlm.inspection.heads import (
    SCORES,
    Crossings,
    HeadScores,
    duplicate_token_score,
    icl_score,
    induction_score,
    measure,
    previous_token_score,
    repeat_probe,
    score_attention,
)
from attnlm.lm.model import AttnLM


# ----- hand-built attention patterns ----------------------------------------------------------------------
def one_hot_rows(T: int, target: callable) -> torch.Tensor:
    """(T, T): row i puts all its weight on target(i) where that is a real earlier key, else on i itself."""
    w = torch.zeros(T, T)
    for i in range(T):
        j = target(i)
        w[i, j if 0 <= j <= i else i] = 1.0
    return w


def uniform_causal(T: int) -> torch.Tensor:
    return torch.tril(torch.ones(T, T, dtype=torch.float64)) / torch.arange(1, T + 1, dtype=torch.float64)[:, None]


R = 8  # the period of the patterns below: 8 tokens, then the same 8 again
T = 2 * R
PREVIOUS = one_hot_rows(T, lambda i: i - 1)
DUPLICATE = one_hot_rows(T, lambda i: i - R)
INDUCTION = one_hot_rows(T, lambda i: i - R + 1)


def scores_of(w: torch.Tensor, period: int = R) -> tuple[float, float, float]:
    """(previous, duplicate, induction) of one (T, T) head."""
    w = w[None, None]
    return (float(previous_token_score(w)), float(duplicate_token_score(w, period)), float(induction_score(w, period)))


def test_a_perfect_previous_token_head_scores_one_and_nothing_else() -> None:
    assert scores_of(PREVIOUS) == (1.0, 0.0, 0.0)


def test_a_perfect_induction_head_scores_one_for_induction() -> None:
    previous, duplicate, induction = scores_of(INDUCTION)
    assert induction == 1.0 and duplicate == 0.0
    # Its first copy's rows look at themselves: only row R (which induction sends to key 1) is not one of them.
    assert previous == 0.0


def test_a_perfect_duplicate_token_head_scores_one_for_duplicates_only() -> None:
    _, duplicate, induction = scores_of(DUPLICATE)
    assert (duplicate, induction) == (1.0, 0.0)


def test_uniform_causal_attention_scores_the_mean_of_one_over_the_row_length() -> None:
    expected_previous = sum(Fraction(1, i + 1) for i in range(1, T)) / (T - 1)
    expected_repeat = sum(Fraction(1, i + 1) for i in range(R, T)) / R
    previous, duplicate, induction = scores_of(uniform_causal(T))
    assert previous == pytest.approx(float(expected_previous), abs=1e-12)
    assert duplicate == pytest.approx(float(expected_repeat), abs=1e-12)
    assert induction == pytest.approx(float(expected_repeat), abs=1e-12)


def test_a_head_split_between_two_patterns_scores_its_share_of_each() -> None:
    previous, duplicate, induction = scores_of(0.25 * PREVIOUS + 0.75 * INDUCTION)
    assert (previous, duplicate, induction) == (pytest.approx(0.25), 0.0, pytest.approx(0.75))


def test_at_period_two_the_induction_target_is_the_previous_token() -> None:
    assert scores_of(one_hot_rows(4, lambda i: i - 1), period=2) == (1.0, 0.0, 1.0)


def test_every_head_is_scored_under_its_own_layer_dot_head_key() -> None:
    layers = [torch.stack([PREVIOUS.double(), uniform_causal(T)]), torch.stack([INDUCTION, DUPLICATE])]  # 2 layers x 2 heads
    heads = score_attention(layers, R)
    assert list(heads) == ["0.0", "0.1", "1.0", "1.1"]
    assert all(list(v) == list(SCORES) for v in heads.values())
    assert heads["0.0"]["previous_token"] == 1.0
    assert heads["1.0"]["induction"] == 1.0
    assert heads["1.1"]["duplicate_token"] == 1.0
    assert heads["0.1"]["induction"] == pytest.approx(float(sum(Fraction(1, i + 1) for i in range(R, T)) / R))


@pytest.mark.parametrize("period", [0, 1, T, T + 3])
def test_a_period_without_a_repeat_to_score_is_refused(period: int) -> None:
    with pytest.raises(ValueError, match=f"the period must be at least 2 and shorter than the {T} positions, "
                                         f"got {period}"):
        induction_score(uniform_causal(T)[None, None], period)


def test_attention_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"must be \(layers, heads, T, T\), got shape \(16, 16\)"):
        previous_token_score(uniform_causal(T))


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(layers=st.integers(1, 3), heads=st.integers(1, 3), period=st.integers(2, 40), extra=st.integers(0, 5),
       seed=st.integers(0, 2**31 - 1), sharpness=st.floats(0.0, 30.0))
def test_random_causal_attention_scores_lie_in_zero_one(layers: int, heads: int, period: int, extra: int, seed: int,
                                                        sharpness: float) -> None:
    """Rows of any causal softmax, peaked or flat: every score is a mean weight, so within [0, 1]."""
    n = 2 * period + extra
    logits = torch.randn(layers, heads, n, n, generator=torch.Generator().manual_seed(seed)) * sharpness
    w = torch.softmax(logits.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf")), dim=-1)
    for values in score_attention(w, period).values():
        assert all(0.0 <= values[s] <= 1.0 for s in SCORES), values


# ----- the in-context learning score ----------------------------------------------------------------------
def test_icl_score_is_the_loss_on_the_repeat_minus_the_first_copy() -> None:
    V = 10
    ids = torch.tensor([3, 1, 4, 7, 5] * 2)  # period 5
    p = 0.9
    logits = torch.zeros(len(ids), V)  # uniform everywhere: loss ln 10
    # From position 5 on the model predicts the next token with probability p, the rest spread evenly.
    for t in range(5, len(ids) - 1):
        logits[t] = torch.log(torch.full((V,), (1 - p) / (V - 1)))
        logits[t, ids[t + 1]] = torch.log(torch.tensor(p))
    assert icl_score(logits, ids, 5) == pytest.approx(-torch.log(torch.tensor(p)).item() - torch.log(torch.tensor(10.0)).item(),
                                                      abs=1e-6)
    assert icl_score(torch.zeros(len(ids), V), ids, 5) == pytest.approx(0.0, abs=1e-12)


# ----- the probe -------------------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(vocab_size=st.integers(1, 300), block_size=st.integers(0, 300))
def test_the_probe_is_a_random_sequence_twice_that_fits_the_window(vocab_size: int, block_size: int) -> None:
    probe = repeat_probe(vocab_size, block_size)
    if block_size // 2 < 2:
        assert probe is None
        return
    assert probe is not None and probe.period == block_size // 2 and probe.length == 2 * probe.period <= block_size
    first, second = probe.ids[: probe.period], probe.ids[probe.period:]
    assert torch.equal(first, second)
    assert 0 <= int(probe.ids.min()) and int(probe.ids.max()) < vocab_size
    if vocab_size >= probe.period:  # each token once per copy: the earlier occurrence is the only one
        assert len(set(first.tolist())) == probe.period
    assert torch.equal(repeat_probe(vocab_size, block_size).ids, probe.ids)  # the same probe every time


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(vocab_size=st.integers(1, 90), block_size=st.integers(4, 48), n_layer=st.integers(1, 2),
       n_head=st.sampled_from([1, 2, 4]), pos=st.sampled_from(["learned", "rope"]), seed=st.integers(0, 1000))
def test_a_real_model_scores_every_head_within_zero_one(vocab_size: int, block_size: int, n_layer: int, n_head: int,
                                                        pos: str, seed: int) -> None:
    torch.manual_seed(seed)
    model = AttnLM(ModelConfig(block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=8, pos=pos), vocab_size)
    with torch.no_grad():  # sharpen attention far from its init so the scores move off uniform
        for block in model.blocks:
            for p in block.parameters():
                p.mul_(40.0)
    scores = measure(model, repeat_probe(vocab_size, block_size))
    assert list(scores.heads) == [f"{n}.{h}" for n in range(n_layer) for h in range(n_head)]
    for values in scores.heads.values():
        assert all(0.0 <= values[s] <= 1.0 for s in SCORES), values
    assert torch.isfinite(torch.tensor(scores.icl_score))


# ----- the Observation's note -----------------------------------------------------------------------------
def scores(**heads: tuple[float, float, float]) -> HeadScores:
    return HeadScores({k[1:].replace("_", "."): dict(zip(SCORES, v, strict=True)) for k, v in heads.items()}, 0.0)


def test_a_head_is_named_the_first_time_it_reaches_the_threshold_only() -> None:
    crossings = Crossings()
    assert crossings.update(scores(h0_0=(0.2, 0.0, 0.0), h1_0=(0.0, 0.0, 0.1))) is None
    assert crossings.update(scores(h0_0=(0.7, 0.0, 0.0), h1_0=(0.0, 0.0, 0.94))) == (
        "head 1.0 became an induction head (0.94)\nhead 0.0 became a previous-token head (0.70)")
    assert crossings.update(scores(h0_0=(0.4, 0.0, 0.0), h1_0=(0.0, 0.0, 0.95))) is None
    assert crossings.update(scores(h0_0=(0.8, 0.0, 0.0), h1_0=(0.0, 0.0, 0.95))) is None  # back above: no news


def test_of_several_heads_crossing_at_once_the_strongest_is_named() -> None:
    note = Crossings().update(scores(h0_0=(0.6, 0.0, 0.0), h0_1=(0.9, 0.0, 0.0), h0_2=(0.5, 0.0, 0.0)))
    assert note == "head 0.1 became a previous-token head (0.90), +2 more"


def test_duplicate_token_heads_are_not_announced() -> None:
    assert Crossings().update(scores(h0_0=(0.0, 1.0, 0.0))) is None


# ----- a real training run ----------------------------------------------------------------------------------
def heads_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "heads"]


KEYS = ["0.0", "0.1", "1.0", "1.1"]  # TINY: 2 layers x 2 heads


def test_a_run_records_every_heads_scores_after_each_epoch_and_before_the_first(trained_run) -> None:
    run_dir, _ = trained_run
    rows = heads_rows(run_dir)
    assert [(r["epoch"], r["step"]) for r in rows] == [(0, 0), (1, 30), (2, 60), (3, 90)]
    for row in rows:
        assert list(row["heads"]) == KEYS
        assert all(list(v) == list(SCORES) and all(0.0 <= x <= 1.0 for x in v.values()) for v in row["heads"].values())
        assert isinstance(row["icl_score"], float)
    assert rows[0]["heads"] != rows[-1]["heads"]  # training moved them


def test_tensorboard_draws_a_line_per_head_on_one_chart_per_score(trained_run) -> None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2

    run_dir, _ = trained_run
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    rows = heads_rows(run_dir)
    for score in SCORES:
        for key in KEYS:
            events = acc.Scalars(f"heads/{score}/{key}")
            assert [e.step for e in events] == [0, 30, 60, 90]
            assert [e.value for e in events] == pytest.approx([r["heads"][key][score] for r in rows], rel=1e-6)
    assert [e.value for e in acc.Scalars("heads/icl_score")] == pytest.approx([r["icl_score"] for r in rows], rel=1e-6)
    [events_file] = run_dir.glob("events.out.tfevents.*")
    layout = next(layout_pb2.Layout.FromString(v.tensor.string_val[0]) for event in EventFileLoader(str(events_file)).Load()
                  for v in event.summary.value if v.tag == "custom_scalars__config__")
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    tags = acc.Tags()["scalars"]
    drawn = {tag for tag in tags if any(re.search(p, tag) for p in charts["induction score per head"])}
    assert drawn == {f"heads/induction/{key}" for key in KEYS}


def test_heads_json_is_the_checkpoints_scores_by_layer_dot_head(trained_run, one_thread) -> None:
    run_dir, _ = trained_run
    result = run_cli("heads", "--run", str(run_dir), "--json", check=True)
    printed = json.loads(result.stdout)
    assert list(printed) == KEYS
    assert all(list(v) == list(SCORES) for v in printed.values())
    report = head_scores(run_dir)
    assert printed == report.scores.heads
    best_epoch = json.loads((run_dir / "summary.json").read_text())["best_epoch"]
    recorded = next(r for r in heads_rows(run_dir) if r["epoch"] == best_epoch)
    assert printed == recorded["heads"]  # training scored the same weights the same way
    # The baseline is the model training started from: the same config and train.seed, before any step.
    assert report.baseline.heads == heads_rows(run_dir)[0]["heads"]
    assert report.baseline.icl_score == heads_rows(run_dir)[0]["icl_score"]
    last = json.loads(run_cli("heads", "--run", str(run_dir), "--json", "--checkpoint", "last", check=True).stdout)
    assert last == heads_rows(run_dir)[-1]["heads"]


def test_heads_prints_a_table_with_the_untrained_score_beside_each(trained_run) -> None:
    run_dir, _ = trained_run
    out = run_cli("heads", "--run", str(run_dir), env={"COLUMNS": "120"}, check=True).stdout
    report = head_scores(run_dir)
    header = next(line for line in out.splitlines() if line.split()[:2] == ["head", "previous-token"])
    assert header.split() == ["head", "previous-token", "untrained", "duplicate-token", "untrained", "induction",
                              "untrained", "reads", "as"]
    for key in KEYS:
        row = next(line.split() for line in out.splitlines() if line.split()[:1] == [key])
        trained, untrained = report.scores.heads[key], report.baseline.heads[key]
        assert row[1:7] == [f"{x:.2f}" for s in SCORES for x in (trained[s], untrained[s])]
    assert f"in-context learning score {report.scores.icl_score:+.2f} nats" in out
    narrow = run_cli("heads", "--run", str(run_dir), env={"COLUMNS": "70"}, check=True).stdout
    assert "(untrained)" in narrow and f"{report.scores.heads['1.1']['induction']:.2f} (" in narrow


def test_heads_epochs_shows_the_recorded_history(trained_run) -> None:
    run_dir, _ = trained_run
    rows = heads_rows(run_dir)
    printed = json.loads(run_cli("heads", "--run", str(run_dir), "--epochs", "--json", check=True).stdout)
    assert printed == [{k: r[k] for k in ("epoch", "step", "heads", "icl_score")} for r in rows]
    out = run_cli("heads", "--run", str(run_dir), "--epochs", check=True).stdout
    grid = out.split("induction score\n")[1].splitlines()
    assert grid[0].split() == ["head", "0", "1", "2", "3"]
    assert grid[1].split() == ["0.0", *(f"{r['heads']['0.0']['induction']:.2f}" for r in rows)]


@pytest.mark.parametrize(("args", "message"), [
    (["--run", "{missing}"], "error: run folder not found: {missing}; `attnlm runs` lists the runs"),
    (["--run", "{empty}"], "error: run {empty} has no checkpoint yet (checkpoints/best.pt or last.pt); train it first"),
    (["--run", "{empty}", "--checkpoint", "last"],
     "error: run {empty} has no checkpoints/last.pt yet; try --checkpoint best, or train it first"),
    (["--run", "{empty}", "--epochs"], "error: run {empty} recorded no head scores (trained with log.head_scores=false "
     "or before attnlm had them); `attnlm heads --run {empty}` scores its checkpoint now"),
    (["--run", "{empty}", "--epochs", "--checkpoint", "best"], "error: --epochs reads the scores a run recorded after "
     "each epoch; give --run DIR without --checkpoint"),
])
def test_heads_refuses_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    result = run_cli("heads", *(a.format(**names) for a in args))
    assert result.returncode == 2
    assert result.stderr == message.format(**names) + "\n"
    assert result.stdout == ""


def test_head_scores_names_a_wrong_argument() -> None:
    with pytest.raises(ArgumentTypeError, match="^model must be an attnlm.Model, a run folder, a checkpoint file or "
                                                "None, got 3 \\(int\\)$"):
        head_scores(3)


def alternating_corpus(path: Path) -> Path:
    """Runs of two random letters in turn (xyxyxy...): the next letter is the one before this one, which a
    previous-token head fetches, so a few dozen steps grow one."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    runs = []
    while sum(map(len, runs)) < 60_000:
        x, y = rng.sample(letters, 2)
        runs.append((x + y) * rng.randint(3, 8))
    path.write_text("".join(runs), encoding="utf-8")
    return path


def epoch_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "epoch"]


def test_the_observation_names_a_head_once_when_it_becomes_a_previous_token_head(tmp_path: Path) -> None:
    corpus = alternating_corpus(tmp_path / "alternating.txt")
    run_cli(*train_args(corpus, tmp_path, "alt", "--set", "train.lr=1e-2", "--set", "log.sample_chars=0"), check=True)
    run = tmp_path / "alt"
    notes = {row["epoch"]: re.findall(r"head (\d\.\d) became a previous-token head \((\d\.\d\d)\)",
                                      row["observation"]) for row in epoch_rows(run)}
    named = {key: (epoch, value) for epoch, found in notes.items() for key, value in found}
    assert named, epoch_rows(run)
    rows = heads_rows(run)
    for key, (epoch, value) in named.items():
        assert f"{rows[epoch]['heads'][key]['previous_token']:.2f}" == value and float(value) >= 0.5
        assert all(r["heads"][key]["previous_token"] < 0.5 for r in rows[:epoch])  # the first time
    # Resumed for a fourth epoch: a head named before is not named again, though it stays above the threshold.
    run_cli("train", "--resume", str(run), "--set", "train.epochs=4", check=True)
    rows = heads_rows(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    assert any(rows[-1]["heads"][key]["previous_token"] >= 0.5 for key in named)
    assert not any(f"head {key} became" in epoch_rows(run)[-1]["observation"] for key in named)


def test_head_scores_can_be_turned_off(tmp_path: Path, small_corpus: Path) -> None:
    run_cli(*train_args(small_corpus, tmp_path, "unscored", "--set", "log.head_scores=false", "--set", "train.epochs=1",
                        "--set", "train.steps_per_epoch=2", "--set", "log.sample_chars=0"), check=True)
    assert heads_rows(tmp_path / "unscored") == []
    acc = EventAccumulator(str(tmp_path / "unscored"), size_guidance={"scalars": 0})
    acc.Reload()
    assert "loss/val" in acc.Tags()["scalars"]
    assert not [tag for tag in acc.Tags()["scalars"] if tag.startswith("heads/")]


@pytest.mark.parametrize("width", [40, 80, 100, 160])
def test_the_scores_by_epoch_fit_the_terminal_whole(tmp_path: Path, width: int) -> None:
    """Every grid of `attnlm heads --epochs`, the in-context score's signed values too, fits the terminal's width
    with no cell cut short."""
    from rich.console import Console

    from attnlm.api.heads import _print_history
    from attnlm.inspection.heads import HeadScores, SavedScores

    scores = {"previous_token": 0.5, "duplicate_token": 0.02, "induction": 0.91}
    history = [SavedScores(e, 200 * e, HeadScores({"0.0": scores, "1.2": scores}, -3.36 if e else 0.0))
               for e in range(17)]
    console = Console(width=width, record=True, file=open(tmp_path / "out.txt", "w"))  # noqa: SIM115
    _print_history(tmp_path, history, console)
    lines = console.export_text().splitlines()
    assert lines and all(len(line.rstrip()) <= width for line in lines), lines
    assert not any("…" in line for line in lines), lines
    assert "-3.36" in lines[-1] and "+0.00" in lines[-1]
