"""Screenshots of `attnlm explore`'s views for the README: serve a run, drive the system Chromium with
Playwright, save one small PNG per view.

    .venv/bin/python scripts/explore_screenshots.py runs/demo --out docs --text "To be, or not to be, that is"
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

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
    parser.add_argument("--graph-text", default="I love tennis.", help="a short text for the graph (in words)")
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
                expect(page.locator("#strip .pos")).to_have_count(len(args.text))
            page.select_option("#layer", args.layer)
            page.select_option("#head", args.head)
            if args.query is not None:
                page.locator(f"#lines g.char[data-index='{args.query}']").click()
            page.mouse.move(0, 0)
            page.locator("#top-p").fill("0.9")
            page.click("#sample-button")
            expect(page.locator("#continuation")).to_have_text(re.compile(r"^(?!…$)."))
            save(page, "#input-panel", args.out / "explore-text.png")
            save(page, "#view-lines", args.out / "explore-lines.png")
            page.check("#words")
            save(page, "#view-lines", args.out / "explore-words.png")
            page.uncheck("#words")
            page.click("#tabs button[data-tab=heatmap]")
            save(page, "#view-heatmap", args.out / "explore-heatmap.png")
            page.select_option("#head", "all")
            save(page, "#view-heatmap", args.out / "explore-all-heads.png")
            page.select_option("#head", args.head)
            text = page.locator("#text").input_value()
            page.locator("#text").fill(args.graph_text)
            expect(page.locator("#strip .pos")).to_have_count(len(args.graph_text))
            page.check("#words")
            page.click("#tabs button[data-tab=graph]")
            page.locator("#graph path.edge").first.wait_for(state="attached")
            save(page, "#view-graph", args.out / "explore-graph.png")
            page.uncheck("#words")
            page.locator("#text").fill(text)
            expect(page.locator("#strip .pos")).to_have_count(len(text))
            page.click("#tabs button[data-tab=heatmap]")
            if args.pipeline_text is not None:
                page.locator("#text").fill(args.pipeline_text)
                n = len(args.pipeline_text)
                expect(page.locator("#strip .pos")).to_have_count(n)
            page.click("#tabs button[data-tab=pipeline]")
            page.locator("#softmax").wait_for()
            save(page, "#view-pipeline", args.out / "explore-pipeline.png")
            page.click("#tabs button[data-tab=training]")
            page.locator("#epoch-lines path.edge").first.wait_for(state="attached")
            page.locator("#epoch").evaluate("s => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
            expect(page.locator("#epoch-label")).to_contain_text("after epoch 1 ")
            save(page, "#epoch-heatmaps", args.out / "explore-epoch-1.png")
            page.locator("#epoch").evaluate("s => { s.value = s.max; s.dispatchEvent(new Event('input')); }")
            page.wait_for_timeout(500)
            save(page, "#view-training", args.out / "explore-training.png")
            save(page, "#head-scores", args.out / "explore-head-scores.png")
            browser.close()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
