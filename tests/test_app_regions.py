"""AppTest: the region panel on Train and the live minimum-area controls on Inspect (#15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from inspector_ui import testing as t

pytestmark = pytest.mark.usefixtures("demo_env")


def contour_captions(at) -> list[str]:  # type: ignore[no-untyped-def]
    return [c for img in at.image for c in img.captions if "Defect contours" in c]


def test_min_area_and_area_rule_redraw_without_rescoring(predict_calls: list[int]) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    assert any("Region to inspect" in s.value for s in at.subheader)
    # the editor (and its canvas component) is mounted only when asked for
    assert not [b for b in at.button if b.key == "regionA_apply"]
    at.toggle(key="regionA_edit").set_value(True).run()
    assert [b for b in at.button if b.key == "regionA_apply"]
    at = t.open_page(at, "inspect")
    at.button(key="inspect_demo").click().run()
    token = t.slot(at).token
    ng_by_score = int(t.metric(at, "NG count"))
    assert "≥ 0 px" in contour_captions(at)[0]
    steps = at.select_slider(key=f"insp_min_area_{token}").options
    assert steps[:6] == ["0", "1", "2", "5", "10", "20"]     # small areas can be picked
    crop = t.slot(at).model.config.crop
    at.select_slider(key=f"insp_min_area_{token}").set_value(crop * crop).run()
    assert "no defect region" in contour_captions(at)[0]
    at.toggle(key=f"insp_area_rule_{token}").set_value(True).run()
    assert int(t.metric(at, "NG count")) == 0 < ng_by_score      # nothing that large
    assert not t.exceptions(at)
    assert len(predict_calls) == 1


def test_applying_a_region_recalibrates_a_copy_as_a_new_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector_ui import region_editor, state

    at = t.train_demo(t.open_page(t.new_app(), "train"))
    before = t.slot(at)
    slots = {"A": before}
    monkeypatch.setattr(state, "get_slot", lambda key="A": slots.get(key))
    monkeypatch.setattr(state, "set_slot", lambda key, model, origin, skipped=None: slots.
                        setdefault(key + "new", state.ModelSlot(model, origin, skipped or [])))
    crop = before.model.config.crop
    region = np.ones((crop, crop), bool)
    region[: crop // 2] = False
    after = region_editor.apply_region("A", region, 12)
    assert after.token != before.token and after.model is not before.model
    assert before.model.region_ is None            # the shared original is untouched
    assert np.array_equal(after.model.region_, region)
    assert after.model.config.min_defect_area == 12
    assert after.model.image_threshold_ != before.model.image_threshold_
    assert "region: 50.0% of the crop" in after.origin


def test_canvas_objects_become_crop_polygons() -> None:
    from inspector_ui.region_editor import EXCLUDE, INCLUDE, shapes_of

    drawing = {"objects": [
        {"type": "Rect", "left": 20, "top": 40, "width": 100, "height": 50, "scaleX": 2,
         "scaleY": 1, "stroke": EXCLUDE[0]},
        {"type": "Polygon", "left": 9, "top": 19, "strokeWidth": 2, "stroke": INCLUDE[0],
         "points": [{"x": 110, "y": 120}, {"x": 150, "y": 120}, {"x": 130, "y": 160}]},
        {"type": "Polygon", "left": 70, "top": 85, "originX": "center", "originY": "center",
         "strokeWidth": 20, "stroke": EXCLUDE[0],       # as the canvas sends one, unmoved
         "points": [{"x": 20, "y": 20}, {"x": 120, "y": 30}, {"x": 60, "y": 150}]},
        {"type": "Circle", "left": 0, "top": 0, "radius": 5}]}
    shapes = shapes_of(drawing, scale=2.0)
    assert shapes == [("exclude", [(10, 20), (110, 20), (110, 45), (10, 45)]),
                      ("include", [(5, 10), (25, 10), (15, 30)]),
                      ("exclude", [(10, 10), (60, 15), (30, 75)])]


def test_an_applied_region_is_saved_as_the_next_version(demo_env: Path, tmp_path: Path) -> None:
    """Apply (mask, minimum area, area rule) on a library model saves the next version, so a
    reload and the history use it; the result stays on screen through later reruns (the
    canvas reruns the page on load); the history records the verdicts of that rule."""
    from padim_core.store import Store

    at = t.train_demo(t.open_page(t.new_app(), "train"))
    name, version = t.slot(at).library_ref
    crop = t.slot(at).model.config.crop
    mask = np.full((crop, crop, 3), 255, np.uint8)
    mask[:, : crop // 2] = 0                                   # ignore the left half
    at.toggle(key="regionA_edit").set_value(True).run()
    at.number_input(key="regionA_min").set_value(crop * crop)
    at.toggle(key="regionA_area_rule").set_value(True)
    at.file_uploader(key="regionA_file").set_value(
        ("half.png", t.png_bytes(mask), "image/png")).run()
    at.button(key="regionA_apply_file").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    slot = t.slot(at)
    assert slot.library_ref == (name, version + 1)
    assert at.query_params["v"] == str(version + 1)
    for _ in range(2):
        said = [s.value for s in at.success]
        assert any("Region applied: 50.0% of the crop" in s for s in said), said
        assert any(f"Saved as {name}@{version + 1} ({name}@{version} is kept)" in s
                   for s in said), said
        at.run()
    with Store.open(tmp_path / "workspace") as store:
        saved = store.library.load(store.library.version(name, version + 1), device="cpu")
        assert np.array_equal(saved.region_, mask[..., 0] > 0)
        assert saved.config.min_defect_area == crop * crop
        assert saved.config.verdict_rule == "area"

    at = t.open_page(at, "inspect")
    at.button(key="inspect_demo").click().run()
    assert not t.exceptions(at)
    with Store.open(tmp_path / "workspace") as store:
        rows = store.history.find()
    assert rows and {r.model_version for r in rows} == {version + 1}
    assert {r.verdict for r in rows} == {"OK"}     # no region as large as the crop
    assert any(r.score >= r.image_threshold for r in rows)      # NG by the score rule

    # Opened from the library (a reload), applied again: one "library:" in its label (it
    # read "library: demo@2 · region: … · library: demo@3").
    again = AppTest.from_file(str(t.APP), default_timeout=t.TIMEOUT)
    again.query_params.update({"model": name, "v": str(version + 1)})
    again = again.run().switch_page("pages/train.py").run()
    again.toggle(key="regionA_edit").set_value(True).run()
    again.file_uploader(key="regionA_file").set_value(
        ("half.png", t.png_bytes(mask), "image/png")).run()
    again.button(key="regionA_apply_file").click().run()
    assert not t.exceptions(again) and t.slot(again).library_ref == (name, version + 2)
    assert t.slot(again).origin.count("library:") == 1, t.slot(again).origin
