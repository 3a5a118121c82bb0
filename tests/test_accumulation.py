"""Gradient accumulation: k micro-batches of B are one batch of k*B; global_batch_size derives k."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console

from attnlm.config import load_config, resolve_accumulation
from attnlm.errors import UserError
from attnlm.store.run_dir import new_run_dir
from attnlm.training import Trainer

TINY = ["model.block_size=32", "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "train.lr=3e-3",
        "train.warmup_steps=2", "train.epochs=1", "train.steps_per_epoch=4", "log.sample_chars=0",
        "log.tensorboard=false", "train.eval_batch_size=256"]


pytestmark = pytest.mark.usefixtures("one_thread")


def gradients_per_step(corpus: Path, tmp: Path, batch_size: int, accum: int) -> tuple[list[list[torch.Tensor]], Trainer]:
    """Train 4 steps through the real Trainer; the gradients each optimizer step applies, captured by a step hook."""
    cfg = load_config("configs/tiny.yaml", [f"data.path={corpus}", *TINY, f"train.batch_size={batch_size}",
                                            f"train.grad_accum_steps={accum}", f"log.dir={tmp}"])
    trainer = Trainer(cfg, Console(quiet=True))
    seen: list[list[torch.Tensor]] = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append([p.grad.clone() for g in opt.param_groups for p in g["params"]]))
    assert trainer.fit(new_run_dir(tmp, f"b{batch_size}x{accum}", False, False)) == 0
    return seen, trainer


def test_k_micro_batches_give_the_gradients_of_one_batch_k_times_larger(tmp_path: Path, small_corpus: Path) -> None:
    # The sampler's generator yields the same windows whether drawn 4 x 8 or 1 x 32 at a time, so both
    # runs see the same data; only how the mean over 32 rows is summed differs.
    accumulated, a = gradients_per_step(small_corpus, tmp_path, batch_size=8, accum=4)
    whole, b = gradients_per_step(small_corpus, tmp_path, batch_size=32, accum=1)
    assert len(accumulated) == len(whole) == 4
    for step, (got, want) in enumerate(zip(accumulated, whole, strict=True)):
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6, msg=lambda m, s=step: f"step {s + 1}: {m}")
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    # The comparison can tell batches apart: half the windows (2 x 8) give other gradients.
    half, _ = gradients_per_step(small_corpus, tmp_path, batch_size=8, accum=2)
    assert not torch.allclose(half[0][0], whole[0][0], rtol=1e-2)


def test_global_batch_size_sets_accumulation_from_the_number_of_processes() -> None:
    cfg = load_config(None, ["train.batch_size=8", "train.global_batch_size=64"])
    assert resolve_accumulation(cfg, 1).train.grad_accum_steps == 8
    assert resolve_accumulation(cfg, 2).train.grad_accum_steps == 4
    assert resolve_accumulation(cfg, 8).train.grad_accum_steps == 1
    assert cfg.train.grad_accum_steps == 1, "the caller's config is left alone"
    with pytest.raises(UserError, match=r"global_batch_size \(64\) must be a multiple of .* 8 x 3 = 24"):
        resolve_accumulation(cfg, 3)
    both = load_config(None, ["train.batch_size=8", "train.global_batch_size=64", "train.grad_accum_steps=2"])
    with pytest.raises(UserError, match=r"grad_accum_steps \(2\) contradicts .* gives 8 on 1 process"):
        resolve_accumulation(both, 1)
    assert resolve_accumulation(both, 4).train.grad_accum_steps == 2, "a consistent pair is fine"
    with pytest.raises(UserError, match="global_batch_size' must be positive or null"):
        load_config(None, ["train.global_batch_size=0"])
