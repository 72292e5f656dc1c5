"""Real-browser sign-in (issue 20): the signed cookie keeps a sign-in across a reload, a
tampered cookie signs nobody in, and signing out forgets it.

A real ``streamlit run`` with ``PADIM_SIGN_IN=1`` (sign-in as on a network address, while the
server stays on loopback), driven by Debian's Chromium. Never runs ``playwright install``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit_server import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEEDS_CHROMIUM,
    sign_in_workspace,
    streamlit_app,
)

from padim_core import access

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


def test_sign_in_survives_a_reload_and_a_tampered_cookie_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    demo, data_dir = sign_in_workspace(tmp_path, monkeypatch, {
        "ann": ("ann's password", "admin"), "otto": ("otto's password", "operator")})
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with streamlit_app(demo, tmp_path / "app.log", data_dir=data_dir) as url:
                context = browser.new_context(viewport={"width": 1300, "height": 900})
                page = context.new_page()
                page.set_default_timeout(180_000)
                page.goto(f"{url}/train")
                page.get_by_label("User name").fill("otto")
                page.get_by_label("Password", exact=True).fill("wrong")
                page.get_by_role("button", name="Sign in").click()
                page.get_by_text("Sign-in refused: wrong user name or password.").wait_for()

                page.get_by_label("Password", exact=True).fill("otto's password")
                page.get_by_role("button", name="Sign in").click()
                signed_in = page.get_by_text(re.compile(r"Signed in as otto \(operator\)"))
                signed_in.wait_for()
                page.get_by_text("Training is for engineers and admins").wait_for()
                assert page.get_by_role("button", name="Train on the demo set").count() == 0
                page.wait_for_function(f"document.cookie.includes('{access.COOKIE_NAME}=ey')")
                cookie = next(c for c in context.cookies() if c["name"] == access.COOKIE_NAME)
                assert cookie["sameSite"] == "Strict"

                page.reload()
                signed_in.wait_for()
                assert page.get_by_label("User name").count() == 0

                context.add_cookies([{**cookie, "value": cookie["value"][:-3] + "abc"}])
                page.reload()
                page.get_by_label("User name").wait_for()
                assert signed_in.count() == 0

                page.get_by_label("User name").fill("otto")
                page.get_by_label("Password", exact=True).fill("otto's password")
                page.get_by_role("button", name="Sign in").click()
                signed_in.wait_for()
                page.get_by_role("button", name="Sign out").click()
                page.get_by_label("User name").wait_for()
                page.wait_for_function(
                    f"!document.cookie.includes('{access.COOKIE_NAME}=ey')")
                page.reload()
                page.get_by_label("User name").wait_for()
                assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
