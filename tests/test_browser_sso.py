"""Real-browser single sign-on (issue 20): ``st.login`` against a local OpenID Connect
provider, the provider's identity mapped to the workspace account that gives the role.

A real ``streamlit run`` with ``PADIM_SIGN_IN=1`` and an ``[auth]`` section (passed with
``--secrets.files``) pointing at ``tests/oidc_provider.py`` on loopback; Streamlit and Authlib
run the whole code flow over HTTP (discovery, authorize, token, key set, ID-token check).
Driven by Debian's Chromium; never runs ``playwright install``.

- An identity with an account (``padim users add … --sso``) is signed in with that account's
  role, keeps it over a reload, and Sign out ends it.
- An identity without an account is refused with a message naming it, and sees no page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from oidc_provider import oidc_provider
from streamlit_server import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEEDS_CHROMIUM,
    free_port,
    sign_in_workspace,
    streamlit_app,
    wait_idle,
)

from padim_core.cli import main

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


def test_single_sign_on_maps_the_identity_to_the_workspace_role(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    demo, data_dir = sign_in_workspace(tmp_path, monkeypatch,
                                       {"ann": ("ann's password", "admin")})
    # The CLI way an admin adds a single sign-on account: no password asked.
    assert main(["users", "add", "Otto@Example.com", "--sso", "--role", "operator",
                 "--data-dir", str(data_dir)]) == 0
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    with oidc_provider() as provider, sync_api.sync_playwright() as pw:
        secrets_file = tmp_path / "secrets.toml"
        secrets_file.write_text(provider.secrets_toml(app_url), encoding="utf-8")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with streamlit_app(demo, tmp_path / "app.log", data_dir=data_dir, port=port,
                               extra_args=["--secrets.files", str(secrets_file)]) as url:
                page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
                page.set_default_timeout(180_000)

                # 1. An identity the workspace knows: operator, over a reload, signed out.
                provider.claims = {"sub": "u-17", "email": "otto@example.com", "name": "Otto"}
                page.goto(f"{url}/train")
                wait_idle(page)
                page.get_by_role("button", name="Sign in with single sign-on").click()
                signed_in = page.get_by_text(
                    re.compile(r"Signed in as otto@example\.com \(operator\)"))
                signed_in.wait_for()       # back on the app's start page, as the provider sends
                page.goto(f"{url}/train")  # a new page load: the identity cookie signs in again
                signed_in.wait_for()
                page.get_by_text("Training is for engineers and admins").wait_for()
                assert page.get_by_role("button", name="Train on the demo set").count() == 0
                wait_idle(page)
                page.get_by_role("button", name="Sign out").click()
                page.get_by_role("button", name="Sign in with single sign-on").wait_for()
                page.reload()
                page.get_by_role("button", name="Sign in with single sign-on").wait_for()
                assert signed_in.count() == 0

                # 2. An identity with no account here: refused, by name, and no page.
                provider.claims = {"sub": "u-99", "email": "mallory@example.com"}
                wait_idle(page)
                page.get_by_role("button", name="Sign in with single sign-on").click()
                page.get_by_text(re.compile(r"as mallory@example\.com, but this workspace "
                                            r"has no account")).wait_for()
                assert page.get_by_text("Signed in as").count() == 0
                assert page.locator('[data-testid="stSidebarNav"]').count() == 0
                assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
    log = (tmp_path / "app.log").read_text(errors="replace")
    assert "Traceback" not in log
