"""Shared fixtures: a small real corpus, one trained run and one reference run per session (the helpers they
use live in run_helpers.py, which tests import directly)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from run_helpers import CORPUS, SMALL_CHARS, TINY, reference_run, run_cli

from attnlm.api.explore import open_explored
from attnlm.explore.model_access import ExploredModel
from attnlm.explore.server import ExploreServer, start


def pytest_sessionstart(session: pytest.Session) -> None:
    """Each skipped test is listed with its reason at the end, as -rs does: pytest's default report (-rfE) only
    counts them, and a test that did not run (no Chromium, no right to mount) must say so where it is read. An
    explicit -r choice is kept."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.option.reportchars == "fE" and not reporter.hasopt("s"):
        reporter.reportchars += "s"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under mutmut (`make mutate`), a mutant's tests run fastest first: mutmut stops at the first failure, so a
    killed mutant then costs its quickest killing test rather than whichever slow test came first."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    stats = config.rootpath / "mutmut-stats.json"
    durations = json.loads(stats.read_text(encoding="utf-8"))["duration_by_test"] if stats.is_file() else {}
    items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))


@pytest.fixture(scope="session", autouse=True)
def private_data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Prepared corpora go to a folder of this test session (the default is the user's ~/.cache/attnlm), for
    this process and every CLI process it starts."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder / "attnlm" / "data"
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 60k characters of the default corpus: real text, small enough for fast tests."""
    if not CORPUS.is_file():
        pytest.fail(f"{CORPUS} is missing: run `make data` (make test does it)")
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(CORPUS.read_text(encoding="utf-8")[:SMALL_CHARS], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """One real training run through the CLI, shared by the tests that only read it."""
    runs = tmp_path_factory.mktemp("runs")
    result = run_cli("train", "--config", "configs/tiny.yaml", *TINY, "--set", f"data.path={small_corpus}",
                     "--set", f"log.dir={runs}", "--name", "shared", "--set", "log.timestamp=false",
                     "--set", "log.attention_images=true", check=True)
    return runs / "shared", result


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Path:
    """The uninterrupted run that the resume, interrupt, error and reproducibility tests compare against."""
    return reference_run(tmp_path_factory, small_corpus)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """In-process training on one thread: on 2 shared cores two threads wait on each other (measured 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def served(trained_run: tuple[Path, object]) -> Iterator[tuple[ExploreServer, ExploredModel]]:
    """The shared trained run served by the explorer in a background thread, one per test file."""
    run_dir, _ = trained_run
    model = open_explored(str(run_dir), None)
    server = start(model)
    yield server, model
    server.shutdown()
    server.server_close()
