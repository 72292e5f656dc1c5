"""A real ``streamlit run app.py`` server for the browser tests, and their Chromium settings.

Loopback only (``127.0.0.1`` on a free port), every wait bounded. Needs Debian's Chromium
(``/usr/bin/chromium`` or ``$CHROMIUM``); nothing here runs ``playwright install``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from padim_core.allocator import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NEEDS_CHROMIUM = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"no Chromium at {CHROMIUM}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_seconds(url: str, timeout: float = 10.0) -> float:
    """Seconds ``/_stcore/health`` took to answer 200 (``inf`` on failure or timeout)."""
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as resp:
            return time.perf_counter() - start if resp.status == 200 else float("inf")
    except OSError:
        return float("inf")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        if health_seconds(url, timeout=2) < float("inf"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"streamlit did not become healthy at {url}")


@contextlib.contextmanager
def streamlit_app(demo: Path, log_path: Path, ready_timeout: float = 90.0,
                  data_dir: Path | None = None, port: int | None = None,
                  extra_args: list[str] | None = None) -> Iterator[str]:
    """Run ``streamlit run app.py`` with ``demo`` as its demo set on a loopback port (``port``,
    else a free one), its output in ``log_path``; yields the base URL once healthy, stops the
    server after. Its workspace is ``data_dir`` (default: ``workspace/`` beside the log),
    never the repo's. ``extra_args``: more ``streamlit run`` options (``--secrets.files``)."""
    from inspector_ui.uploads import DEMO_DIR_ENV
    from padim_core.store import DATA_DIR_ENV, DATABASE_URL_ENV

    port = port or free_port()
    # The allocator settings `make run` uses, so the browser tests see the same server.
    env = {**os.environ, **ENVIRONMENT, DEMO_DIR_ENV: str(demo), "PYTHONUNBUFFERED": "1",
           DATA_DIR_ENV: str(data_dir or log_path.parent / "workspace")}
    env.pop(DATABASE_URL_ENV, None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false",
             *(extra_args or [])],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc, ready_timeout)
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


def wait_for_change(page, read, old: str, timeout: float = 30.0) -> str:  # type: ignore[no-untyped-def]
    """Poll ``read()`` (a text on the page) until it differs from ``old``; its last value."""
    deadline = time.monotonic() + timeout
    value = old
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = read()
            if value != old:
                return value
        page.wait_for_timeout(250)
    return value


IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def wait_idle(page, timeout: float = 120.0, quiet_ms: int = 400) -> None:  # type: ignore[no-untyped-def]
    """Wait until the app has finished its script run and stays finished ``quiet_ms``, as a
    user waits for the page to settle before the next click. A click during a run lands on
    an element the run's end redraws: an opened dropdown closes again, so the option the
    test then waits for never shows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.locator(IDLE).wait_for(timeout=max(1.0, deadline - time.monotonic()) * 1000)
        page.wait_for_timeout(quiet_ms)
        if page.locator(IDLE).count():
            return
    raise TimeoutError(f"the app was still running after {timeout:.0f} s")


async def wait_idle_async(page, timeout: float = 240.0, quiet_ms: int = 400) -> None:  # type: ignore[no-untyped-def]
    """:func:`wait_idle` for Playwright's async API (the many-session tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await page.locator(IDLE).wait_for(timeout=max(1.0, deadline - time.monotonic()) * 1000)
        await page.wait_for_timeout(quiet_ms)
        if await page.locator(IDLE).count():
            return
    raise TimeoutError(f"the app was still running after {timeout:.0f} s")


def choose_option(page, box, option_name, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    """Open selectbox ``box`` on a settled page and return the first option whose accessible
    name matches ``option_name`` (a string or compiled pattern), reopening it if a redraw
    closed the list before the option showed."""
    deadline = time.monotonic() + timeout
    while True:
        wait_idle(page, timeout=max(1.0, deadline - time.monotonic()))
        box.click()
        option = page.get_by_role("option", name=option_name).first
        try:
            option.wait_for(timeout=5_000)
            return option
        except Exception:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")


def sign_in_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      users: dict[str, tuple[str, str]]) -> tuple[Path, Path]:
    """A small demo set and a workspace ready for sign-in (the session secret, and ``users``:
    name → (password, role)), with sign-in asked for on loopback (``PADIM_SIGN_IN=1``) for
    the servers this test starts. Returns (demo folder, data dir)."""
    from inspector_ui.testing import make_small_demo
    from padim_core import access
    from padim_core.store import Store

    demo = make_small_demo(tmp_path / "demo", n_train=4, n_good=1, n_defect=1)
    data_dir = tmp_path / "workspace"
    with Store.open(data_dir) as store:
        for name, (password, role) in users.items():
            store.users.add(name, password, role)
        access.ensure_secret(store)
    monkeypatch.setenv(access.SIGN_IN_ENV, "1")
    monkeypatch.delenv(access.SECRET_ENV, raising=False)
    monkeypatch.delenv("PADIM_DEMO_MODEL", raising=False)
    return demo, data_dir
