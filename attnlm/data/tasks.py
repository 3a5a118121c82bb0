"""Built-in tasks (data.task): windows of block_size + 1 characters generated on the fly, each with a mask of the
predictions that can be right, where attention has a known job.

induction  random symbols; one segment of random length is copied to a random later place. Once the copy's first
           symbol is seen, the rest is predictable by finding where that symbol occurred before and reading on.
copy       examples `3142=3142`, one per line, packed into the window: the answer after `=` is predictable.
reverse    the same with the answer reversed (`3142=2413`)
sort       the same with the answer sorted (`3142=1234`)

Batch i of a stream is a pure function of (seed, stream, i): numpy's SeedSequence turns the three into a fresh
generator, so a resumed run continues the same batches from the count it saved, and the validation windows (their
own stream) are the same set every epoch. The mask marks targets: mask[t] says whether predicting window[t + 1]
from window[:t + 1] is part of the task.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
import torch

from attnlm.config import DataConfig
from attnlm.data.vocab import Vocab
from attnlm.errors import UserError

# Digits, then capital and small letters: printable, so samples, traces and the explorer show them as they are,
# and in ASCII order, so sorting symbols sorts their characters.
SYMBOLS = string.digits + string.ascii_uppercase + string.ascii_lowercase
SEPARATOR, END = "=", "\n"  # between a sequence and its answer; after the answer

DEFAULT_VOCAB = {"induction": 40, "copy": 10, "reverse": 10, "sort": 10}
MIN_SEGMENT = 6  # induction's shortest copied segment (task_length, when it is shorter)
DEFAULT_ANSWER = 8  # the longest input of copy, reverse and sort by default
STEPS_PER_EPOCH = 500  # generated data has no end to mark an epoch
VAL_CHARS = 1_000_000  # held-out predictions when train.eval_chars is null

TRAIN, VAL, PROBE = 0, 1, 2  # the streams of windows drawn from one seed
CHUNK = 1024  # validation windows drawn per generator


@dataclass(frozen=True)
class Task:
    name: str
    block_size: int
    symbols: int  # how many of SYMBOLS the random sequences use
    shortest: int  # of the copied segment (induction) or the input sequence (the others)
    longest: int

    @property
    def width(self) -> int:
        return self.block_size + 1

    @property
    def vocab(self) -> Vocab:
        used = SYMBOLS[: self.symbols]
        return Vocab.from_text(used if self.name == "induction" else used + SEPARATOR + END)

    def describe(self) -> str:
        lengths = f"{self.shortest} to {self.longest}" if self.shortest < self.longest else f"{self.longest}"
        if self.name == "induction":
            return (f"task induction ({self.symbols} symbols; a segment of {lengths} copied to a random later place, "
                    "predictable after its first symbol)")
        return f"task {self.name} ({self.symbols} symbols; sequences of {lengths}, then `=` and the answer)"

    def _codes(self) -> np.ndarray:
        """Vocabulary ids of the codes the generators use: symbol k is k, then SEPARATOR and END."""
        vocab = self.vocab
        return np.array([vocab.chars.index(c) for c in SYMBOLS[: self.symbols]] +
                        ([] if self.name == "induction" else [vocab.chars.index(SEPARATOR), vocab.chars.index(END)]))

    def windows(self, seed: int, stream: int, index: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `index` of `stream`: n windows (n, block_size + 1) of vocabulary ids and their target mask
        (n, block_size), drawn from (seed, stream, index) alone."""
        rng = np.random.default_rng([seed, stream, index])
        if self.name == "induction":
            codes, mask = self._induction(rng, n)
        else:
            examples = math.ceil(self.width / 4)  # the shortest example, `3=3` and END, is 4 characters
            lengths = rng.integers(self.shortest, self.longest + 1, (n, examples))
            sequences = rng.integers(0, self.symbols, (n, examples, self.longest))
            codes, mask = pack_examples(self.name, sequences, lengths, self.symbols, self.width)
        return torch.from_numpy(self._codes()[codes]), torch.from_numpy(mask)

    def _induction(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = rng.integers(0, self.symbols, (n, self.width))
        length = rng.integers(self.shortest, self.longest + 1, n)
        source = rng.integers(0, self.width - 2 * length + 1)  # the copy must fit after the segment
        target = rng.integers(source + length, self.width - length + 1)  # anywhere later: no fixed distance
        return place_copy(tokens, length, source, target)

    def probe(self, seed: int) -> torch.Tensor:
        """A short text (up to 32 characters) whose attention shows the task being solved: for induction a random
        half repeated (the shape induction heads are known by), else the start of a generated window."""
        size = min(32, self.block_size)
        if self.name == "induction":
            half = np.random.default_rng([seed, PROBE, 0]).integers(0, self.symbols, size // 2)
            codes = np.concatenate([half, half, half[: size % 2]])
            return torch.from_numpy(self._codes()[codes])
        windows, _ = self.windows(seed, PROBE, 0, 1)
        return windows[0, :size].clone()


def place_copy(tokens: np.ndarray, length: np.ndarray, source: np.ndarray,
               target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of `tokens` (n, W) with its segment [source, source + length) copied over [target, target + length)
    (target >= source + length), and the target mask (n, W - 1): the copy's symbols after its first."""
    j = np.arange(tokens.shape[1])  # (W,)
    inside = (j >= target[:, None]) & (j < (target + length)[:, None])  # (n, W)
    read = np.where(inside, j - (target - source)[:, None], j)
    copied = np.take_along_axis(tokens, read, axis=1)
    predictable = inside & (j > target[:, None])
    return copied, predictable[:, 1:]


def pack_examples(name: str, sequences: np.ndarray, lengths: np.ndarray, symbols: int,
                  width: int) -> tuple[np.ndarray, np.ndarray]:
    """Examples `sequence SEPARATOR answer END`, one after another, cut to `width` codes per row, and the target
    mask (n, width - 1) of the answers. `sequences` (n, K, longest) are symbol codes, of which the first
    `lengths` (n, K) of each example count; SEPARATOR is code `symbols`, END `symbols + 1`."""
    n, examples, longest = sequences.shape
    j = np.arange(longest)
    used = j < lengths[..., None]  # (n, K, longest)
    if name == "copy":
        answers = sequences
    elif name == "reverse":
        answers = np.take_along_axis(sequences, np.where(used, lengths[..., None] - 1 - j, j), axis=-1)
    elif name == "sort":
        answers = np.sort(np.where(used, sequences, symbols), axis=-1)  # the unused places sort last
    else:
        raise ValueError(f"no examples for task {name!r}")
    column = np.ones((n, examples, 1), dtype=bool)
    grid = np.concatenate([sequences, np.full((n, examples, 1), symbols), answers,
                           np.full((n, examples, 1), symbols + 1)], axis=-1).reshape(n, -1)
    keep = np.concatenate([used, column, used, column], axis=-1).reshape(n, -1)
    answer = np.concatenate([np.zeros_like(used), ~column, used, ~column], axis=-1).reshape(n, -1)
    if (keep.sum(axis=1) < width).any():
        raise ValueError(f"{examples} examples do not fill a window of {width}")
    # A stable sort of "not kept" brings every row's kept codes to its front, in order.
    order = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    return np.take_along_axis(grid, order, axis=1), np.take_along_axis(answer, order, axis=1)[:, 1:]


def make_task(name: str, block_size: int, task_vocab: int | None = None, task_length: int | None = None) -> Task:
    """The task a config names, or the one line on what does not fit (a window too short, too many symbols)."""
    symbols = task_vocab if task_vocab is not None else DEFAULT_VOCAB[name]
    if not 2 <= symbols <= len(SYMBOLS):
        raise UserError(f"data.task_vocab must be from 2 to {len(SYMBOLS)} (the digits and letters), got {symbols}")
    width = block_size + 1
    if name == "induction":
        fits = width // 2  # the segment and its copy, side by side
        longest = task_length if task_length is not None else block_size // 2 - 3
        if task_length is None and longest < 2:
            raise UserError(f"data.task induction needs model.block_size >= 10 (its copied segment, block_size // 2 "
                            f"- 3 characters, must hold at least 2), got {block_size}; raise model.block_size")
        if not 2 <= longest <= fits:
            raise UserError(f"data.task_length must be from 2 to {fits} for induction with model.block_size "
                            f"{block_size} (a segment and its copy fit a window of {width}), got {longest}")
        return Task(name, block_size, symbols, min(MIN_SEGMENT, longest), longest)
    fits = (width - 2) // 2  # a sequence, `=`, its answer and END
    if fits < 1:
        raise UserError(f"data.task {name} needs model.block_size >= 3 (one example `3=3` and its line end), got "
                        f"{block_size}; raise model.block_size")
    longest = task_length if task_length is not None else min(DEFAULT_ANSWER, fits)
    if longest > fits:
        raise UserError(f"data.task_length must be at most {fits} for {name} with model.block_size {block_size} (a "
                        f"sequence, `=`, its answer and a line end fit a window of {width}), got {longest}")
    return Task(name, block_size, symbols, 1, longest)


@dataclass
class TaskData:
    """What a task run trains and validates on: the task and its held-out windows, generated once per run from
    train.seed (stream VAL, never drawn for training), so every epoch is validated on the same set."""

    task: Task
    seed: int
    windows: torch.Tensor  # (N, block_size + 1) vocabulary ids
    mask: torch.Tensor  # (N, block_size) bool: the predictable targets

    @property
    def vocab(self) -> Vocab:
        return self.task.vocab

    @property
    def predictions(self) -> int:
        return self.mask.numel()

    def sampler(self, batch_size: int, seed: int) -> TaskSampler:
        return TaskSampler(self.task, batch_size, seed)

    def describe(self) -> str:
        return (f"{self.task.describe()}, generated on the fly; validation on {len(self.windows):,} held-out windows "
                f"({self.predictions:,} predictions, {int(self.mask.sum()):,} of them predictable)")


def load_task(data: DataConfig, block_size: int, seed: int, eval_chars: int | None,
              vocab: Vocab | None = None, vocab_of: str = "the checkpoint") -> TaskData:
    """The task data.task names with its validation windows, as many as hold `eval_chars` predictions. With `vocab`
    (a checkpoint's) the task must have that vocabulary."""
    assert data.task is not None
    task = make_task(data.task, block_size, data.task_vocab, data.task_length)
    if vocab is not None and vocab != task.vocab:
        raise UserError(f"data.task {task.name} with {task.symbols} symbols has another vocabulary than {vocab_of} "
                        f"({task.vocab.size} characters, not {vocab.size}); use the data.task and data.task_vocab "
                        "the model was trained with")
    count = math.ceil((eval_chars or VAL_CHARS) / block_size)
    parts = [task.windows(seed, VAL, i, min(CHUNK, count - i * CHUNK)) for i in range(math.ceil(count / CHUNK))]
    return TaskData(task, seed, torch.cat([w for w, _ in parts]).to(torch.uint8), torch.cat([m for _, m in parts]))


class TaskSampler:
    """Training batches of a task, each drawn from (seed, TRAIN, how many came before): its state is that count."""

    def __init__(self, task: Task, batch_size: int, seed: int) -> None:
        self.task = task
        self.batch_size = batch_size
        self.seed = seed
        self.drawn = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        windows, _ = self.task.windows(self.seed, TRAIN, self.drawn, self.batch_size)  # (B, T+1)
        self.drawn += 1
        return windows[:, :-1], windows[:, 1:]  # x, y: (B, T)

    def state(self) -> torch.Tensor:
        return torch.tensor([self.drawn], dtype=torch.int64)

    def set_state(self, state: torch.Tensor) -> None:
        if not isinstance(state, torch.Tensor) or state.dtype != torch.int64 or state.shape != (1,):
            raise UserError("the checkpoint's batch stream is not a task's (it was trained on text); resume it with "
                            "its own data settings")
        self.drawn = int(state[0])
