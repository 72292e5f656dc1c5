"""Pages always run inside ``app.py``'s frame, even when a deep link is a fresh server's first
request.

Why (Streamlit 1.67, ``runtime/pages_manager.py`` and ``runtime/scriptrunner/script_runner.py``):
when the first session of a process starts, Streamlit sets the process-wide flag
``PagesManager.uses_pages_directory`` to "a ``pages/`` folder sits next to the entry point".
While it is true, every run goes through the legacy ``pages/`` router (``_mpa_v1``): a menu of
file names ("app, compare, …") and ``pages/<name>.py`` executed on its own, so ``app.py`` —
page config, our menu, allocator settings — does not run. Only a run of ``st.navigation``
clears the flag, and ours lives in ``app.py``, which the legacy router runs only for ``/``.
So after a restart a bookmark such as ``/inspect`` got the file-name menu, for every session,
until somebody opened ``/``. Streamlit has no setting to turn the legacy router off and no hook
that runs before the first session; its own advice is to rename ``pages/``, which this project
keeps. Hence two small measures:

- ``client.showSidebarNavigation = false`` (``.streamlit/config.toml``) hides the legacy menu,
  which the browser would otherwise draw before any of our code runs (seconds on ``/``, while
  ``app.py`` imports torch); ``app.py`` sets it back to true for its own ``st.navigation``,
  which that option hides as well.
- :func:`require_app_frame`, first in every page (``widgets.page_start``; only the page's
  imports and constants run before it), hands a page the legacy router ran on its own over to
  ``app.py``. After one such run, or one of ``/``, the process never uses the legacy router
  again.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import ScriptRunContext, get_script_run_ctx


def _routed_by_pages_folder(ctx: ScriptRunContext) -> bool:
    """True when this run comes from the legacy router: it lists the entry point itself as a
    page ("app"), which ``app.py``'s own navigation never does."""
    entry = Path(ctx.main_script_path).resolve()
    return any(info.get("script_path") and Path(info["script_path"]).resolve() == entry
               for info in ctx.pages_manager.get_pages().values())


def require_app_frame() -> None:
    """Run ``app.py`` instead of a page that the legacy ``pages/`` router ran on its own.

    That is what the legacy router itself does for ``/``: it runs the entry point as a page,
    whose ``st.navigation`` then draws our menu, runs the requested page (same URL path, same
    query string) inside the frame, and switches the legacy router off for the whole process.
    The legacy run stops here. Does nothing in a run that came through ``app.py``.
    """
    ctx = get_script_run_ctx()
    if ctx is None or not _routed_by_pages_folder(ctx):
        return
    entry = ctx.main_script_path
    code = compile(Path(entry).read_bytes(), entry, "exec", dont_inherit=True)
    # app.py's own code runs under the main script's hash, as in a run that starts there.
    with ctx.run_with_active_hash(ctx.pages_manager.main_script_hash):
        exec(code, {"__name__": "__main__", "__file__": entry})  # noqa: S102
    st.stop()
