"""AppTest: every page that shows model A keeps it in the URL, Compare's model B lives in the
library and its inspections in the history, and a reload redraws the last recorded batch.

Why: an operator reloads or shares a link from whichever page they are on (Models,
Evaluate), not only from Inspect; a model B trained for a comparison is work worth keeping;
and after F5 the Inspect page must still show what was inspected (images, heat maps,
verdicts, decisions), not a bare table.
"""

from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest

from inspector_ui import testing as t
from padim_core.store import DATA_DIR_ENV, Filters, Store

pytestmark = pytest.mark.usefixtures("demo_env")


def workspace() -> Store:
    return Store.open(os.environ[DATA_DIR_ENV])


def params(at: AppTest) -> dict[str, str]:
    return {k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()}


def reloaded(at: AppTest, page: str) -> AppTest:
    """A new browser session opened on ``page`` with ``at``'s query string (a reload)."""
    fresh = AppTest.from_file(str(t.APP), default_timeout=t.TIMEOUT)
    for key, value in params(at).items():
        fresh.query_params[key] = value
    fresh.run()
    return fresh.switch_page(f"pages/{page}.py").run()


def test_models_and_evaluate_keep_the_open_model_in_the_url() -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    t.train_demo(at)                                   # demo@1 and demo@2; A is demo@2
    models = t.open_page(at, "models")
    assert params(models) == {"model": "demo", "v": "2"}
    models.selectbox(key="models_version_demo").set_value(1).run()
    models.button(key="models_open").click().run()
    assert not t.exceptions(models) and not t.errors(models)
    assert params(models) == {"model": "demo", "v": "1"}

    again = reloaded(models, "models")                 # F5 on the Models page
    assert not t.exceptions(again) and not t.errors(again)
    assert t.slot(again).library_ref == ("demo", 1)
    # The pickers show the open model (they showed the default version and warned that
    # thresholds "would go onto" it), on Models and on Inspect's library picker.
    assert (again.selectbox(key="models_name").value,
            again.selectbox(key="models_version_demo").value) == ("demo", 1)
    inspect = t.open_page(again, "inspect")
    assert inspect.selectbox(key="inspect_lib_ref").value == "demo@1"
    evaluate = reloaded(again, "evaluate")             # a shared link to Evaluate
    assert not t.exceptions(evaluate) and not t.errors(evaluate)
    assert t.slot(evaluate).library_ref == ("demo", 1)
    assert params(evaluate) == {"model": "demo", "v": "1"}


def test_a_model_not_in_the_library_clears_the_link() -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    assert params(at) == {"model": "demo", "v": "1"}
    with workspace() as store:
        data = store.library.read_bytes(store.library.resolve("demo@1"))
    at.file_uploader(key="loadA_file").set_value(
        ("plain.safetensors", data, "application/octet-stream")).run()
    at.button(key="loadA_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at).library_ref is None
    assert params(at) == {}          # a reload must not bring demo@1 back in its place


def test_compare_saves_model_b_records_its_inspections_and_links_it() -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))            # A = demo@1
    at = t.open_page(at, "compare")
    at.radio(key="compare_mode").set_value("One image, two models").run()
    at.button(key="compare_demo").click().run()
    at.text_input(key="trainB_save_name").set_value("plates B")
    t.train_demo(at, prefix="trainB")
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at, "B").library_ref == ("plates B", 1)
    assert any("Saved in the library as **plates B@1**" in s.value for s in at.success)
    shown = at.selectbox(key="compare_image").value
    with workspace() as store:
        assert [v.ref for e in store.library.models() for v in e.versions] == \
            ["demo@1", "plates B@1"]
        [row_b] = store.history.find(Filters(model_name="plates B"))
        [row_a] = store.history.find(Filters(model_name="demo"))
    assert (row_b.model_version, row_b.file_name) == (1, shown)
    assert row_a.file_name == shown
    assert store.history.thumbnails(row_b.id)[1] is not None    # its heat-map overlay kept

    other = next(o for o in at.selectbox(key="compare_image").options if o != shown)
    at.selectbox(key="compare_image").set_value(other).run()
    at.selectbox(key="compare_image").set_value(shown).run()    # scored already: no new row
    with workspace() as store:
        assert [r.file_name for r in store.history.find(Filters(model_name="plates B"))] == \
            [other, shown]

    assert params(at) == {"model": "demo", "v": "1", "b": "plates B", "bv": "1"}
    again = reloaded(at, "compare")                    # F5 on Compare: both models back
    assert not t.exceptions(again) and not t.errors(again)
    assert (t.slot(again).library_ref, t.slot(again, "B").library_ref) == \
        (("demo", 1), ("plates B", 1))
    assert again.radio(key="compare_mode").value == "One image, two models"   # not reset


def test_reload_redraws_the_last_batch_with_thumbnails_and_decisions() -> None:
    at = t.open_page(t.train_demo(t.open_page(t.new_app(), "train")), "inspect")
    at.button(key="inspect_demo").click().run()
    n_images, n_ng = int(t.metric(at, "Images")), int(t.metric(at, "NG count"))
    again = reloaded(at, "inspect")
    assert not t.exceptions(again) and not t.errors(again)
    assert int(t.metric(again, "Images")) == n_images
    assert int(t.metric(again, "NG count")) == n_ng
    assert t.metric(again, "Decisions") == "0"
    captions = [c for img in again.image for c in img.captions]
    assert any(c.startswith("Heatmap overlay — score") for c in captions)
    gallery = [c for c in captions if c.startswith(("NG ·", "OK ·"))]
    assert len(gallery) == n_images
    again.radio(key="recorded_gallery_filter").set_value("NG only").run()
    assert len([c for img in again.image for c in img.captions
                if c.startswith(("NG ·", "OK ·"))]) == n_ng

    row_id = int(again.selectbox(key="inspect_recorded_row").value)
    again.radio(key=f"inspect_rec_choice_{row_id}").set_value("missed_defect").run()
    again.button(key="inspect_rec_decide").click().run()
    assert not t.exceptions(again) and not t.errors(again)
    assert t.metric(again, "Decisions") == "1"
    with workspace() as store:
        assert store.history.get(row_id).decision == "missed_defect"


def test_a_reloaded_batch_whose_thumbnails_were_pruned_still_shows_its_rows() -> None:
    at = t.open_page(t.train_demo(t.open_page(t.new_app(), "train")), "inspect")
    at.button(key="inspect_demo").click().run()
    n_images = int(t.metric(at, "Images"))
    with workspace() as store:
        store.history.prune_thumbnails(0)              # the size cap took them all
    again = reloaded(at, "inspect")
    assert not t.exceptions(again) and not t.errors(again)
    assert int(t.metric(again, "Images")) == n_images and len(again.image) == 0
    assert any("thumbnails of this image were pruned" in c.value for c in again.caption)
    assert len([c for c in again.caption if "(thumbnail pruned)" in c.value]) == n_images


def test_a_reload_shows_this_tabs_own_run_not_another_sessions(demo_env) -> None:
    """Two tabs inspect with one version: a reload redraws the tab's own batch (its id is in
    the tab's link), not the newest one: a tab that inspected 15 parts showed, after a reload,
    the 10 OK parts another user had inspected since. A link without a batch (a bookmark
    of the model) shows the newest run, never both runs merged by time."""
    first = t.open_page(t.train_demo(t.open_page(t.new_app(), "train")), "inspect")
    first.button(key="inspect_demo").click().run()
    n_first = int(t.metric(first, "Images"))
    assert n_first > 2 and params(first)["batch"]
    second = reloaded(first, "inspect")                  # another tab on the same model
    second.file_uploader(key="inspect_files").set_value(t.inspect_uploads(demo_env)[:2]).run()
    second.button(key="inspect_go").click().run()
    assert int(t.metric(second, "Images")) == 2
    assert params(second)["batch"] != params(first)["batch"]
    again = reloaded(first, "inspect")
    assert not t.exceptions(again) and not t.errors(again)
    assert int(t.metric(again, "Images")) == n_first
    bookmark = AppTest.from_file(str(t.APP), default_timeout=t.TIMEOUT)
    bookmark.query_params.update({"model": "demo", "v": "1"})
    bookmark = bookmark.run().switch_page("pages/inspect.py").run()
    assert int(t.metric(bookmark, "Images")) == 2
    with workspace() as store:
        rows = store.history.find()
        assert len({r.batch for r in rows}) == 2 and all(len(r.batch) == 32 for r in rows)


def test_after_accept_as_normal_a_reload_shows_the_batch_it_came_from() -> None:
    """The link names the new version after *Accept as normal*; a reload used to come back
    empty (no rows recorded with the new version). It shows the batch, saying with which
    version it was recorded."""
    at = t.open_page(t.train_demo(t.open_page(t.new_app(), "train")), "inspect")
    at.button(key="inspect_demo").click().run()
    n_images, batch = int(t.metric(at, "Images")), params(at)["batch"]
    at.button(key="inspect_fb_accept").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert (params(at)["v"], params(at)["batch"]) == ("2", batch)
    again = reloaded(at, "inspect")
    assert not t.exceptions(again) and not t.errors(again)
    assert t.slot(again).library_ref == ("demo", 2)
    assert int(t.metric(again, "Images")) == n_images
    assert any("Recorded with demo@1; the open model is now demo@2" in i.value
               for i in again.info)


def test_a_link_whose_version_is_not_a_number_is_refused() -> None:
    """``v=abc`` opened the newest version and said "the link names it"."""
    t.train_demo(t.open_page(t.new_app(), "train"))
    fresh = AppTest.from_file(str(t.APP), default_timeout=t.TIMEOUT)
    fresh.query_params.update({"model": "demo", "v": "abc"})
    fresh = fresh.run().switch_page("pages/inspect.py").run()
    assert t.slot(fresh) is None
    assert any("demo@abc" in e.value and "must be a number" in e.value for e in fresh.error)


def opened_with(link: dict[str, str], page: str = "inspect") -> AppTest:
    """A fresh session opened on ``page`` with the query string ``link``."""
    fresh = AppTest.from_file(str(t.APP), default_timeout=t.TIMEOUT)
    fresh.query_params.update(link)
    return fresh.run().switch_page(f"pages/{page}.py").run()


@pytest.mark.parametrize("version", ["²", "١", "9" * 5000],
                         ids=["superscript-two", "arabic-indic-one", "5000-digits"])
def test_a_link_whose_version_is_no_plain_number_is_one_error(version: str) -> None:
    """``?v=²`` gave a ValueError traceback: '²'.isdigit() is true but int('²') fails (and
    int() refuses 5000 digits); Arabic-Indic '١' opened version 1."""
    fresh = opened_with({"model": "demo", "v": version})
    assert not t.exceptions(fresh), t.exceptions(fresh)
    assert t.slot(fresh) is None
    assert any(f"demo@{version}" in e and "must be a number" in e for e in t.errors(fresh))


def test_a_link_names_its_model_as_text_never_as_a_link() -> None:
    """``?model=[Your session expired - sign in again](https://evil.example/login)`` put a
    working link to evil.example in the app's own error box."""
    from inspector_ui.text import md

    name = "[Your session expired - sign in again](https://evil.example/login)"
    for link in ({"model": name, "v": "1"}, {"model": name, "v": "x"}):
        fresh = opened_with(link)
        assert not t.exceptions(fresh)
        [error] = [str(e.value) for e in fresh.error]
        assert md(name) in error and "](https" not in error and "https://" not in error


def test_a_tab_follows_a_rename_made_in_another(demo_env) -> None:
    """Tab 2 kept the old name after tab 1 renamed the model: its inspections went to a
    ghost model without their version, and Accept as normal began a second model."""
    first = t.open_page(t.train_demo(t.open_page(t.new_app(), "train")), "inspect")
    second = reloaded(first, "inspect")                     # another tab on demo@1
    assert t.slot(second).library_ref == ("demo", 1)
    with workspace() as store:
        store.library.rename("demo", "line 3", by="ann")    # as tab 1's Models page does
    second.button(key="inspect_demo").click().run()
    assert not t.exceptions(second) and not t.errors(second)
    assert any("demo@1 was renamed in the library: it is line 3@1 now" in i.value
               for i in second.info)
    assert t.slot(second).library_ref == ("line 3", 1)
    assert (params(second)["model"], params(second)["v"]) == ("line 3", "1")
    with workspace() as store:
        v = store.library.version("line 3", 1)
        rows = store.history.find()
        assert rows and {(r.model_name, r.version_id) for r in rows} == {("line 3", v.id)}
