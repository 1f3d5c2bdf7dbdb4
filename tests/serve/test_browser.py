"""The page of `camloc serve` in a real browser (Playwright driving Debian's chromium, `make browser` installs it):
upload a photo, see the top class and the overlay, move the threshold slider and see the box change, map another
class, compare two methods, download the JSON. Boxes the page draws are checked against `camloc.explain`'s.

`make screenshots` (CAMLOC_SCREENSHOT_DIR=docs/img pytest tests/serve/test_browser.py) writes the README's pictures.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import camloc

sync_api = pytest.importorskip("playwright.sync_api", reason="the 'serve' extra (playwright) is not installed")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHROMIUM = os.environ.get("CAMLOC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page(live_server: str):
    if not CHROMIUM:
        pytest.skip("no chromium on this machine: `make browser` installs Debian's (needs root or sudo)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(live_server)
        pg.wait_for_selector("body[data-ready=true]", timeout=30_000)
        yield pg
        assert not errors, errors
        browser.close()


def shot(pg, name: str, tmp_path: Path) -> None:
    out = Path(os.environ.get("CAMLOC_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(out / name), full_page=True, type="jpeg", quality=80)


def shown_box(pg, canvas: str = "#main-canvas") -> list[int]:
    return [int(v) for v in pg.get_attribute(canvas, "data-box").split(",")]


def test_page_end_to_end(page, default_model: torch.nn.Module, tmp_path: Path) -> None:
    photo = EXAMPLES / "cat.jpg"
    ref = camloc.explain(default_model, [str(photo)], top_k=5)
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#topk li button", timeout=120_000)

    # the top class and its score, as the library ranks them
    items = page.locator("#topk li button")
    assert items.count() == 5
    assert items.nth(0).locator("span").nth(0).inner_text() == ref.labels(0)[0]
    assert page.locator("#status").inner_text().endswith(ref.labels(0)[0])
    # the overlay: the image's size, the map blended in, the server's box drawn (it is the library's box)
    size = page.eval_on_selector("#main-canvas", "c => [c.width, c.height]")
    assert size == [384, 255]
    assert page.get_attribute("#main-canvas", "data-box-source") == "server"
    assert shown_box(page) == ref.boxes[0, 0].tolist()
    # the page's box rule at the default threshold gives the server's box, for every class shown
    rec = page.evaluate("() => camloc.state.main.record")
    page_boxes = page.evaluate(
        "() => { const r = camloc.state.main.record; return r.predictions.map((p, k) => camloc.pageBox(r, k, "
        "r.settings.threshold, r.settings.threshold_mode)); }"
    )
    assert page_boxes == [p["box"] for p in rec["predictions"]] == ref.boxes[0].tolist()
    shot(page, "serve-page.jpg", tmp_path)

    # the threshold slider, moved with the keyboard (0.20 -> 0.60), redraws the box at once: the library's at 0.6
    page.focus("#threshold")
    for _ in range(40):
        page.keyboard.press("ArrowRight")
    assert page.input_value("#threshold") == "0.6"
    assert page.get_attribute("#main-canvas", "data-box-source") == "page"
    at_06 = (
        camloc.explain(default_model, [str(photo)], top_k=1, box_rule=camloc.BoxRule(0.6, "max")).boxes[0, 0].tolist()
    )
    assert shown_box(page) == at_06 != ref.boxes[0, 0].tolist()
    shot(page, "serve-threshold.jpg", tmp_path)
    page.focus("#threshold")
    for _ in range(40):
        page.keyboard.press("ArrowLeft")
    assert shown_box(page) == ref.boxes[0, 0].tolist()

    # another class by name: its map and box are the library's for that class
    page.fill("#class-search", "lynx")
    page.press("#class-search", "Enter")
    page.wait_for_function("() => document.querySelector('#main-caption').textContent.startsWith('lynx')")
    lynx = camloc.explain(default_model, [str(photo)], targets=[[287]])
    assert ref.info.label(287) == "lynx"
    assert shown_box(page) == lynx.boxes[0, 0].tolist()

    # two methods side by side (Grad-CAM of the same class on the right)
    page.select_option("#compare-method", "gradcam")
    page.click("#compare-go")
    page.wait_for_selector("#compare-view:not([hidden])", timeout=120_000)
    grad = camloc.explain(default_model, [str(photo)], targets=[[287]], method="gradcam")
    assert shown_box(page, "#compare-canvas") == grad.boxes[0, 0].tolist()
    shot(page, "serve-compare.jpg", tmp_path)

    # downloads: the JSON of the left view (CLI schema, no map pictures) and the overlay PNG
    with page.expect_download() as info:
        page.click("#download-json")
    data = json.loads(Path(info.value.path()).read_text())
    assert data["image"] == "cat.jpg" and (data["width"], data["height"]) == (384, 255)
    assert [p["class_index"] for p in data["predictions"]] == [287]
    assert data["predictions"][0]["box"] == lynx.boxes[0, 0].tolist() and "map" not in data["predictions"][0]
    with page.expect_download() as info:
        page.click("#download-png")
    assert info.value.suggested_filename == "cat_287_overlay.png"
    assert Path(info.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_file_named_on_the_page(page, tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    page.set_input_files("#file-input", [str(bad), str(EXAMPLES / "coffee.jpg")])
    page.wait_for_function("() => document.querySelectorAll('#thumbs button').length === 2")
    page.wait_for_function(
        "() => document.querySelector('#status').textContent.includes('1 of 2 image(s) failed')", timeout=120_000
    )
    assert "(failed)" in page.locator("#thumbs button").nth(0).inner_text()
    page.click("#thumbs button >> nth=0")
    assert page.locator("#status").inner_text().startswith("notes.jpg: not an image file")


def test_phone_layout(page, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.set_input_files("#file-input", [str(EXAMPLES / "coffee.jpg"), str(EXAMPLES / "rocket.jpg")])
    page.wait_for_function(
        "() => !document.querySelector('#status').textContent.startsWith('explaining')", timeout=120_000
    )
    page.click("#thumbs button >> nth=0")
    page.wait_for_selector("#topk li button")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone's screen
    assert page.eval_on_selector("#main-canvas", "c => c.getBoundingClientRect().width") <= 390
    shot(page, "serve-phone.jpg", tmp_path)
