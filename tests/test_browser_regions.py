"""Real-browser test of regions (issue #15): on Train draw an exclusion rectangle over a
defect with the drawing canvas, re-score the demo test set and see that image's verdict turn
OK; on Inspect move the minimum-area slider and see its contours go, with no new scoring.

The demo set is seeded: ``stain/000.png`` has its stain at crop x 42..148, y 66..178 (from
its ground-truth mask, 128 px image → 256 → centre crop 224, the reference settings the test
trains with); the rectangle covers that with a 24 px margin. Screenshots land in
test-artifacts/ (gitignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from streamlit_server import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEEDS_CHROMIUM,
    ROOT,
    choose_option,
    streamlit_app,
    wait_for_change,
    wait_idle,
)
from test_browser import metric_value

ARTIFACTS = ROOT / "test-artifacts"
TARGET = "stain/000.png"
RECT_CROP = (18, 42, 172, 202)         # x0, y0, x1, y1 in crop pixels (224 crop)

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from inspector_ui.testing import make_small_demo

    demo = make_small_demo(tmp_path_factory.mktemp("demo") / "set", n_train=40, n_good=3,
                           n_defect=6)
    with streamlit_app(demo, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url


def select_image(page, name: str) -> str:  # type: ignore[no-untyped-def]
    """Pick ``name`` in Inspect's "Image" box; returns the verdict shown under it."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=re.compile("^Image"))
    choose_option(page, box.first.locator("input"), name).click()
    page.get_by_text(re.compile(r"^Verdict:")).first.wait_for()
    page.wait_for_timeout(2000)
    return verdict(page)


def verdict(page) -> str:  # type: ignore[no-untyped-def]
    text = page.get_by_text(re.compile(r"^Verdict:")).first.inner_text()
    return "NG" if "NG" in text else "OK"


def contour_caption(page) -> str:  # type: ignore[no-untyped-def]
    return page.get_by_text(re.compile("Defect contours at pixel threshold")).first.inner_text()


def test_exclusion_rectangle_and_min_area_slider(server: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(120_000)
            page.goto(server)
            page.get_by_text("Start: train a model").click()
            # the reference settings (256 → 224 crop), whose geometry RECT_CROP is in
            wait_idle(page)
            page.get_by_role("button", name="Reference settings").click()
            page.get_by_text("These are the reference settings.").wait_for()
            wait_idle(page)
            page.get_by_role("button", name="Train on the demo set").click()
            page.get_by_text("Region to inspect").wait_for()
            nav = page.locator('[data-testid="stSidebarNav"]')

            # Inspect the demo test set: the stained part is NG.
            wait_idle(page)
            nav.get_by_role("link", name="Inspect").click()
            page.get_by_role("button", name="Inspect the demo test set").click()
            page.locator('[data-testid="stMetric"]').filter(has_text="NG count").wait_for()
            ng_before = int(metric_value(page, "NG count"))
            assert select_image(page, TARGET) == "NG"

            # Train: draw an exclusion rectangle over the stain on the canvas, apply it.
            wait_idle(page)
            nav.get_by_role("link", name="Train").click()
            page.get_by_text("Edit the region and minimum defect area").wait_for()
            wait_idle(page)
            page.get_by_text("Edit the region and minimum defect area").click()
            canvas = page.locator("canvas.upper-canvas").first
            canvas.scroll_into_view_if_needed()
            page.wait_for_timeout(1500)
            box = canvas.bounding_box()
            assert box is not None
            scale = box["width"] / 224
            x0, y0, x1, y1 = (v * scale for v in RECT_CROP)
            page.mouse.move(box["x"] + x0, box["y"] + y0)
            page.mouse.down()
            page.mouse.move(box["x"] + x1, box["y"] + y1, steps=8)
            page.mouse.up()
            page.wait_for_timeout(2500)        # the canvas sends its drawing on mouse up
            wait_idle(page)                    # and the app reruns with it; a click now
            page.screenshot(path=str(ARTIFACTS / "regions-1-drawn.png"), full_page=True)
            applied = page.get_by_text(re.compile("Region applied: .*% of the crop"))
            for _ in range(3):     # a click landing in the canvas's own rerun can be lost
                page.get_by_role("button", name="Apply drawn region").click()
                try:
                    applied.wait_for(timeout=40_000)
                    break
                except sync_api.TimeoutError:
                    wait_idle(page)
            applied.wait_for()
            assert page.locator('[data-testid="stException"]').count() == 0

            # Inspect: the old results are stale; re-score them with the region.
            wait_idle(page)
            nav.get_by_role("link", name="Inspect").click()
            page.get_by_role("button", name=re.compile("Re-score these images")).wait_for()
            wait_idle(page)
            page.get_by_role("button", name="Re-score these images with the current "
                                            "model").click()
            page.get_by_text("scored by an earlier model").wait_for(state="detached")
            page.locator('[data-testid="stMetric"]').filter(has_text="NG count").wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ARTIFACTS / "regions-2-rescored.png"), full_page=True)
            assert select_image(page, TARGET) == "OK"
            assert int(metric_value(page, "NG count")) < ng_before
            page.screenshot(path=str(ARTIFACTS / "regions-2-excluded.png"), full_page=True)

            # An NG part with contours: the minimum-area slider to its top hides them,
            # without scoring again (the scoring time shown stays that of the one run).
            select_image(page, "hole/000.png")
            before, seconds = contour_caption(page), metric_value(page, "Scoring time")
            assert "defect region(s) ≥ 0 px" in before, before
            slider = page.get_by_role("slider", name=re.compile("Minimum defect area"))
            slider.focus()
            slider.press("End")
            after = wait_for_change(page, lambda: contour_caption(page), before)
            assert "no defect region" in after, (before, after)
            assert metric_value(page, "Scoring time") == seconds
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "regions-3-min-area.png"), full_page=True)
        finally:
            browser.close()
