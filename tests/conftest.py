"""Fixtures shared by the app test modules (``test_app_*.py``, ``test_hostile_app.py``).

None of them is autouse: an app module opts in with
``pytestmark = pytest.mark.usefixtures("demo_env")`` (plus ``"scratch_tempdir"`` where it
checks that upload scratch folders are cleaned up), so the other test modules never build a
demo set. The app packages are imported inside the fixtures, which keeps them (and
Streamlit) out of runs that do not use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic demo set (``make_small_demo`` defaults: 8 training images), one per
    test module."""
    from inspector_ui.testing import make_small_demo

    return make_small_demo(tmp_path_factory.mktemp("demo") / "set")


@pytest.fixture
def demo_env(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app's "demo set" buttons at ``demo``, and its workspace (where Train saves
    models) at a fresh folder of this test."""
    from inspector_ui.uploads import DEMO_DIR_ENV
    from padim_core.store import DATA_DIR_ENV, DATABASE_URL_ENV

    monkeypatch.setenv(DEMO_DIR_ENV, str(demo))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "workspace"))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    return demo


@pytest.fixture
def scratch_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-test temp root ``tmp_path / "tmp"`` for ``tempfile``, so a test can check that
    upload scratch folders are cleaned up."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    return scratch


def _count_calls(monkeypatch: pytest.MonkeyPatch, method: str) -> list[int]:
    """Make ``PadimModel.<method>`` append to the returned list on every call (any thread)."""
    from padim_core import PadimModel

    calls: list[int] = []
    original = getattr(PadimModel, method)

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PadimModel, method, counting)
    return calls


@pytest.fixture
def predict_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every ``PadimModel.predict`` call in this process (one entry per call)."""
    return _count_calls(monkeypatch, "predict")


@pytest.fixture
def fit_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every ``PadimModel.fit`` call in this process (one entry per call)."""
    return _count_calls(monkeypatch, "fit")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A throw-away PostgreSQL cluster for the whole run (see ``postgres_server``)."""
    from postgres_server import throwaway_postgres

    with throwaway_postgres() as url:
        yield url
