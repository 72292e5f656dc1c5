"""AppTest: a page opened first, by its URL, runs inside ``app.py``'s frame (issue 19).

AppTest decides on every run, like a fresh server on its first request, whether the legacy
``pages/`` router applies (``AppTest._run`` resets ``PagesManager.uses_pages_directory``), so
each run here is the "deep link after a restart" case. ``app.py`` running is seen through
``keep_freed_memory``, the allocator set-up it does on every run.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from inspector_ui import testing as t

pytestmark = pytest.mark.usefixtures("demo_env")


@pytest.mark.parametrize("page, title", [("inspect", "Inspect"), ("train", "Train"),
                                         ("compare", "Compare"), ("evaluate", "Evaluate")])
def test_page_opened_first_runs_inside_app_py(page: str, title: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    frames: list[int] = []
    monkeypatch.setattr("padim_core.allocator.keep_freed_memory", lambda: frames.append(1))
    at = AppTest.from_file(str(t.APP), default_timeout=t.TIMEOUT)
    at.switch_page(f"pages/{page}.py").run()
    assert not t.exceptions(at) and not t.errors(at)
    assert [h.value for h in at.title] == [title]   # the page, once: not the landing page
    assert frames == [1]                             # app.py ran, once
    at.run()                                         # and again on the next rerun
    assert frames == [1, 1] and [h.value for h in at.title] == [title]
