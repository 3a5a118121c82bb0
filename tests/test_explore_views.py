"""The explorer's views in a real browser (headless Chromium, as test_explore_browser.py): a failed request
leaves nothing stale on the page, an 800 px window clips nothing, all heads sit side by side, heat maps carry
their colour scale, the graph draws the model's edges above the slider's weight, the sampling sliders show the
distribution the model draws from, and the Training tab grids the head scores of each epoch."""

from __future__ import annotations

import json

import pytest
import torch
from test_explore_browser import open_page

from attnlm.api.explore import start_explorer
from attnlm.inspection.attention import attention_weights, group_matrix, word_groups
from attnlm.inspection.heads import saved_head_scores

TEXT = "To be, or not"  # 13 characters, 5 words: To, be, ",", or, not
WIDTH = 800


def test_the_views_in_a_real_browser(trained_run) -> None:  # noqa: PLR0915 - one browser for every view
    from playwright.sync_api import expect

    run_dir, _ = trained_run
    server = start_explorer(str(run_dir))
    model = server.model
    errors: list[str] = []
    weights = torch.stack(attention_weights(model.module, model.vocab.encode(TEXT)))  # (L, H, T, T)
    try:
        with open_page(server.url, errors, width=WIDTH, ignore=lambda text: "Failed to load resource" in text) as page:
            expect(page.locator("#lines path.edge").first).to_be_attached(timeout=60_000)
            page.locator("#text").fill(TEXT)
            expect(page.locator("#strip .pos")).to_have_count(len(TEXT))

            # ----- 800 px: nothing clipped; the strip scrolls inside its own box.
            assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
            for selector in ["#layer", "#head", "#words", "#sample-button", "#temperature", "#top-k", "#top-p",
                             "#tabs button >> nth=-1", "#strip"]:
                box = page.locator(selector).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (selector, box)
            page.locator("#text").fill("To be, or not to be, that is th")
            expect(page.locator("#strip .pos")).to_have_count(31)
            assert page.evaluate("(s => s.scrollWidth > s.clientWidth)(document.querySelector('#strip'))")
            page.locator("#text").fill(TEXT)
            expect(page.locator("#strip .pos")).to_have_count(len(TEXT))

            # ----- sampling: top-k 3 at temperature 0.5 shows three bars, the model's renormalised top 3.
            page.locator("#temperature").fill("0.5")
            page.locator("#top-k").fill("3")
            expect(page.locator("#next-chart g.next")).to_have_count(3)
            expect(page.locator("#next-caption")).to_contain_text("3 of the")
            with torch.no_grad():
                logits = model.module(model.vocab.encode(TEXT)[None])[0][0, -1].double()
            top, ids = torch.softmax(logits / 0.5, -1).topk(3)
            drawn = page.locator("#next-chart g.next").evaluate_all("gs => gs.map(g => [g.dataset.char, Number(g.dataset.p)])")
            assert [c for c, _ in drawn] == [model.vocab.chars[i] for i in ids.tolist()]
            assert torch.allclose(torch.tensor([q for _, q in drawn], dtype=torch.float64), top / top.sum(), atol=1e-4)
            page.locator("#top-k").fill("1")  # greedy: one bar, all the probability; the sample follows it
            expect(page.locator("#next-chart g.next")).to_have_count(1)
            expect(page.locator("#next-chart g.next")).to_have_attribute("data-p", "1")
            page.locator("#sample-n").fill("4")
            page.click("#sample-button")
            expect(page.locator("#continuation")).to_have_text(model.model.generate(TEXT, 4, top_k=1, seed=0))
            page.locator("#top-k").fill("0")
            expect(page.locator("#continuation")).to_be_empty()  # drawn under other settings: gone
            expect(page.locator("#next-chart g.next")).to_have_count(10)

            # ----- stale results: a refused text clears the strip, the views, the continuation, the distribution.
            page.click("#sample-button")
            expect(page.locator("#continuation")).not_to_be_empty()
            expect(page.locator("#continuation")).not_to_have_text("…")
            page.locator("#text").fill("")
            expect(page.locator("#error")).to_have_text("the text is empty; type at least one character")
            for selector in ["#strip .pos", "#lines path", "#heatmaps rect", "#next-chart g", "#lines-table p"]:
                expect(page.locator(selector)).to_have_count(0)
            expect(page.locator("#continuation")).to_be_empty()
            page.locator("#text").fill(TEXT)
            expect(page.locator("#strip .pos")).to_have_count(len(TEXT))
            expect(page.locator("#error")).to_be_hidden()
            # A server error (500) and no server at all clear the views the same way, and say what happened.
            page.route("**/api/analyze", lambda route: route.fulfill(
                status=500, content_type="application/json",
                body=json.dumps({"error": "internal error (RuntimeError: boom); please report it", "status": 500})))
            page.locator("#text").fill(TEXT + " ")
            expect(page.locator("#error")).to_have_text("internal error (RuntimeError: boom); please report it")
            expect(page.locator("#strip .pos")).to_have_count(0)
            expect(page.locator("#lines path")).to_have_count(0)
            page.unroute("**/api/analyze")
            page.route("**/api/analyze", lambda route: route.abort())
            page.locator("#text").fill(TEXT + "  ")
            expect(page.locator("#error")).to_contain_text("cannot reach the attnlm server")
            expect(page.locator("#strip .pos")).to_have_count(0)
            page.unroute("**/api/analyze")
            page.route("**/api/sample", lambda route: route.abort())
            page.locator("#text").fill(TEXT)
            expect(page.locator("#strip .pos")).to_have_count(len(TEXT))
            expect(page.locator("#error")).to_be_hidden()
            page.click("#sample-button")
            expect(page.locator("#error")).to_contain_text("cannot reach the attnlm server")
            expect(page.locator("#continuation")).to_be_empty()
            page.unroute("**/api/sample")
            page.click("#sample-button")
            expect(page.locator("#error")).to_be_hidden()

            # ----- all heads side by side, in a grid; heat maps with their colour scale and captions.
            page.select_option("#layer", "1")
            page.select_option("#head", "all")
            for view, tab in (("#lines", None), ("#heatmaps", "heatmap"), ("#graph", "graph")):
                if tab:
                    page.click(f"#tabs button[data-tab={tab}]")
                figures = page.locator(f"{view} figure.head-figure")
                expect(figures).to_have_count(2)
                a, b = (figures.nth(k).bounding_box() for k in range(2))
                assert a["y"] == b["y"] and b["x"] >= a["x"] + a["width"], (view, a, b)  # one row, two columns
                assert b["x"] + b["width"] <= WIDTH
            page.click("#tabs button[data-tab=heatmap]")
            expect(page.locator("#heatmap-legend svg.legend text.name")).to_have_text("attention probability")
            assert page.locator("#heatmap-legend text.tick").all_text_contents()[:5] == ["0", "0.25", "0.5", "0.75", "1"]
            expect(page.locator("#heatmap-caption")).to_contain_text("Rows: the character asking (query)")
            page.check("#words")
            expect(page.locator("#heatmap-caption")).to_contain_text("Rows: the word asking (query)")
            expect(page.locator("#heatmaps figure.head-figure >> nth=0").locator("rect.hm")).to_have_count(25)
            page.click("#tabs button[data-tab=pipeline]")
            expect(page.locator("#pipeline-words")).to_be_visible()
            expect(page.locator("#pipeline-words")).to_contain_text(
                "the pipeline is per character: the model computes attention between characters")
            expect(page.locator("#pipeline-words")).to_contain_text("The word “not” is followed here through its "
                                                                     "last character, “t” (position 12)")
            page.uncheck("#words")
            expect(page.locator("#pipeline-words")).to_be_hidden()

            # ----- the graph: an arrow for every weight above the slider's, labelled with it.
            page.select_option("#head", "1")
            page.click("#tabs button[data-tab=graph]")
            lower = torch.tril(torch.ones(len(TEXT), len(TEXT), dtype=torch.bool))
            for minimum in ("0.1", "0.3"):
                page.locator("#min-weight").fill(minimum)
                w = weights[1, 1]
                expected = sorted((i, j) for i, j in ((w > float(minimum)) & lower).nonzero().tolist())
                edges = page.locator("#graph path.edge").evaluate_all(
                    "ps => ps.map(p => [Number(p.dataset.from), Number(p.dataset.to), Number(p.dataset.weight)])")
                assert sorted((i, j) for i, j, _ in edges) == expected, minimum
                assert all(abs(x - float(w[i, j])) < 1e-4 for i, j, x in edges)
                labels = page.locator("#graph text.weight").all_text_contents()
                assert sorted(labels) == sorted(f"{float(w[i, j]):.2f}" for i, j in expected)
                expect(page.locator("#graph g.node")).to_have_count(len(TEXT))
            page.check("#words")
            expect(page.locator("#graph g.node")).to_have_count(5)
            wm = group_matrix(weights[1, 1], word_groups(TEXT))
            expected = sorted((i, j) for i, j in ((wm > 0.3) & torch.tril(torch.ones(5, 5, dtype=torch.bool))).nonzero().tolist())
            edges = page.locator("#graph path.edge").evaluate_all(
                "ps => ps.map(p => [Number(p.dataset.from), Number(p.dataset.to)])")
            assert sorted(map(tuple, edges)) == expected
            page.uncheck("#words")

            # ----- Training: a grid per head score, a row per head, a column per epoch (0: before training).
            page.click("#tabs button[data-tab=training]")
            expect(page.locator("#head-scores figure")).to_have_count(3)
            saved = saved_head_scores(run_dir)
            cells = page.locator("#head-scores figure[data-score=induction] g.score")
            expect(cells).to_have_count(4 * len(saved))
            drawn = cells.evaluate_all("gs => gs.map(g => [g.dataset.head, Number(g.dataset.epoch), Number(g.dataset.value)])")
            assert {(h, e): v for h, e, v in drawn} == pytest.approx(
                {(h, s.epoch): s.scores.heads[h]["induction"] for s in saved for h in s.scores.heads}, abs=1e-9)
            expect(page.locator("#epoch-legend text.name")).to_have_text("attention probability")
    finally:
        server.shutdown()
        server.server_close()
    assert errors == []

