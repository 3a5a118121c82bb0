"""The arithmetic of `make mutate`'s report: which mutants a sample draws, and the interval of a sampled kill
rate. mutmut itself is not run here (a run takes minutes to hours)."""

from __future__ import annotations

import importlib.util
import math
from collections import Counter
from types import ModuleType

import pytest
from run_helpers import ROOT


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_report", ROOT / "scripts" / "mutation_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES = [f"attnlm.lm.model.x_f__mutmut_{i}" for i in range(1, 41)]


def test_a_sample_is_the_same_for_the_same_seed_and_module_and_differs_otherwise(report: ModuleType) -> None:
    a = report.draw(NAMES, "attnlm/lm/model.py", 10, 0)
    assert a == report.draw(list(reversed(NAMES)), "attnlm/lm/model.py", 10, 0)  # whatever order mutmut lists them in
    assert len(a) == len(set(a)) == 10 and set(a) <= set(NAMES)
    assert a == sorted(a, key=report.natural)
    assert a != report.draw(NAMES, "attnlm/lm/model.py", 10, 1)
    assert a != report.draw(NAMES, "attnlm/checks.py", 10, 0)
    assert report.draw(NAMES, "attnlm/lm/model.py", 100, 0) == sorted(NAMES, key=report.natural)  # all of a small one
    assert set(report.draw(NAMES, "attnlm/lm/model.py", 4, 0)) < set(a)  # a smaller sample is part of a larger one


def test_mutants_sort_by_function_then_number(report: ModuleType) -> None:
    names = ["m.x_g__mutmut_1", "m.x_f__mutmut_10", "m.x_f__mutmut_2"]
    assert sorted(names, key=report.natural) == ["m.x_f__mutmut_2", "m.x_f__mutmut_10", "m.x_g__mutmut_1"]


@pytest.mark.parametrize("detected, tested, low, high", [(90, 100, 0.8256, 0.9448), (100, 100, 0.9630, 1.0),
                                                         (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634)])
def test_the_interval_of_a_sampled_kill_rate_is_wilsons(report: ModuleType, detected: int, tested: int, low: float,
                                                         high: float) -> None:
    got = report.wilson(detected, tested)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_the_kill_rate_counts_timeouts_as_caught_and_leaves_out_what_was_not_tested(report: ModuleType) -> None:
    counts = Counter({"killed": 8, "timeout": 1, "survived": 1, "not checked": 5, "skipped": 2})
    assert report.kill_rate(counts, sampled=False) == "90.0%"
    low, high = report.wilson(9, 10)
    assert report.kill_rate(counts, sampled=True) == f"90.0% ({100 * low:.0f}-{100 * high:.0f}%)"
    assert report.kill_rate(Counter({"not checked": 3}), sampled=False) == "-"
    assert math.isclose(low, 0.5958, abs_tol=1e-4)


def test_the_table_adds_a_total_row_and_the_module_sizes_of_a_sample(report: ModuleType) -> None:
    rows = [("a.py", Counter({"killed": 9, "survived": 1}), 50), ("b.py", Counter({"killed": 10}), 20)]
    lines = report.table(rows, sampled=True).splitlines()
    assert lines[0].split()[:3] == ["module", "mutants", "of"]
    assert lines[-1].split()[:5] == ["all", "20", "70", "19", "1"]
    assert "95.0%" in lines[-1]
    assert report.table(rows[:1], sampled=False).splitlines()[-1].split() == ["a.py", "10", "9", "1", "0", "0", "0",
                                                                               "0", "90.0%"]
