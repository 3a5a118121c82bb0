"""Screenshots of `attnlm explore`'s views for the README: serve a run, drive the system Chromium with
Playwright, save one small PNG per view.

    .venv/bin/python scripts/explore_screenshots.py runs/demo --out docs --text "To be, or not to be, that is"
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, sync_playwright

from attnlm.api import start_explorer

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def save(page: Page, selector: str, path: Path) -> None:
    """The element's screenshot as a 256-colour PNG (a third of the size, the same to the eye)."""
    png = page.locator(selector).screenshot()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--text", default=None, help="text to type (default: the run's probe text)")
    parser.add_argument("--query", type=int, default=None, help="character to click (default: the last)")
    parser.add_argument("--pipeline-text", default=None, help="a shorter text for the pipeline's wide tables")
    parser.add_argument("--layer", default="1")
    parser.add_argument("--head", default="0")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = start_explorer(args.run)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(server.url)
            page.locator("#lines path.edge").first.wait_for(state="attached")
            if args.text is not None:
                page.locator("#text").fill(args.text)
                page.wait_for_function(f"document.querySelectorAll('#strip .pos').length === {len(args.text)}")
            page.select_option("#layer", args.layer)
            page.select_option("#head", args.head)
            if args.query is not None:
                page.locator(f"#lines g.char[data-index='{args.query}']").click()
            page.mouse.move(0, 0)
            page.click("#sample-button")
            page.wait_for_function("!['', '…'].includes(document.querySelector('#continuation').textContent)")
            save(page, "#input-panel", args.out / "explore-text.png")
            save(page, "#view-lines", args.out / "explore-lines.png")
            page.check("#words")
            save(page, "#view-lines", args.out / "explore-words.png")
            page.uncheck("#words")
            page.click("#tabs button[data-tab=heatmap]")
            save(page, "#view-heatmap", args.out / "explore-heatmap.png")
            if args.pipeline_text is not None:
                page.locator("#text").fill(args.pipeline_text)
                n = len(args.pipeline_text)
                page.wait_for_function(f"document.querySelectorAll('#strip .pos').length === {n}")
            page.click("#tabs button[data-tab=pipeline]")
            page.locator("#softmax").wait_for()
            save(page, "#view-pipeline", args.out / "explore-pipeline.png")
            page.click("#tabs button[data-tab=training]")
            page.locator("#epoch-lines path.edge").first.wait_for(state="attached")
            page.locator("#epoch").evaluate("s => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
            page.wait_for_function("document.querySelector('#epoch-label').textContent.includes('after epoch 1 ')")
            save(page, "#epoch-heatmaps", args.out / "explore-epoch-1.png")
            page.locator("#epoch").evaluate("s => { s.value = s.max; s.dispatchEvent(new Event('input')); }")
            page.wait_for_timeout(500)
            save(page, "#view-training", args.out / "explore-training.png")
            browser.close()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
