"""Built-in tasks (data.task): generated windows, the mask of their predictable part, and runs trained on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from run_helpers import assert_same_training, metrics, run_cli

from attnlm.config import DataConfig, load_config
from attnlm.data.tasks import (
    END,
    SEPARATOR,
    SYMBOLS,
    TRAIN,
    VAL,
    Task,
    TaskSampler,
    load_task,
    make_task,
    pack_examples,
    place_copy,
)
from attnlm.errors import UserError
from attnlm.lm.kv_cache import Decoder, KVCache
from attnlm.lm.model import AttnLM

ANSWERS = {"copy": lambda s: s, "reverse": lambda s: s[::-1], "sort": lambda s: "".join(sorted(s))}


def codes_text(codes: np.ndarray, symbols: int) -> str:
    """pack_examples' codes as text: symbol k is SYMBOLS[k], then SEPARATOR and END."""
    return "".join((SYMBOLS[:symbols] + SEPARATOR + END)[c] for c in codes)


def marked(mask: np.ndarray | torch.Tensor) -> list[int]:
    """The window positions whose character is predictable (a target mask is shifted by one)."""
    return [t + 1 for t, m in enumerate(np.asarray(mask)) if m]


# ----- hand-checked examples -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "answer"), [("sort", "1234"), ("copy", "3142"), ("reverse", "2413")])
def test_one_example_reads_sequence_separator_answer_and_only_the_answer_is_predictable(name: str, answer: str) -> None:
    codes, mask = pack_examples(name, np.array([[[3, 1, 4, 2]]]), np.array([[4]]), 10, 10)
    assert codes_text(codes[0], 10) == f"3142={answer}\n"
    assert mask.shape == (1, 9)
    assert marked(mask[0]) == [5, 6, 7, 8]  # the four answer characters, not `=` nor the line end


def test_examples_are_packed_one_after_another_and_unused_places_are_dropped() -> None:
    sequences = np.array([[[5, 7, 0], [2, 9, 1], [4, 4, 4]]])  # the first example uses 2 of its 3 places
    codes, mask = pack_examples("sort", sequences, np.array([[2, 3, 1]]), 10, 16)
    assert codes_text(codes[0], 10) == "57=57\n291=129\n4="
    assert marked(mask[0]) == [3, 4, 10, 11, 12]


def test_induction_copies_the_segment_and_marks_the_copy_after_its_first_character() -> None:
    tokens = np.arange(10)[None]  # "abcdefghij" as codes 0..9
    copied, mask = place_copy(tokens, np.array([3]), np.array([1]), np.array([5]))
    assert copied[0].tolist() == [0, 1, 2, 3, 4, 1, 2, 3, 8, 9]  # "abcdebcdij"
    assert marked(mask[0]) == [6, 7]  # "cd": "b" at 5 follows "e", which says nothing of a copy


def test_vocabularies_are_printable_and_induction_has_no_separator() -> None:
    assert make_task("induction", 64).vocab.chars == SYMBOLS[:40]
    assert make_task("sort", 16).vocab.chars == "\n0123456789="
    assert make_task("copy", 16, task_vocab=12).vocab.chars == "\n0123456789=AB"


# ----- the generators ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["induction", "copy", "reverse", "sort"])
def test_a_batch_depends_on_seed_stream_and_index_alone(name: str) -> None:
    task = make_task(name, 32)
    first, mask = task.windows(7, TRAIN, 3, 8)
    again, mask_again = task.windows(7, TRAIN, 3, 8)
    assert torch.equal(first, again) and torch.equal(mask, mask_again)
    for other in ((8, TRAIN, 3), (7, VAL, 3), (7, TRAIN, 4)):
        assert not torch.equal(first, task.windows(*other, 8)[0]), other


def test_the_sampler_continues_its_stream_from_the_count_it_saved() -> None:
    task = make_task("reverse", 24)
    sampler = TaskSampler(task, 4, seed=5)
    [sampler.next() for _ in range(3)]
    resumed = TaskSampler(task, 4, seed=5)
    resumed.set_state(sampler.state())
    for _ in range(2):
        (x1, y1), (x2, y2) = sampler.next(), resumed.next()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 1:], y1[:, :-1])  # y is x shifted by one
    with pytest.raises(UserError, match=r"^the checkpoint's batch stream is not a task's"):
        resumed.set_state(torch.Generator().get_state())  # a text run's generator


def test_the_copied_segment_lands_at_many_distances() -> None:
    """A fixed distance would let one head attend by position and pass for an induction head."""
    task = make_task("induction", 64)
    windows, mask = task.windows(0, TRAIN, 0, 400)
    distances = {induction_copy(task, w.tolist(), m)[2] for w, m in zip(windows, mask, strict=True)}
    assert len(distances) > 30 and min(distances) <= 10 and max(distances) >= 45


def test_validation_windows_are_fixed_per_seed_and_never_training_ones() -> None:
    data = DataConfig(task="copy")
    held = load_task(data, 32, seed=3, eval_chars=2048)
    assert held.windows.shape == (64, 33) and held.mask.shape == (64, 32)
    assert torch.equal(held.windows, load_task(data, 32, seed=3, eval_chars=2048).windows)
    assert not torch.equal(held.windows, load_task(data, 32, seed=4, eval_chars=2048).windows)
    sampler = TaskSampler(held.task, 64, seed=3)
    trained = set()
    for _ in range(20):
        x, y = sampler.next()
        trained |= {tuple(row) for row in torch.cat([x, y[:, -1:]], dim=1).tolist()}  # the whole windows
    assert len(trained) == 20 * 64
    assert not trained & {tuple(row) for row in held.windows.long().tolist()}


# ----- invariants over every setting ---------------------------------------------------------------------------
def induction_copy(task: Task, ids: list[int], mask: torch.Tensor) -> tuple[int, int, int]:
    """(where the copy starts, its length, how far back its source is), checked against the window."""
    positions = marked(mask)
    start, length = positions[0] - 1, len(positions) + 1
    assert positions == list(range(start + 1, start + length)), "one unbroken run after the copy's first character"
    assert task.shortest <= length <= task.longest
    segment = ids[start : start + length]
    sources = [s for s in range(start - length + 1) if ids[s : s + length] == segment]
    assert sources, "the copy repeats an earlier segment"
    return start, length, start - sources[-1]


def check_examples(name: str, text: str, answer_at: list[int]) -> None:
    """Every example reads `sequence=answer` and exactly its answer's characters are marked."""
    expected, at = [], 0
    for line in text.split(END):
        sequence, _, answer = line.partition(SEPARATOR)
        assert answer == ANSWERS[name](sequence)[: len(answer)]
        expected += range(at + len(sequence) + 1, at + len(sequence) + 1 + len(answer)) if SEPARATOR in line else []
        at += len(line) + 1
    assert answer_at == expected


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["induction", "copy", "reverse", "sort"]), block_size=st.integers(3, 96),
       symbols=st.integers(2, 62), length=st.none() | st.integers(1, 50), seed=st.integers(0, 2**64 - 1),
       index=st.integers(0, 10**6), n=st.integers(1, 5))
def test_every_window_holds_its_task_and_its_mask(name: str, block_size: int, symbols: int, length: int | None,
                                                  seed: int, index: int, n: int) -> None:
    try:
        task = make_task(name, block_size, symbols, length)
    except UserError as e:
        room = block_size // 2 - 3 if length is None else length
        fits = room >= 2 and 2 * room <= block_size + 1 if name == "induction" else \
            (length or 1) <= (block_size - 1) // 2 and block_size >= 3
        assert not fits, f"{task_settings(name, block_size, symbols, length)} refused: {e}"
        assert "\n" not in str(e)
        return
    windows, mask = task.windows(seed, TRAIN, index, n)
    assert windows.shape == (n, block_size + 1) and mask.shape == (n, block_size) and mask.dtype == torch.bool
    assert windows.dtype == torch.long and 0 <= int(windows.min()) and int(windows.max()) < task.vocab.size
    assert mask.any(dim=1).all(), "every window has something to predict"
    for w, m in zip(windows, mask, strict=True):
        text = task.vocab.decode(w)
        assert set(text) <= set(task.vocab.chars)
        if name == "induction":
            induction_copy(task, w.tolist(), m)
        else:
            check_examples(name, text, marked(m))


def task_settings(name: str, block_size: int, symbols: int, length: int | None) -> str:
    return f"{name} at block_size {block_size}, {symbols} symbols, task_length {length}"


# ----- the model of configs/induction.yaml ---------------------------------------------------------------------
def test_attention_only_blocks_decode_with_the_cache_as_the_full_forward() -> None:
    cfg = load_config("configs/induction.yaml").model
    assert cfg.mlp is False and cfg.n_layer == 2
    torch.manual_seed(0)
    model = AttnLM(cfg, 40).eval()
    assert all(block.mlp is None and block.norm2 is None for block in model.blocks)
    with torch.no_grad():
        for p in model.parameters():  # norm gains start at 1: make every weight matter
            p.add_(0.1 * torch.randn_like(p))
    idx = torch.randint(0, 40, (1, cfg.block_size), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full, _ = model(idx)
        decoder = Decoder(model)
        cache = KVCache.empty(cfg, 1, torch.device("cpu"), torch.float32)
        first = decoder.feed(idx[0, :10].tolist(), cache)
        steps = [decoder.feed([int(t)], cache) for t in idx[0, 10:]]
    torch.testing.assert_close(first, full[0, 9], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack(steps), full[0, 10:], rtol=1e-5, atol=1e-5)


# ----- runs ---------------------------------------------------------------------------------------------------
# A small attention-only model on `copy`; a constant learning rate (min_lr = lr) keeps the schedule the same
# whatever the run's planned length, so a run of one epoch raised to two must equal a run of two.
COPY = ["--config", "configs/induction.yaml", "--set", "data.task=copy", "--set", "data.task_vocab=null",
        "--set", "model.block_size=16", "--set", "model.n_embd=32", "--set", "train.batch_size=8",
        "--set", "train.steps_per_epoch=15", "--set", "train.eval_chars=512", "--set", "train.warmup_steps=5",
        "--set", "train.lr=3e-3", "--set", "train.min_lr=3e-3", "--set", "log.print_every=1", "--set", "log.tensorboard=false",
        "--set", "log.timestamp=false"]


def test_a_task_run_logs_its_predictable_part_and_resumes_exactly(tmp_path: pytest.TempPathFactory) -> None:
    runs = ["--set", f"log.dir={tmp_path}"]
    whole = run_cli("train", *COPY, *runs, "--set", "train.epochs=2", "--name", "whole", check=True)
    assert "task copy (10 symbols; sequences of 1 to 7, then `=` and the answer), generated on the fly; validation " \
           "on 32 held-out windows" in whole.stdout
    assert "predictable part: loss" in whole.stdout and "on the predictable part: loss" in whole.stdout
    rows = [row for row in metrics(tmp_path / "whole") if row["kind"] == "epoch"]
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert 0 < row["val_task_loss"] and 0 <= row["val_task_accuracy"] <= 1
        assert row["val_task_loss"] != row["val_loss"]  # the answers alone, not the whole windows
        assert f"predictable part: loss {row['val_task_loss']:.4f}" in row["observation"]

    run_cli("train", *COPY, *runs, "--set", "train.epochs=1", "--name", "parts", check=True)
    resumed = run_cli("train", "--resume", str(tmp_path / "parts"), "--set", "train.epochs=2", check=True)
    assert "from step 15" in resumed.stdout
    assert_same_training(tmp_path / "parts", tmp_path / "whole", steps=30)

    evaluated = run_cli("eval", "--run", str(tmp_path / "whole"), check=True)  # best.pt
    assert "on the held-out windows of data.task copy (512 predictions):" in evaluated.stdout
    best = min(rows, key=lambda row: row["val_loss"])
    assert f"on the predictable part:\n  loss       {best['val_task_loss']:.4f}" in evaluated.stdout
    sample = run_cli("sample", "--run", str(tmp_path / "whole"), "--prompt", "3142=", "-n", "12", "--seed", "0",
                     check=True)
    assert sample.stdout.startswith("3142=") and set(sample.stdout.strip()) <= set("\n0123456789=")


def test_resuming_a_task_run_on_another_task_is_refused(tmp_path: pytest.TempPathFactory) -> None:
    run_cli("train", *COPY, "--set", f"log.dir={tmp_path}", "--set", "train.epochs=1", "--set",
            "train.steps_per_epoch=2", "--name", "copy", check=True)
    result = run_cli("train", "--resume", str(tmp_path / "copy"), "--set", "data.task=sort", "--set", "train.epochs=2")
    assert one_line(result) == (f"error: {tmp_path / 'copy' / 'checkpoints' / 'last.pt'} was trained with "
                                'data.task="copy", not "sort"; resume with the run\'s own data.task or start a new run')


def one_line(result: object) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(("override", "message"), [
    ("data.task=sorting", "config key 'data.task' must be one of induction, copy, reverse, sort or null (text from "
                          "data.path), got 'sorting' (did you mean 'sort'?)"),
    ("model.block_size=8", "data.task induction needs model.block_size >= 10 (its copied segment, block_size // 2 - 3 "
                           "characters, must hold at least 2), got 8; raise model.block_size"),
    ("data.task_length=40", "data.task_length must be from 2 to 32 for induction with model.block_size 64 (a segment "
                            "and its copy fit a window of 65), got 40"),
    ("data.task_vocab=63", "data.task_vocab must be from 2 to 62 (the digits and letters), got 63"),
])
def test_a_task_that_cannot_be_made_is_one_line(tmp_path: pytest.TempPathFactory, override: str, message: str) -> None:
    result = run_cli("train", "--config", "configs/induction.yaml", "--set", override, "--set", f"log.dir={tmp_path}")
    assert one_line(result) == f"error: {message}"
    assert not any(tmp_path.iterdir()), "nothing is written for a run that cannot start"


def test_a_too_short_window_for_an_example_is_one_line() -> None:
    with pytest.raises(UserError, match=r"^data.task reverse needs model.block_size >= 3 \(one example `3=3` and its "
                                        r"line end\), got 2; raise model.block_size$"):
        make_task("reverse", 2)
    with pytest.raises(UserError, match=r"^data.task_length must be at most 7 for sort with model.block_size 16"):
        make_task("sort", 16, task_length=8)
