"""AppTest: the region panel on Train and the live minimum-area controls on Inspect (#15)."""

from __future__ import annotations

import numpy as np
import pytest

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
    at.slider(key=f"insp_min_area_{token}").set_value(at.slider(
        key=f"insp_min_area_{token}").max).run()
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
