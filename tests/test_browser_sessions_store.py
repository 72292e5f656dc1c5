"""Five browser sessions against ONE `streamlit run` server, all writing the workspace at once.

Why (issue 12): inspectors share a server; when several train, inspect and record decisions
at the same moment, every model version and every history row must land, none may be lost
or swapped between sessions, and nobody may see "database is locked". Three sessions save
under the same name at once (they must get three distinct versions), one under a name with
quotes and an emoji. Afterwards the store is read directly, not through the app.
Bounded: the five sessions together have 9 minutes (about 2.5 on a lightly loaded 2-core
machine; the margin is for a machine 10x oversubscribed). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from streamlit_server import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEEDS_CHROMIUM,
    ROOT,
    streamlit_app,
    wait_idle_async,
)

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]

ARTIFACTS = ROOT / "test-artifacts"
NAMES = ["line", "line", "line", "Émile's \"line\" 🙂", "bench 4"]
N_TEST = 4                                    # demo test images each session inspects
BUDGET_S = 540


async def one_session(browser, url: str, k: int, name: str) -> tuple[str, int, str]:  # type: ignore[no-untyped-def]
    """Train and save under ``name``, inspect the demo test set, decide on one image.
    Returns (model name, version, file decided on) as the page showed them."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(BUDGET_S * 1000)
    try:
        await page.goto(f"{url}/train")
        # Each click waits for the run to end, as a user waits for the page to settle: a
        # click on an element the run's end redraws can be lost under load.
        await wait_idle_async(page, BUDGET_S)
        # the reference settings: a 190 MB model file per session instead of the default's
        # 700 MB (five sessions write at once; the model's quality does not matter here)
        await page.get_by_role("button", name="Reference settings").click()
        await page.get_by_text("These are the reference settings.").wait_for()
        await wait_idle_async(page, BUDGET_S)
        field = page.get_by_label("Save in the library as", exact=True)
        await field.fill(name)
        await field.press("Enter")
        await wait_idle_async(page, BUDGET_S)
        await page.get_by_role("button", name="Train on the demo set").click()
        await page.get_by_text(re.compile(r"Saved in the library as .+@\d+")).wait_for()
        await page.wait_for_url(re.compile(r"[?&]v=\d+"))
        query = parse_qs(urlparse(page.url).query)
        saved = (query["model"][0], int(query["v"][0]))

        await wait_idle_async(page, BUDGET_S)
        await page.locator('[data-testid="stSidebarNav"]').get_by_role(
            "link", name="Inspect").click()
        await page.get_by_role("button", name="Inspect the demo test set").wait_for()
        await wait_idle_async(page, BUDGET_S)
        await page.get_by_role("button", name="Inspect the demo test set").click()
        await page.locator('[data-testid="stMetric"]').filter(has_text="NG count").wait_for()
        await page.get_by_role("button", name="Save decision").wait_for()
        await wait_idle_async(page, BUDGET_S)
        caption = await page.get_by_text(re.compile(r" \(as scored\)$")).inner_text()
        picked = caption.removesuffix(" (as scored)")
        await page.get_by_text("false alarm", exact=True).click()
        await wait_idle_async(page, BUDGET_S)
        await page.get_by_label("Your name").fill(f"op{k}")
        await page.get_by_label("Your name").press("Enter")
        await wait_idle_async(page, BUDGET_S)
        await page.get_by_role("button", name="Save decision").click()
        await page.get_by_text(re.compile(r"Decision on .* saved: false alarm")).wait_for()
        body = await page.locator("body").inner_text()
        await page.screenshot(path=str(ARTIFACTS / f"sessions-{k}.png"), full_page=True)
        assert "database is locked" not in body
        assert await page.locator('[data-testid="stException"]').count() == 0
        return saved[0], saved[1], picked
    finally:
        await context.close()


async def five_sessions(url: str) -> list[tuple[str, int, str]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return list(await asyncio.wait_for(asyncio.gather(
                *(one_session(browser, url, k, n) for k, n in enumerate(NAMES))), BUDGET_S))
        finally:
            await browser.close()


def test_five_sessions_write_the_workspace_at_once(tmp_path: Path) -> None:
    pytest.importorskip("playwright.async_api")
    from inspector_ui.testing import make_small_demo
    from padim_core.store import Filters, Store

    ARTIFACTS.mkdir(exist_ok=True)
    demo = make_small_demo(tmp_path / "demo", n_train=8, n_good=2, n_defect=N_TEST - 2)
    data_dir = tmp_path / "workspace"
    with streamlit_app(demo, tmp_path / "server.log", data_dir=data_dir) as url:
        results = asyncio.run(five_sessions(url))
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "database is locked" not in log and "Traceback" not in log

    assert [name for name, _, _ in results] == NAMES        # stored and shown literally
    line_versions = sorted(v for name, v, _ in results if name == "line")
    assert line_versions == [1, 2, 3]                        # one version per session
    with Store.open(data_dir) as store:
        library = {e.name: sorted(v.version for v in e.versions)
                   for e in store.library.models()}
        assert library == {"line": [1, 2, 3], NAMES[3]: [1], "bench 4": [1]}
        assert store.history.count() == len(NAMES) * N_TEST
        for k, (name, version, decided_file) in enumerate(results):
            rows = store.history.find(Filters(model_name=name, model_version=version))
            assert len(rows) == N_TEST, (name, version)
            [decided] = [r for r in rows if r.decision is not None]
            assert (decided.decision, decided.decided_by, decided.file_name) == \
                ("false_alarm", f"op{k}", decided_file)
            assert all(store.history.thumbnails(r.id)[1] is not None for r in rows)
