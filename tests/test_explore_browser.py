"""The explorer in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

It loads the page for a trained run, types a text, clicks a character, reads the drawn attention weights
from the page and checks them against the model, follows the pipeline, moves the epoch slider and takes a
screenshot. CI (.ci/run) installs Chromium and sets ATTNLM_REQUIRE_BROWSER=1, which turns a missing browser
into a failure; elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from attnlm.api.explore import start_explorer
from attnlm.inspection.attention import attention_weights
from attnlm.inspection.probe import load_weights, weight_files

REQUIRED = os.environ.get("ATTNLM_REQUIRE_BROWSER") == "1"
# Flags for a sandbox-less container and a machine with no network: nothing is fetched at start-up.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
TEXT = "To be, or not to be"


CANDIDATES = ("chromium", "chromium-browser", "google-chrome")  # looked up on PATH unless ATTNLM_CHROMIUM names one


def chromium() -> str:
    """The system Chromium, or a skip saying where it was looked for and what to do (a failure under
    ATTNLM_REQUIRE_BROWSER=1, as in CI)."""
    named = os.environ.get("ATTNLM_CHROMIUM")
    if named:
        found = named if os.path.isfile(named) and os.access(named, os.X_OK) else None
        where = f"{named} (ATTNLM_CHROMIUM)"
    else:
        found = next((p for p in (shutil.which(n) for n in CANDIDATES) if p), None)
        where = f"{', '.join(CANDIDATES)} on PATH"
    problem = None
    if found is None:
        problem = (f"no Chromium at {where}; install Debian's chromium (sudo apt-get install chromium) "
                   "or set ATTNLM_CHROMIUM to one")
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install -e '.[dev]')"
    if problem:
        if REQUIRED:
            pytest.fail(f"ATTNLM_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(f"browser test skipped: {problem}; set ATTNLM_REQUIRE_BROWSER=1 to make this a failure")
    return found


@contextlib.contextmanager
def open_page(url: str, errors: list[str], width: int = 1200,
              ignore: Callable[[str], bool] = lambda text: False) -> Iterator[Any]:
    """A page of headless Chromium at `url` (a `chromium()` check first), collecting the page's errors and
    console errors into `errors` (those `ignore` accepts left out); the browser closes on the way out."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not ignore(m.text) else None)
            page.goto(url)
            yield page
        finally:
            browser.close()


def test_a_missing_browser_is_a_skip_that_says_why_or_a_failure_when_required(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Chromium the test below does not pass quietly: it is skipped with where it looked and what to do,
    and under ATTNLM_REQUIRE_BROWSER=1 (CI) it fails."""
    monkeypatch.delenv("ATTNLM_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no browser on PATH
    monkeypatch.setitem(globals(), "REQUIRED", False)
    skipped = (r"^browser test skipped: no Chromium at chromium, chromium-browser, google-chrome on PATH; install "
               r"Debian's chromium \(sudo apt-get install chromium\) or set ATTNLM_CHROMIUM to one; "
               r"set ATTNLM_REQUIRE_BROWSER=1 to make this a failure$")
    with pytest.raises(pytest.skip.Exception, match=skipped):
        chromium()
    gone = tmp_path / "no-such-chromium"
    monkeypatch.setenv("ATTNLM_CHROMIUM", str(gone))
    with pytest.raises(pytest.skip.Exception, match=rf"^browser test skipped: no Chromium at {re.escape(str(gone))} "
                                                    r"\(ATTNLM_CHROMIUM\); "):
        chromium()
    monkeypatch.setitem(globals(), "REQUIRED", True)
    # A skip here would skip this very test, so both outcomes are caught and the failure is asserted.
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as required:
        chromium()
    assert required.type is pytest.fail.Exception, required.value
    assert re.match(rf"^ATTNLM_REQUIRE_BROWSER=1 but no Chromium at {re.escape(str(gone))} \(ATTNLM_CHROMIUM\); "
                    r"install Debian's chromium \(sudo apt-get install chromium\) or set ATTNLM_CHROMIUM to one$",
                    str(required.value)), required.value


def drawn_row(page, svg: str) -> dict[int, float]:
    """{key position: weight} of the lines drawn in one SVG, read from the page."""
    edges = page.locator(f"{svg} path.edge").evaluate_all(
        "paths => paths.map(p => [Number(p.dataset.to), Number(p.dataset.weight)])")
    return {int(j): w for j, w in edges}


def as_row(drawn: dict[int, float], n: int) -> torch.Tensor:
    assert sorted(drawn) == list(range(n)), drawn  # one line to each earlier character and itself, no more
    return torch.tensor([drawn[j] for j in range(n)])


def test_the_page_in_a_real_browser(trained_run, tmp_path: Path) -> None:
    chromium()  # skipped or failed with the reason before anything starts
    from playwright.sync_api import expect

    run_dir, _ = trained_run
    server = start_explorer(str(run_dir))
    model = server.model
    errors: list[str] = []
    try:
        with open_page(server.url, errors) as page:
            # The page's first analysis is the process's first attention call, which imports torch._dynamo (for
            # torch.compiler.set_stance): 5-10 s on a cold machine, past Playwright's 5 s default. A wait, not a
            # timing check: every later expect keeps the default.
            expect(page.locator("#lines path.edge").first).to_be_attached(timeout=60_000)

            # Type a text: the strip gets a column per character, with the model's top 5 under each.
            box = page.locator("#text")
            box.fill(TEXT[:-1])
            box.press_sequentially(TEXT[-1])
            expect(page.locator("#strip .pos")).to_have_count(len(TEXT))
            expect(page.locator("#strip .pos").nth(3).locator(".pred")).to_have_count(5)

            # Click a character: lines run to every earlier character with the model's weights.
            weights = attention_weights(model.module, model.vocab.encode(TEXT))  # per layer (H, T, T)
            page.locator("#lines g.char[data-index='7']").click()
            expect(page.locator("#strip .pos.selected")).to_have_attribute("data-index", "7")
            assert torch.allclose(as_row(drawn_row(page, "#lines"), 8), weights[0][0, 7, :8], atol=1e-4)
            page.select_option("#layer", "1")
            page.select_option("#head", "1")
            assert torch.allclose(as_row(drawn_row(page, "#lines"), 8), weights[1][1, 7, :8], atol=1e-4)

            page.click("#tabs button[data-tab=heatmap]")
            expect(page.locator("#heatmaps rect.hm")).to_have_count(len(TEXT) ** 2)

            # The pipeline for that head and query: its softmax row is the same row again.
            page.click("#tabs button[data-tab=pipeline]")
            cells = page.locator("#softmax td")
            expect(cells).to_have_count(len(TEXT))
            shown = torch.tensor([float(c) for c in cells.all_inner_texts()])
            assert torch.allclose(shown, weights[1][1, 7], atol=6e-4)  # printed with three decimals

            # Training: move the epoch slider back to epoch 1 and see the typed text's attention under the
            # weights that epoch kept.
            page.click("#tabs button[data-tab=training]")
            expect(page.locator("#epoch-table tr[data-epoch]")).to_have_count(3)
            expect(page.locator("#epoch-label")).to_contain_text("after epoch 3")
            page.locator("#epoch").evaluate("s => { s.value = 1; s.dispatchEvent(new Event('input')); }")
            expect(page.locator("#epoch-label")).to_contain_text("after epoch 1 (step 30)")
            expect(page.locator("#epoch-label")).to_contain_text(f"your text “{TEXT}”")
            replayer = copy.deepcopy(model.module)
            replayer.load_state_dict(load_weights(weight_files(run_dir)[1]).state)
            first = attention_weights(replayer, model.vocab.encode(TEXT))
            assert not torch.allclose(first[1][1, -1], weights[1][1, -1], atol=1e-3)  # epoch 1 is not the end
            assert torch.allclose(as_row(drawn_row(page, "#epoch-lines"), len(TEXT)), first[1][1, -1], atol=1e-4)
            page.screenshot(path=str(tmp_path / "explore.png"), full_page=True)
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "explore.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert errors == []
