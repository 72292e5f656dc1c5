"""Real-browser test: bookmarks opened first on a fresh server get the app, not Streamlit's
automatic ``pages/`` menu (issue 19; the cause is in ``inspector_ui/app_frame.py``).

A fresh `streamlit run app.py`; nobody opens ``/``. ``/inspect``, ``/train`` and ``/compare``
are opened first, each in a new tab (a new session), and each must show the app's own menu —
and never, not even for a moment, the file-name one — the page's own content, ``app.py``'s page
config (tab title, wide layout) and no exception. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM, ROOT, streamlit_app

ARTIFACTS = ROOT / "test-artifacts"
APP_MENU = ["Home", "Train", "Inspect", "Compare", "Evaluate", "Models", "History"]
# (path and query, the page's title, a line of the page's own content without a model)
DEEP_LINKS = [
    ("inspect?from=bookmark", "Inspect", "No model yet."),
    ("train", "Train", "Learn from good parts"),
    ("compare", "Compare", "No model yet."),
]
# Records every menu the page's sidebar ever showed, as lists of link labels.
MENU_RECORDER = """
window.__menus = [];
new MutationObserver(() => {
  const links = document.querySelectorAll('[data-testid="stSidebarNavLink"]');
  if (!links.length) return;
  const menu = [...links].map(a => {
    const label = a.querySelector('span[label]');
    return label ? label.getAttribute('label') : a.innerText.trim().split('\\n').pop();
  });
  const last = window.__menus[window.__menus.length - 1];
  if (JSON.stringify(last) !== JSON.stringify(menu)) window.__menus.push(menu);
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A server nobody has visited yet (one per test), and its log."""
    (tmp_path / "demo").mkdir()
    with streamlit_app(tmp_path / "demo", tmp_path / "streamlit.log") as url:
        yield url, tmp_path / "streamlit.log"


def menus_seen(page, timeout: float = 30.0) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """Every menu the tab showed, once its last one is the app's (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        menus = page.evaluate("window.__menus")
        if (menus and menus[-1] == APP_MENU) or time.monotonic() > deadline:
            return menus
        page.wait_for_timeout(250)


def open_tab(browser, url: str):  # type: ignore[no-untyped-def]
    """A new tab (a new session) that records its menus, at ``url``."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.add_init_script(MENU_RECORDER)
    page.goto(url)
    return page


def test_deep_links_first_get_the_app(fresh_server: tuple[str, Path]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    url, log = fresh_server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for link, title, content in DEEP_LINKS:
                page = open_tab(browser, f"{url}/{link}")
                page.get_by_role("heading", name=title, exact=True).wait_for()
                page.get_by_text(content).first.wait_for()
                menus = menus_seen(page)
                page.screenshot(path=str(ARTIFACTS / f"deeplink-{title.lower()}.png"))

                assert menus and all(menu == APP_MENU for menu in menus), (link, menus)
                # app.py's frame: its page config and the URL the bookmark asked for
                assert page.title() == "PaDiM Inspector", (link, page.title())
                layout = page.locator('[data-testid="stAppViewContainer"]')
                assert layout.get_attribute("data-layout") == "wide", link
                assert page.url == f"{url}/{link}", (link, page.url)
                assert page.locator('[data-testid="stException"]').count() == 0, link
                page.close()
        finally:
            browser.close()
    assert "Traceback" not in log.read_text(errors="replace")


def test_home_first_never_shows_the_file_name_menu(fresh_server: tuple[str, Path]) -> None:
    """``/`` first: the legacy router runs ``app.py`` itself, but drew its file-name menu for
    the seconds ``app.py`` took to import torch."""
    sync_api = pytest.importorskip("playwright.sync_api")
    url, log = fresh_server
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = open_tab(browser, url)
            page.get_by_role("heading", name="PaDiM Inspector").wait_for()
            menus = menus_seen(page)
            assert menus and all(menu == APP_MENU for menu in menus), menus
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
    assert "Traceback" not in log.read_text(errors="replace")
