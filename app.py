"""PaDiM Inspector: entry point (`streamlit run app.py`). Landing page and navigation."""

from __future__ import annotations

import streamlit as st

from inspector_ui import access
from padim_core.allocator import keep_freed_memory

keep_freed_memory()   # best effort here; `make run` sets the same for every thread
st.set_page_config(page_title="PaDiM Inspector", page_icon=":material/troubleshoot:", layout="wide")


def home() -> None:
    """Landing page: what the tool does, in three lines, and the way in."""
    st.title("PaDiM Inspector")
    st.markdown(
        "1. **Train** — upload photos of good parts; the tool learns what *normal* looks like.\n"
        "2. **Inspect** — upload new photos and see where each one deviates: heatmaps, "
        "scores and OK / NG verdicts.\n"
        "3. **Tune** — move the threshold sliders, compare results side by side, and "
        "measure accuracy on a labelled set."
    )
    st.page_link("pages/train.py", label="Start: train a model", icon=":material/model_training:")
    st.page_link("pages/inspect.py", label="Or inspect with a model from the library",
                 icon=":material/image_search:")
    st.caption("No photos at hand? The Train page has a one-click demo set, and `make run` "
               "trains a demo model into an empty library on the first visit to Train or "
               "Inspect, ready to inspect the demo test set.")


pages = [
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/image_search:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
    st.Page("pages/models.py", title="Models", icon=":material/inventory_2:"),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
]
# .streamlit/config.toml hides the menu Streamlit builds from pages/ file names; our own
# sidebar menu needs the option on (see inspector_ui/app_frame.py).
st.set_option("client.showSidebarNavigation", True)
may_see = access.gate()   # on a network address: the sign-in form until somebody signs in
navigation = st.navigation(pages, position="sidebar" if may_see else "hidden")
if may_see:
    navigation.run()
