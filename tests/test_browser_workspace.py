"""Real-browser test of the workspace: a trained model survives a reload and a server restart.

Train on the demo set → the address bar names the saved version → inspect, and decide one
image → reload: the model and the recorded inspection are back → the decision shows on
History and in its CSV download → reload on History, go to Inspect: the model is open →
restart the server on the same data dir: the link opens the model again. Each click waits
for the page to settle (``wait_idle``), as a user does. Screenshots land in test-artifacts/
(gitignored). Never runs `playwright install`.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from streamlit_server import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEEDS_CHROMIUM,
    ROOT,
    choose_option,
    streamlit_app,
    wait_idle,
)

ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


def no_exception(page) -> None:  # type: ignore[no-untyped-def]
    assert page.locator('[data-testid="stException"]').count() == 0


def test_model_and_results_survive_reload_and_restart(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from inspector_ui.testing import make_small_demo

    ARTIFACTS.mkdir(exist_ok=True)
    demo = make_small_demo(tmp_path / "demo", n_train=10, n_good=3, n_defect=3)
    data_dir = tmp_path / "workspace"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with streamlit_app(demo, tmp_path / "first.log", data_dir=data_dir) as url:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                page.goto(f"{url}/train")
                wait_idle(page)
                page.get_by_role("button", name="Train on the demo set").click()
                page.get_by_text("Saved in the library as demo@1").wait_for()
                page.wait_for_url(re.compile(r"model=demo&v=1"))
                no_exception(page)

                wait_idle(page)
                nav = page.locator('[data-testid="stSidebarNav"]')
                nav.get_by_role("link", name="Inspect").click()
                page.get_by_role("button", name="Inspect the demo test set").wait_for()
                wait_idle(page)
                page.get_by_role("button", name="Inspect the demo test set").click()
                page.locator('[data-testid="stMetric"]').filter(has_text="NG count").wait_for()
                page.wait_for_url(re.compile(r"model=demo&v=1"))
                wait_idle(page)
                page.get_by_text("false alarm", exact=True).click()
                wait_idle(page)
                page.get_by_label("Your name").fill("ann")
                page.get_by_label("Your name").press("Enter")
                wait_idle(page)
                page.get_by_role("button", name="Save decision").click()
                page.get_by_text(re.compile(r"Decision on .* saved: false alarm")).wait_for()
                no_exception(page)
                page.screenshot(path=str(ARTIFACTS / "workspace-1-inspect.png"),
                                full_page=True)

                page.reload()
                page.get_by_text("Last recorded inspection with demo@1").wait_for()
                page.get_by_text("library: demo@1").first.wait_for()
                # the batch comes back drawn, from the stored thumbnails, with the decision
                page.get_by_text(re.compile(r"^Heatmap overlay — score")).wait_for()
                page.get_by_text(re.compile(r"· false alarm$")).wait_for()   # in the gallery
                no_exception(page)
                page.screenshot(path=str(ARTIFACTS / "workspace-2-reloaded.png"),
                                full_page=True)

                wait_idle(page)
                page.locator('[data-testid="stSidebarNav"]').get_by_role(
                    "link", name="History").click()
                choose_option(page, page.locator('[data-testid="stSelectbox"]').filter(
                    has_text="Decision"), "false alarm").click()
                page.get_by_text("1 inspected image(s)").wait_for()
                page.get_by_text(re.compile(r"Operator decision: false alarm \(ann")).wait_for()
                no_exception(page)
                wait_idle(page)
                with page.expect_download() as download:
                    page.get_by_role("button", name="Download CSV").click()
                exported = Path(download.value.path()).read_text(encoding="utf-8")
                rows = list(csv.DictReader(io.StringIO(exported)))
                assert len(rows) == 1, exported               # the filter: one decided row
                assert (rows[0]["decision"], rows[0]["decided_by"]) == ("false alarm", "ann")

                # History keeps the open model in the link too: reload there, then Inspect
                page.wait_for_url(re.compile(r"/history\?model=demo&v=1"))
                page.reload()
                page.get_by_text("Reopened demo@1 from the library").wait_for()
                wait_idle(page)
                page.locator('[data-testid="stSidebarNav"]').get_by_role(
                    "link", name="Inspect").click()
                page.get_by_text("Last recorded inspection with demo@1").wait_for()
                no_exception(page)

            with streamlit_app(demo, tmp_path / "second.log", data_dir=data_dir) as url:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                page.goto(f"{url}/inspect?model=demo&v=1")
                page.get_by_text("Reopened demo@1 from the library").wait_for()
                page.get_by_text("Last recorded inspection with demo@1").wait_for()
                page.get_by_role("button", name="Inspect the demo test set").click()
                page.locator('[data-testid="stMetric"]').filter(has_text="NG count").wait_for()
                no_exception(page)
                page.screenshot(path=str(ARTIFACTS / "workspace-3-restarted.png"),
                                full_page=True)
        finally:
            browser.close()
