"""Which random stream a checkpoint restores where: torch's (dropout), the batch generator's, each GPU's, and
under torchrun each rank's own. The single-process CPU case is exercised end to end by the resume tests; the
GPU and torchrun cases are pinned here on this machine by recording the calls torch.cuda and torch.mps receive
(their real setters need the hardware), so a stream sent to the wrong place, or not sent, fails a test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from run_helpers import load_checkpoint

from attnlm.config import Config, load_config
from attnlm.data import BatchSampler
from attnlm.errors import UserError
from attnlm.training import Trainer
from attnlm.training.state import TrainState, checkpoint_payload, restore, rng_states


def _parts() -> tuple[torch.nn.Module, torch.optim.Optimizer, BatchSampler]:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    sampler = BatchSampler(torch.arange(100), block_size=4, batch_size=2, seed=0)
    return model, optimizer, sampler


def _stream(seed: int) -> torch.Tensor:
    return torch.Generator().manual_seed(seed).get_state()


def _payload(model: torch.nn.Module, optimizer: torch.optim.Optimizer, **rng: Any) -> dict[str, Any]:
    base = {"torch": _stream(1), "data": _stream(2), "cuda": [], "mps": None}
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": {**base, **rng},
            "state": {"step": 7, "epoch": 2}}


@pytest.fixture
def gpu_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every call restore and rng_states make to the GPU random-state functions, in order."""
    calls: list[tuple] = []
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(("cuda all", states)))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("cuda", state, device)))
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get cuda", device)) or _stream(5))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: calls.append(("get cuda all",)) or [_stream(5)])
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: calls.append(("mps", state)))
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: calls.append(("get mps",)) or _stream(6))
    return calls


def test_a_cpu_checkpoint_restores_torch_and_the_batch_stream_and_touches_no_gpu(gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    state = restore(_payload(model, optimizer), model, optimizer, sampler, torch.device("cpu"), rank=0)
    assert state == TrainState(step=7, epoch=2)
    assert torch.equal(torch.get_rng_state(), _stream(1))
    assert torch.equal(sampler.state(), _stream(2))
    assert gpu_calls == []


def test_a_gpu_checkpoint_resumed_on_the_cpu_leaves_the_gpu_streams_alone(gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    payload = _payload(model, optimizer, cuda=[_stream(3)], mps=_stream(4))
    restore(payload, model, optimizer, sampler, torch.device("cpu"), rank=0)
    assert gpu_calls == []
    assert torch.equal(torch.get_rng_state(), _stream(1))


def test_a_cuda_run_gets_every_gpus_stream_back(gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    streams = [_stream(3), _stream(4)]
    restore(_payload(model, optimizer, cuda=streams), model, optimizer, sampler, torch.device("cuda"), rank=0)
    assert gpu_calls == [("cuda all", streams)]


def test_a_cuda_run_without_saved_gpu_streams_sets_nothing(gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    restore(_payload(model, optimizer), model, optimizer, sampler, torch.device("cuda"), rank=0)
    assert gpu_calls == []


def test_an_mps_run_gets_its_stream_back_and_only_when_it_was_saved(gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    restore(_payload(model, optimizer, mps=_stream(4)), model, optimizer, sampler, torch.device("mps"), rank=0)
    assert len(gpu_calls) == 1 and gpu_calls[0][0] == "mps" and torch.equal(gpu_calls[0][1], _stream(4))
    gpu_calls.clear()
    restore(_payload(model, optimizer), model, optimizer, sampler, torch.device("mps"), rank=0)
    assert gpu_calls == []


def _ranks(cuda: bool) -> list[dict[str, Any]]:
    return [{"torch": _stream(10 + r), "data": _stream(20 + r), "cuda": _stream(30 + r) if cuda else None}
            for r in range(3)]


@pytest.mark.parametrize("rank", [0, 2])
def test_each_torchrun_rank_continues_its_own_streams(rank: int, gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    restore(_payload(model, optimizer, ranks=_ranks(cuda=False)), model, optimizer, sampler, torch.device("cpu"),
            rank=rank)
    assert torch.equal(torch.get_rng_state(), _stream(10 + rank))
    assert torch.equal(sampler.state(), _stream(20 + rank))
    assert gpu_calls == []


def test_each_torchrun_rank_on_a_gpu_gets_its_own_gpu_stream_on_its_own_device(gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    device = torch.device("cuda", 1)
    restore(_payload(model, optimizer, cuda=[_stream(3)], ranks=_ranks(cuda=True)), model, optimizer, sampler,
            device, rank=1)
    assert [c[0] for c in gpu_calls] == ["cuda all", "cuda"]
    _, state, on = gpu_calls[1]
    assert torch.equal(state, _stream(31)) and on == device
    assert torch.equal(torch.get_rng_state(), _stream(11)) and torch.equal(sampler.state(), _stream(21))


def test_a_torchrun_rank_on_the_cpu_sets_no_gpu_stream(gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    restore(_payload(model, optimizer, ranks=_ranks(cuda=True)), model, optimizer, sampler, torch.device("cpu"),
            rank=1)
    assert gpu_calls == []


@pytest.mark.parametrize("kind", ["cpu", "cuda", "mps"])
def test_the_streams_saved_are_the_ones_of_the_device_in_use(kind: str, gpu_calls: list[tuple]) -> None:
    model, optimizer, sampler = _parts()
    device = torch.device(kind)
    torch.manual_seed(123)
    saved = rng_states(sampler, device)
    assert torch.equal(saved["torch"], torch.get_rng_state()) and torch.equal(saved["data"], sampler.state())
    assert (saved["cuda"] is not None) == (kind == "cuda") and (saved["mps"] is not None) == (kind == "mps")
    assert [c for c in gpu_calls if c[0] == "get cuda"] == ([("get cuda", device)] if kind == "cuda" else [])
    payload = checkpoint_payload(Config(), "ab", model, optimizer, TrainState(), saved, device, bf16=False)
    cuda = payload["rng"]["cuda"]
    assert len(cuda) == (kind == "cuda") and all(torch.equal(s, _stream(5)) for s in cuda)
    assert payload["rng"]["mps"] is saved["mps"]
    assert payload["meta"] == {"torch": str(torch.__version__), "device": str(device), "bf16": False, "params": 8}
    assert payload["vocab"] == "ab" and payload["state"]["step"] == 0


# ----- a torchrun checkpoint resumed by the trainer --------------------------------------------------------------


def _resumable(reference: Path, world: int) -> tuple[Config, dict[str, Any]]:
    """The reference run's config and last.pt, as if `world` torchrun processes had written it."""
    payload = load_checkpoint(reference / "checkpoints" / "last.pt")
    payload["rng"]["ranks"] = [{"torch": _stream(10 + r), "data": _stream(20 + r), "cuda": None} for r in range(world)]
    return load_config(reference / "config.yaml"), payload


def test_a_checkpoint_of_two_torchrun_processes_is_refused_by_one(reference: Path) -> None:
    cfg, payload = _resumable(reference, world=2)
    with pytest.raises(UserError) as refused:
        Trainer(cfg, Console(quiet=True), resume=payload)
    assert str(refused.value) == (
        "this run was trained by 2 process(es) and this job has 1; each process resumes its own batch stream, so "
        "resume it with torchrun with 2 processes in all (--nnodes x --nproc_per_node), or start a new run")


def test_a_checkpoint_of_one_torchrun_process_resumes_that_processs_streams(reference: Path) -> None:
    cfg, payload = _resumable(reference, world=1)
    trainer = Trainer(cfg, Console(quiet=True), resume=payload)
    assert torch.equal(torch.get_rng_state(), _stream(10)) and torch.equal(trainer.sampler.state(), _stream(20))
    assert trainer.state.step == payload["state"]["step"]
