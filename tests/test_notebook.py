"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel: train, sample, heat map, trace."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from run_helpers import ROOT


def test_quickstart_notebook_runs_in_a_jupyter_kernel(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ATTNLM_RUNS", str(tmp_path))  # the kernel inherits it: the run goes there, not runs/
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "examples")}}).execute()  # raises on any error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "best val loss" in text and "ROMEO:" in text and "perplexity" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the heat map was drawn
    assert len(list(tmp_path.glob("notebook-*/checkpoints/best.pt"))) == 1
