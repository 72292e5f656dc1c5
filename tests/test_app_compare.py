"""AppTest: Compare page (two images under one model, one image under two models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector_ui import testing as t

pytestmark = pytest.mark.usefixtures("demo_env")


def scores_shown(at) -> list[float]:  # type: ignore[no-untyped-def]
    return [float(m.value) for m in at.metric if m.label == "Score"]


def test_compare_needs_images_or_a_batch() -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    at = t.open_page(at, "compare")
    assert not t.exceptions(at)
    assert any("Inspect a batch first" in i.value for i in at.info)
    at.button(key="compare_demo").click().run()
    assert not t.exceptions(at)
    assert len(scores_shown(at)) == 2


def test_two_images_one_model_reuses_the_batch(predict_calls: list[int]) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    at = t.open_page(at, "inspect")
    at.button(key="inspect_demo").click().run()
    assert len(predict_calls) == 1
    at = t.open_page(at, "compare")
    assert not t.exceptions(at) and not t.errors(at)
    res = at.session_state["inspection"].result
    # default: the most suspect image beside the least suspect one
    shown = scores_shown(at)
    assert shown == pytest.approx([max(res.scores), min(res.scores)], abs=1e-3)
    assert len(predict_calls) == 1, "images of the inspected batch must not be re-scored"
    # one shared colour scale for both sides
    assert any("for both" in c.value for c in at.caption)
    at.selectbox(key="compare_right").set_value(res.names[0]).run()
    assert scores_shown(at)[1] == pytest.approx(res.scores[0], abs=1e-3)
    # the shared sliders re-draw verdicts here too, still without the model
    top = at.slider(key="cmp_image_thr").max
    assert top > max(res.scores)
    at.slider(key="cmp_image_thr").set_value(top).run()
    assert [m.value for m in at.metric if m.label == "Verdict"] == ["OK", "OK"]
    assert len(predict_calls) == 1
    at = t.open_page(at, "inspect")
    assert t.metric(at, "NG count") == "0", "thresholds are shared with Inspect"


def test_one_image_two_models(demo: Path, predict_calls: list[int]) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    at = t.open_page(at, "compare")
    at.radio(key="compare_mode").set_value("One image, two models").run()
    at.file_uploader(key="compare_files").set_value(t.inspect_uploads(demo)[:2]).run()
    at.button(key="compare_add").click().run()
    assert any("Model B is empty" in i.value for i in at.info)
    # train model B with another d on the same demo set
    t.use_small_settings(at, "trainB")
    at.number_input(key="trainB_d_efficientnet_lite0").set_value(16)
    at.button(key="trainB_demo").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    b = t.slot(at, "B")
    assert b is not None and b.model.config.d == 16
    assert t.slot(at, "A").model.config.d == t.SMALL["d"]
    assert len(scores_shown(at)) == 2
    headers = " ".join(m.value for m in at.markdown)
    assert "Model A" in headers and "Model B" in headers and "d=16" in headers
    # Each side and its sidebar controls name the version (both read "efficientnet_lite0,
    # d=..." before, whichever versions were compared).
    assert "Model A: demo@1 (" in headers and "Model B: demo@2 (" in headers, headers
    assert "**Model B** (demo@2)" in headers
    assert any("multiples of each model's pixel threshold" in c.value for c in at.caption)
    hole = next(n for n, _, _ in t.inspect_uploads(demo) if n.startswith("hole_"))
    at.file_uploader(key="compare_files").set_value(
        [u for u in t.inspect_uploads(demo) if u[0] == hole]).run()
    at.button(key="compare_add").click().run()
    at.selectbox(key="compare_image").set_value(hole).run()
    b_score = scores_shown(at)[1]
    at.run()
    # B's slider reaches past every score B gave, so each one can be put under it (it
    # stopped at 2x B's threshold, below a defect's score)
    assert at.slider(key="cmpB_image_thr").max >= 1.25 * b_score > 0
    calls = len(predict_calls)
    at.slider(key="cmpB_image_thr").set_value(b.model.image_threshold_ * 1.5).run()
    at.slider(key="cmp_alpha").set_value(0.9).run()
    assert not t.exceptions(at)
    assert len(predict_calls) == calls, "slider moves must not re-score"


def test_model_b_from_file(predict_calls: list[int]) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    data = t.slot(at).model.to_bytes()
    at = t.open_page(at, "compare")
    at.radio(key="compare_mode").set_value("One image, two models").run()
    at.button(key="compare_demo").click().run()
    at.file_uploader(key="loadB_file").set_value(("other.safetensors", b"junk" * 10,
                                                  "application/octet-stream")).run()
    at.button(key="loadB_go").click().run()
    assert any("other.safetensors" in e for e in t.errors(at))
    assert t.slot(at, "B") is None
    at.file_uploader(key="loadB_file").set_value(("b.safetensors", data,
                                                  "application/octet-stream")).run()
    at.button(key="loadB_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at, "B") is not None
    a_score, b_score = scores_shown(at)
    assert a_score == pytest.approx(b_score, rel=1e-4), "same model file, same score"


def test_compare_shows_the_region_and_the_defect_rule() -> None:
    """Compare judges as Inspect does: the model's region (an uploaded mask), the minimum
    defect area and the area verdict rule (it used to ignore all three)."""
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    crop = t.slot(at).model.config.crop
    mask = np.zeros((crop, crop, 3), np.uint8)
    mask[:, crop // 2:] = 255                                  # inspect the right half
    at.toggle(key="regionA_edit").set_value(True).run()
    at.file_uploader(key="regionA_file").set_value(
        ("half.png", t.png_bytes(mask), "image/png")).run()
    at.button(key="regionA_apply_file").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    at = t.open_page(at, "compare")
    at.button(key="compare_demo").click().run()
    token = t.slot(at).token
    captions = [c for img in at.image for c in img.captions if "Defect contours" in c]
    assert len(captions) == 2 and all("inspected: 50.0% of the crop" in c for c in captions)
    at.slider(key="cmp_image_thr").set_value(at.slider(key="cmp_image_thr").min).run()
    assert verdicts(at) == ["NG", "NG"]                        # by score: everything
    at.select_slider(key=f"cmp_min_area_{token}").set_value(crop * crop).run()
    at.toggle(key=f"cmp_area_rule_{token}").set_value(True).run()
    assert verdicts(at) == ["OK", "OK"]                        # by area: nothing that large
    assert not t.exceptions(at)


def verdicts(at) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m.value) for m in at.metric if m.label == "Verdict"]
