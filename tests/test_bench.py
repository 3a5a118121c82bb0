"""scripts/bench.py's throughput method: the arithmetic of its steady-state figures, and one real run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from run_helpers import CORPUS, ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_steady_rate_times_only_the_steps_after_skip(bench) -> None:
    # 10 steps of 100 tokens between the rows at steps 10 and 20, 2 s apart; the slow start does not count.
    times = [(10, 30.0), (20, 32.0), (30, 33.0)]
    assert bench.steady_rate(times, 10, 20, 100) == pytest.approx(500.0)
    assert bench.steady_rate(times, 10, 30, 100) == pytest.approx(20 * 100 / 3.0)


def test_nanogpt_seconds_sums_its_printed_iteration_times(bench) -> None:
    lines = [f"iter {k}: loss 4.1000, time {1000.0 if k == 0 else 10.0 * k:.2f}ms, mfu -100.00%" for k in range(6)]
    stdout = "step 0: train loss 4.2, val loss 4.2\n" + "\n".join(lines)
    # iterations 2, 3, 4 (attnlm's steps 3 to 5): 20 + 30 + 40 ms; iteration 0 held the evaluation
    assert bench.nanogpt_seconds(stdout, 2, 5) == pytest.approx(0.09)
    with pytest.raises(SystemExit, match="no time for iteration 6"):
        bench.nanogpt_seconds(stdout, 2, 7)


def test_throughput_runs_whole_processes_and_reports_the_share_of_peak() -> None:
    assert CORPUS.is_file()
    proc = subprocess.run([sys.executable, "scripts/bench.py", "throughput", "--config", "configs/tiny.yaml",
                           "--pairs", "1", "--steps", "30", "--skip", "10"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("BENCH "))[6:])
    assert record["bench"] == "throughput" and record["pairs"] == 1 and len(record["per_process"]) == 1
    assert record["tokens_per_s"] > 0 and record["peak_gflops"]["fp32"] > 0
    # tiny.yaml: 2 layers of 32 wide, context 32, a 65-character head. Its linear layers hold
    # 2 * (32 * 96 + 32 * 32 + 2 * 32 * 128) + 32 * 65 weights; a training step does 6 FLOPs per weight and
    # token in them, and attention's products add at most the PaLM formula's 12 * layers * width * context.
    linear = 2 * (32 * 96 + 32 * 32 + 2 * 32 * 128) + 32 * 65
    assert 6 * linear <= record["matmul_flops_per_token"] <= 6 * linear + 12 * 2 * 32 * 32
    assert record["matmul_gflops"] == pytest.approx(record["tokens_per_s"] * record["matmul_flops_per_token"] / 1e9,
                                                    rel=0.02, abs=0.05)
