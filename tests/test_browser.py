"""Real-browser test: `streamlit run app.py` driven by Debian's Chromium through Playwright.

Demo set → train → inspect → move the image-threshold slider → the NG count changes.
Screenshots land in test-artifacts/ (gitignored). Never runs `playwright install`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"streamlit did not become healthy at {url}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sys.path.insert(0, str(ROOT))
    from inspector_ui.testing import make_small_demo
    from inspector_ui.uploads import DEMO_DIR_ENV

    demo = make_small_demo(tmp_path_factory.mktemp("demo") / "set", n_train=10, n_good=4,
                           n_defect=6)
    port = free_port()
    env = {**os.environ, DEMO_DIR_ENV: str(demo), "PYTHONUNBUFFERED": "1"}
    log = (tmp_path_factory.mktemp("log") / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()


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
            page.get_by_text("Model B: efficientnet_lite0").first.wait_for()
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
