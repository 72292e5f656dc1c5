"""Real-browser test: `streamlit run app.py` driven by Debian's Chromium through Playwright.

Demo set → train → inspect → move the image-threshold slider → the NG count changes.
Screenshots land in test-artifacts/ (gitignored). Never runs `playwright install`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pytest
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM, ROOT, streamlit_app

ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from inspector_ui.testing import make_small_demo

    demo = make_small_demo(tmp_path_factory.mktemp("demo") / "set", n_train=10, n_good=4,
                           n_defect=6)
    with streamlit_app(demo, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url


def metric_value(page, label: str) -> str:  # type: ignore[no-untyped-def]
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def slider_values(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator('[data-testid="stSliderThumbValue"]').all_inner_texts()


def wait_metric_change(page, label: str, old: str, timeout: float = 30.0) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    value = old
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = metric_value(page, label)
            if value != old:
                return value
        page.wait_for_timeout(250)
    return value


def test_demo_train_inspect_threshold(server: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(server)
            page.get_by_role("heading", name=re.compile("PaDiM Inspector")).wait_for()
            page.screenshot(path=str(ARTIFACTS / "browser-0-home.png"))

            # Landing page → Train (client-side navigation keeps the session)
            page.get_by_text("Start: train a model").click()
            page.get_by_role("button", name="Train on the demo set").click()
            page.get_by_text("Model card").wait_for()
            page.get_by_text("Next: inspect new images").wait_for()
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "browser-1-train.png"), full_page=True)

            # Train → Inspect the demo test set
            page.get_by_text("Next: inspect new images").click()
            page.get_by_role("button", name="Inspect the demo test set").click()
            page.locator('[data-testid="stMetric"]').filter(has_text="NG count").wait_for()
            n_images = int(metric_value(page, "Images"))
            ng_before = metric_value(page, "NG count")
            assert n_images == 10 and 0 < int(ng_before) <= n_images
            page.screenshot(path=str(ARTIFACTS / "browser-2-inspect.png"), full_page=True)

            # Image threshold slider to its maximum: nothing is NG any more.
            slider = page.get_by_role("slider").first
            slider.focus()
            slider.press("End")
            ng_after = wait_metric_change(page, "NG count", ng_before)
            assert ng_after == "0", (ng_before, ng_after)
            # …and to its minimum: every image is NG.
            slider.focus()
            slider.press("Home")
            ng_low = wait_metric_change(page, "NG count", ng_after)
            assert ng_low == str(n_images), (ng_after, ng_low)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "browser-3-threshold.png"), full_page=True)
            shown = slider_values(page)

            # Compare: train a model B (the sidebar sliders are hidden while B is empty);
            # model A's sliders must come back with the values set on Inspect.
            nav = page.locator('[data-testid="stSidebarNav"]')
            nav.get_by_role("link", name="Compare").click()
            page.get_by_text("One image, two models").click()
            page.get_by_text("Model B is empty").wait_for()
            page.get_by_role("button", name="Train on the demo set").click()
            page.get_by_text(re.compile(r"Model B: demo@\d+ \(efficientnet_lite2")).first.wait_for()
            page.locator('[data-testid="stMetric"]').filter(has_text="Score").first.wait_for()
            page.wait_for_timeout(2000)
            assert slider_values(page)[:2] == shown[:2], (shown, slider_values(page))
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "browser-4-compare.png"), full_page=True)
            nav.get_by_role("link", name="Inspect").click()
            page.locator('[data-testid="stMetric"]').filter(has_text="NG count").wait_for()
            assert metric_value(page, "NG count") == str(n_images)
        finally:
            browser.close()
