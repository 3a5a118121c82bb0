"""Data-parallel training under torchrun: process group, per-rank seeds, agreement between ranks.

Everything here is PyTorch's own machinery (torchrun, torch.distributed, DistributedDataParallel); this
module only decides when to use it. Outside torchrun every helper is a no-op for a single process, so a
plain `attnlm train` runs exactly the code it always ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from attnlm.errors import MachineError, NumericalError, UserError

T = TypeVar("T")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# The step agreement reduces one float64 vector; these are its slots.
_LOSS, _CORRECT, _GRAD_NORM, _SIGINT, _SIGTERM, _CLOCK, _OUT_OF_TIME = range(7)


@dataclass(frozen=True)
class Context:
    """Where this process sits in the job; `active` once a process group exists (even with one rank)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_current = Context()


def current() -> Context:
    return _current


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARS)


def backend() -> str:
    # One group serves both devices: CPU tensors (object collectives, CPU training) go through gloo and
    # CUDA tensors through NCCL. It is created before the config is read, so that config and data errors
    # can already be agreed on by all ranks, and only the config says which device training uses.
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def _init() -> Context:
    rank, world, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # before NCCL exists, so its communicator binds to this rank's GPU
    dist.init_process_group(backend())
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, active=True)


class AgreedError(UserError):
    """A user error every rank knows about (see `agree`): rank 0 reports it, all ranks exit 2 together."""


class AgreedMachineError(MachineError):
    """The same for a fault of the machine found while setting up (no room for the checkpoints): exit 4."""


@contextlib.contextmanager
def session() -> Iterator[Context]:
    """The process group for the duration of a command when torchrun started us; a plain context otherwise.

    Errors every rank shares (agreed user errors; the NaN guard, which checks values reduced over all
    ranks) are printed by rank 0 alone, so the user reads each message once. Ranks that end together
    meet at a barrier first: torchrun kills the whole job as soon as one rank exits with an error, and
    rank 0 may still be printing that error or writing a checkpoint.
    """
    global _current
    if not launched_by_torchrun():
        yield _current
        return
    _current = _init()
    together = False
    try:
        yield _current
        together = True
    except (AgreedError, AgreedMachineError, NumericalError) as e:
        together = True
        if _current.is_main:
            print(f"error: {e}", file=sys.stderr, flush=True)
            _tell_torchrun(f"error: {e}")
        raise SystemExit(exit_code(e)) from None
    except SystemExit:
        together = True  # a rank leaving quietly after `agree`
        raise
    finally:
        _current = Context()
        if together:
            dist.barrier()
        dist.destroy_process_group()


def _tell_torchrun(message: str) -> None:
    """Put our one-line message in torchrun's failure report, where it otherwise says "To enable traceback see"."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError):
            # torchrun's own layout; it prints py_callstack as the rank's "traceback", here our one line.
            info = {"py_callstack": message, "timestamp": str(int(time.time()))}
            Path(path).write_text(json.dumps({"message": {"message": message, "extraInfo": info}}), encoding="utf-8")


def agree(ctx: Context, setup: Callable[[], T]) -> T:
    """Run `setup` on every rank; if it raises UserError (MachineError) on any rank, every rank stops with exit 2 (4).

    Without this a rank that fails alone leaves the others waiting in their next collective until
    torchrun kills them, and the user reads its message among pages of torchrun's report. Rank 0 prints
    the message (with the failing rank when rank 0 itself was fine); the others exit quietly.
    """
    error: UserError | MachineError | None = None
    result: T | None = None
    try:
        result = setup()
    except (UserError, MachineError) as e:
        error = e
    if not ctx.active:
        if error is not None:
            raise error
        return result  # type: ignore[return-value]
    messages: list[tuple[int, str] | None] = [None] * ctx.world
    dist.all_gather_object(messages, (exit_code(error), str(error)) if error is not None else None)
    failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
    if not failed:
        return result  # type: ignore[return-value]
    rank, (code, text) = failed[0]
    if not ctx.is_main:
        raise SystemExit(code)
    kind = AgreedMachineError if code == 4 else AgreedError
    raise kind(text if rank == 0 else f"rank {rank}: {text}")


def exit_code(error: BaseException) -> int:
    """2 for the user's input, 4 for the machine, 3 for the numbers (see docs/usage.md, Exit codes)."""
    return 2 if isinstance(error, UserError) else 4 if isinstance(error, MachineError) else 3


def broadcast(ctx: Context, value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not ctx.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(ctx: Context, value: Any) -> list[Any] | None:
    """Every rank's `value`, in rank order, on rank 0 (None on the others)."""
    if not ctx.active:
        return [value]
    out: list[Any] | None = [None] * ctx.world if ctx.is_main else None
    dist.gather_object(value, out, dst=0)
    return out


def all_reduce_sum(ctx: Context, *tensors: torch.Tensor) -> None:
    """Sum each tensor over ranks, in place."""
    if ctx.active:
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s batch generator: rank 0 keeps `seed`, so a 1-process torchrun run draws
    exactly the batches of a plain run; other ranks get distinct, well-separated seeds."""
    if rank == 0:
        return seed
    return (seed * 1_000_003 + rank * 0x9E3779B97F4A7C15) % (2**63 - 1)


def train_device(ctx: Context, device: torch.device) -> torch.device:
    """Under torchrun each rank trains on its own GPU, cuda:LOCAL_RANK, whatever CUDA index the config names."""
    if not ctx.active or device.type != "cuda":
        return device
    if ctx.local_rank >= torch.cuda.device_count():
        raise UserError(f"local rank {ctx.local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                        "give torchrun at most that many --nproc_per_node, or train on cpu")
    return torch.device("cuda", ctx.local_rank)


def wrap(ctx: Context, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: DistributedDataParallel under torchrun, the model itself otherwise.

    Everything else (state_dict, evaluation, sampling) keeps using the bare model, so checkpoint keys are
    the same as in a single-process run.
    """
    if not ctx.active:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sync_gradients(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Around a micro-batch's forward and backward: skip DDP's gradient all-reduce unless `sync`.

    Gradients of skipped micro-batches accumulate locally and travel with the last one's all-reduce,
    so k micro-batches cost one communication instead of k.
    """
    if sync or not isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


@dataclass
class StepAgreement:
    """What every rank acts on after a step: values reduced over ranks and rank 0's decisions."""

    loss_sum: torch.Tensor  # mean over ranks of the ranks' summed micro-batch losses
    correct: torch.Tensor  # summed over ranks
    grad_norm: torch.Tensor  # non-finite if it was on any rank
    stop_signal: int | None  # SIGINT or SIGTERM if any rank received one
    clock: float  # rank 0's seconds since the session started
    out_of_time: bool  # rank 0's max_time verdict


def agree_step(ctx: Context, loss_sum: torch.Tensor, correct: torch.Tensor, grad_norm: torch.Tensor,
               stop_signal: int | None, clock: float, out_of_time: bool) -> StepAgreement:
    """One all-reduce per optimizer step that makes every rank take the same decisions.

    A signal lands on each rank at a slightly different moment and each rank has its own clock; acting
    on local values would send ranks down different paths (one saving, one stepping) where they wait
    forever in collectives that never match. The loss is reduced so that the NaN guard fires on all
    ranks or none, and the logged loss is the global batch's.
    """
    v = torch.zeros(7, dtype=torch.float64)
    v[_SIGINT] = float(stop_signal == signal.SIGINT)
    v[_SIGTERM] = float(stop_signal is not None and stop_signal != signal.SIGINT)
    if ctx.is_main:
        v[_CLOCK], v[_OUT_OF_TIME] = clock, float(out_of_time)
    v = v.to(loss_sum.device)
    v[_LOSS], v[_CORRECT], v[_GRAD_NORM] = loss_sum.double(), correct.double(), grad_norm.double()
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    host = v.tolist()
    stop = signal.SIGINT if host[_SIGINT] else signal.SIGTERM if host[_SIGTERM] else None
    return StepAgreement(loss_sum=(v[_LOSS] / ctx.world).to(loss_sum.dtype), correct=v[_CORRECT].round().long(),
                         grad_norm=v[_GRAD_NORM] / ctx.world, stop_signal=stop, clock=host[_CLOCK],
                         out_of_time=bool(host[_OUT_OF_TIME]))


def resume_command(ctx: Context, run_dir: Path) -> str:
    """The command that continues `run_dir`: a run is resumed the way it was launched."""
    folder = shlex.quote(str(run_dir))
    if not ctx.active:
        return f"attnlm train --resume {folder}"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world))
    if per_node == ctx.world:
        return f"torchrun --standalone --nproc_per_node={per_node} -m attnlm train --resume {folder}"
    return (f"torchrun --nnodes={ctx.world // per_node} --nproc_per_node={per_node} --rdzv-backend=c10d "
            f"--rdzv-endpoint=HOST:PORT -m attnlm train --resume {folder}")


def check_world(ctx: Context, saved_world: int) -> None:
    """A checkpoint holds one data generator per rank; resuming needs the same number of ranks."""
    if saved_world != ctx.world:
        how = ("plain `attnlm train --resume`" if saved_world == 1
               else f"torchrun with {saved_world} processes in all (--nnodes x --nproc_per_node)")
        raise UserError(f"this run was trained by {saved_world} process(es) and this job has {ctx.world}; each process "
                        f"resumes its own batch stream, so resume it with {how}, or start a new run")
