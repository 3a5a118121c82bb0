"""attnlm export: safetensors + config.json + vocab.json that give the very same model back, in attnlm and
outside it."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from run_helpers import ROOT, run_cli, snapshot
from safetensors import safe_open

from attnlm.api.evaluate import eval_
from attnlm.api.sample import sample
from attnlm.checks import SamplingOptions
from attnlm.config import Config, LogConfig, ModelConfig
from attnlm.errors import UserError
from attnlm.lm.model import AttnLM
from attnlm.store.checkpoint import save_checkpoint
from attnlm.store.export import export
from attnlm.store.exported import load_export
from attnlm.store.load import load_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, its export written by the real CLI)."""
    run_dir, _ = trained_run
    out = tmp_path_factory.mktemp("export") / "shared-export"
    result = run_cli("export", str(run_dir), "--out", str(out), check=True)
    assert result.stdout.startswith(f"exported {run_dir / 'checkpoints' / 'best.pt'} (step ")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.py", "model.safetensors", "vocab.json"]
    return run_dir, out


def logits_of(model: AttnLM, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)[0]


def test_round_trip_gives_identical_logits(exported: tuple[Path, Path]) -> None:
    run_dir, out = exported
    original, vocab, cfg, _ = load_model(run_dir / "checkpoints" / "best.pt", CPU)
    again, vocab2, cfg2, meta = load_export(out)
    assert vocab2 == vocab and cfg2 == cfg and meta["vocab_size"] == vocab.size
    ids = torch.randint(0, vocab.size, (3, cfg.model.block_size), generator=torch.Generator().manual_seed(0))
    assert torch.equal(logits_of(original, ids), logits_of(again, ids))


def test_tied_weights_are_stored_once_and_tied_again(tmp_path: Path) -> None:
    """A tied head, and the pair table of model.bigram, come back from an export as they were trained."""
    cfg = Config(model=ModelConfig(block_size=8, n_layer=1, n_head=2, n_embd=8, tie_weights=True, bigram=True),
                 log=LogConfig(name="tied"))
    torch.manual_seed(0)
    model = AttnLM(cfg.model, 5)
    save_checkpoint({"config": cfg.to_dict(), "vocab": "\nab€é", "model": model.state_dict()}, tmp_path / "m.pt")
    meta = export(tmp_path / "m.pt", tmp_path / "out")
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        assert "tok_emb.weight" in f.keys() and "head.weight" not in f.keys()
    again, vocab, _, _ = load_export(tmp_path / "out")
    assert meta["tied"] == {"head.weight": "tok_emb.weight"} and vocab.chars == "\nab€é"
    assert again.head.weight is again.tok_emb.weight
    assert torch.equal(again.pair_emb.weight, model.pair_emb.weight)
    ids = torch.tensor([[0, 1, 2, 3, 4, 1]])
    assert torch.equal(logits_of(model.eval(), ids), logits_of(again, ids))


def test_sample_and_eval_read_an_export_through_the_cli(exported: tuple[Path, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, out = exported
    sampled = run_cli("sample", "--checkpoint", str(out), "-n", "60", "--seed", "7", "--temperature", "0.9",
                      check=True)
    sample(run=str(run_dir), checkpoint=None, prompt=None, max_new_tokens=60,
                    opts=SamplingOptions(temperature=0.9), num_samples=1, seed=7, device_name="cpu")
    assert sampled.stdout == capsys.readouterr().out
    evaluated = run_cli("eval", "--checkpoint", str(out), check=True)
    buffer = io.StringIO()
    eval_(run=str(run_dir), checkpoint=None, data=None, device_name="cpu", console=Console(file=buffer, width=1000))
    assert evaluated.stdout.splitlines()[0].startswith(f"{out} on validation split of ")
    assert evaluated.stdout.splitlines()[-3:] == buffer.getvalue().splitlines()[-3:]  # loss, perplexity, accuracy


def test_export_never_replaces_a_folder_and_bad_exports_are_one_line(exported: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    run_dir, out = exported
    before = snapshot(out)
    with pytest.raises(UserError, match=rf"^{re.escape(str(out))} already exists; pass another --out"):
        export(run_dir / "checkpoints" / "best.pt", out)
    assert snapshot(out) == before
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "vocab.json").unlink()
    with pytest.raises(UserError, match=r"is not a complete attnlm export \(vocab\.json is missing\)"):
        load_model(broken, CPU)
    with pytest.raises(UserError, match=r"is a folder but not an export"):
        load_model(run_dir, CPU)


BLOCK_ATTNLM = '''
import sys
class NoAttnlm:
    def find_spec(self, name, path=None, target=None):
        if name == "attnlm" or name.startswith("attnlm."):
            raise ImportError("attnlm is not installed here")
sys.meta_path.insert(0, NoAttnlm())
'''


def test_the_export_docs_load_an_export_with_only_torch_and_safetensors(exported: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    _, out = exported
    docs = (ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    section = docs.split("## Loading an export without attnlm", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_ATTNLM, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    blocked = subprocess.run([sys.executable, "-c", "import attnlm"], env=env, capture_output=True, text=True)
    assert "attnlm is not installed here" in blocked.stderr
    result = subprocess.run([sys.executable, "-c", snippet], cwd=out, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout.removesuffix("\n")  # print's newline; the sampled text may end in one of its own
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))["chars"]
    assert text.startswith("HELENA.") and len(text) == len("HELENA.") + 80 and set(text) <= set(vocab)
