"""Real-browser test of learning from the operator (issue 13).

A library model whose saved image threshold makes every demo test image NG → Inspect the demo
test set → pick a good image (a false alarm) → "Accept as normal": the message shows its score
dropping and the new version demo@2, the address bar names demo@2 → reload: demo@2 is still
the model in use. Screenshots land in test-artifacts/ (gitignored).
"""

from __future__ import annotations

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


def library_with_demo_model(demo: Path, data_dir: Path) -> None:
    """demo@1 fitted on the demo set's train images, its saved image threshold below every
    score, so a good image shows as a false alarm (NG)."""
    from inspector_ui.testing import SMALL
    from padim_core import PadimModel
    from padim_core.images import iter_image_files
    from padim_core.store import Store

    model = PadimModel(**SMALL).fit(iter_image_files(demo / "train" / "good"))
    with Store.open(data_dir) as store:
        v = store.library.save(model, "demo")
        store.library.set_thresholds(v, 1e-3, None)


def test_accepting_a_false_alarm_lowers_its_score_and_the_new_version_stays(
        tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from inspector_ui.testing import make_small_demo

    ARTIFACTS.mkdir(exist_ok=True)
    demo = make_small_demo(tmp_path / "demo", n_train=10, n_good=3, n_defect=3)
    data_dir = tmp_path / "workspace"
    library_with_demo_model(demo, data_dir)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with streamlit_app(demo, tmp_path / "server.log", data_dir=data_dir) as url:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                page.goto(f"{url}/inspect?model=demo&v=1")
                page.get_by_text("Reopened demo@1 from the library").wait_for()
                page.get_by_role("button", name="Inspect the demo test set").click()
                page.locator('[data-testid="stMetric"]').filter(has_text="NG count").wait_for()

                # The click waits for the run to end, as a user waits for the page to settle:
                # under load a click during the run opened the list, the run's end closed it.
                option = choose_option(
                    page, page.locator('[data-testid="stSelectbox"]').filter(
                        has_text=re.compile(r"^Image$")),
                    re.compile(r"^good\/.* — NG$"))
                picked = option.inner_text().split(" — ")[0]
                option.click()
                page.get_by_text(f"{picked} (as scored)").wait_for()
                wait_idle(page)
                page.get_by_role("button", name="Accept as normal → demo@1").click()
                message = page.get_by_text(re.compile(r"Learned 1 image\(s\) as normal"))
                message.wait_for()
                text = message.inner_text()
                assert "demo@2" in text and "demo@1 is kept" in text
                before, after = (float(x) for x in re.search(
                    re.escape(picked) + r": score (\d+\.\d+) → (\d+\.\d+)", text).groups())
                assert after < before
                page.wait_for_url(re.compile(r"model=demo&v=2"))
                no_exception(page)
                page.screenshot(path=str(ARTIFACTS / "feedback-1-accepted.png"),
                                full_page=True)

                page.reload()
                page.get_by_text("Reopened demo@2 from the library").wait_for()
                page.get_by_text("library: demo@2").first.wait_for()
                assert re.search(r"model=demo&v=2", page.url)
                no_exception(page)
                page.screenshot(path=str(ARTIFACTS / "feedback-2-reloaded.png"),
                                full_page=True)
        except BaseException:
            for p in browser.contexts:            # the page as it was when a step failed
                for pg in p.pages:
                    pg.screenshot(path=str(ARTIFACTS / "feedback-failed.png"), full_page=True)
            raise
        finally:
            browser.close()
