"""Chromium with a fake camera: on Inspect, switch the camera on, take a photo, and the photo
is scored and added to the results (the path a phone at the bench takes).

Chromium's ``--use-fake-device-for-media-stream`` gives a synthetic video frame and
``--use-fake-ui-for-media-stream`` grants the permission. A small model is put in the
workspace beforehand and opened by its link, so no training runs in the browser.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM, streamlit_app, wait_idle

from inspector_ui.testing import make_small_demo
from padim_core import PadimModel
from padim_core.store import Store

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM,
              pytest.mark.filterwarnings("ignore:only .* training images")]
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
VIDEO_PLAYING = """() => [...document.querySelectorAll('video')].some(
    v => v.readyState >= 2 && v.videoWidth > 0 && !v.paused)"""


def test_fake_camera_photo_is_scored(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    demo = make_small_demo(tmp_path / "demo")
    workspace = tmp_path / "workspace"
    model = PadimModel(backbone="resnet18", weights="random", d=16, image_size=128, crop=112,
                       device="cpu").fit(sorted((demo / "train" / "good").glob("*.png")))
    with Store.open(workspace) as store:
        store.library.save(model, "bench")
    log = tmp_path / "streamlit.log"
    with streamlit_app(demo, log, data_dir=workspace) as url, \
            sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + FAKE_CAMERA)
        try:
            context = browser.new_context(permissions=["camera"],
                                          viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{url}/inspect?model=bench&v=1")
            page.get_by_text("Reopened bench@1 from the library").wait_for()
            # Each click waits for the page to settle, as a user does: a click during a run
            # lands on an element the run's end redraws.
            wait_idle(page)
            page.get_by_text("Camera", exact=True).click()
            take = page.get_by_role("button", name="Take Photo")
            take.wait_for()
            # As a user waits to see the picture: a click before the fake stream delivers
            # frames takes no photo.
            page.wait_for_function(VIDEO_PLAYING)
            wait_idle(page)
            take.click()
            page.get_by_text("added to the results").wait_for()
            page.get_by_text("Results — camera").wait_for()
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
    with Store.open(workspace) as store:
        rows = store.history.find(limit=10)
    assert len(rows) == 1 and rows[0].file_name.startswith("photo_")
    assert "Traceback" not in log.read_text(errors="replace")
