"""AppTest: Inspect page (demo / upload batches, sliders without re-scoring, downloads)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspector_ui import testing as t
from inspector_ui import views

pytestmark = pytest.mark.usefixtures("demo_env")


def inspected(demo_button: bool = True):  # type: ignore[no-untyped-def]
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    at = t.open_page(at, "inspect")
    if demo_button:
        at.button(key="inspect_demo").click().run()
    return at


def table(at) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    frames = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    assert len(frames) == 1
    return frames[0]


def test_inspect_without_model_points_to_train() -> None:
    at = t.open_page(t.new_app(), "inspect")
    assert not t.exceptions(at)
    assert any("No model yet" in i.value for i in at.info)


def test_demo_batch_table_and_views(predict_calls: list[int]) -> None:
    at = inspected()
    assert not t.exceptions(at)
    df = table(at)
    assert list(df.columns) == ["name", "score", "normalized_score", "verdict"]
    assert len(df) == 6 and set(df["verdict"]) <= {"OK", "NG"}
    thr = t.slot(at).model.image_threshold_
    np.testing.assert_allclose(df["normalized_score"], df["score"] / thr, rtol=1e-6)
    assert t.metric(at, "NG count") == str(int((df["verdict"] == "NG").sum()))
    assert at.get("plotly_chart"), "batch histogram missing"
    # original, overlay, contours for the selected image + a gallery tile per image
    captions = [c for img in at.image for c in img.captions]
    assert len(at.image) == 3 + 6
    assert any("Heatmap overlay" in c for c in captions)
    assert any("Defect contours" in c for c in captions)
    assert len(predict_calls) == 1


def test_threshold_sliders_redraw_without_rescoring(predict_calls: list[int]) -> None:
    at = inspected()
    assert len(predict_calls) == 1
    scores = table(at)["score"].to_numpy()
    order = np.sort(scores)
    # Put the image threshold between the 2nd and 3rd highest score: exactly 2 NG.
    middle = float((order[-2] + order[-3]) / 2)
    at.slider(key="insp_image_thr").set_value(middle).run()
    assert not t.exceptions(at)
    assert t.metric(at, "NG count") == "2"
    assert list(table(at)["verdict"]).count("NG") == 2
    np.testing.assert_allclose(table(at)["normalized_score"], scores / middle, rtol=1e-6)
    # Everything NG, then nothing NG.
    at.slider(key="insp_image_thr").set_value(float(order[0]) / 2).run()
    assert t.metric(at, "NG count") == "6"
    at.slider(key="insp_image_thr").set_value(float(order[-1]) * 1.1).run()
    assert t.metric(at, "NG count") == "0"
    # Pixel threshold, opacity and colour map re-draw too.
    at.slider(key="insp_pixel_thr").set_value(float(at.slider(key="insp_pixel_thr").max) * 0.9)
    at.slider(key="insp_alpha").set_value(0.8)
    at.selectbox(key="insp_cmap").set_value("viridis")
    at.run()
    assert not t.exceptions(at)
    pixel = at.slider(key="insp_pixel_thr").value
    assert any(f"pixel threshold {pixel:.3f}" in c for img in at.image for c in img.captions)
    assert len(predict_calls) == 1, "moving a slider must not run the model again"
    # The thresholds persist when leaving the page and coming back.
    t.open_page(at, "train")
    at = t.open_page(at, "inspect")
    assert at.slider(key="insp_image_thr").value == pytest.approx(float(order[-1]) * 1.1)
    assert len(predict_calls) == 1


def test_reset_thresholds_button() -> None:
    at = inspected()
    model = t.slot(at).model
    at.slider(key="insp_image_thr").set_value(model.image_threshold_ * 3).run()
    at.button(key="insp_reset_thr").click().run()
    assert at.slider(key="insp_image_thr").value == pytest.approx(model.image_threshold_)


def test_uploaded_batch_with_a_bad_file(demo: Path, predict_calls: list[int]) -> None:
    at = inspected(demo_button=False)
    files = t.inspect_uploads(demo) + [("scan.jpg", b"garbage, not a jpeg", "image/jpeg")]
    at.file_uploader(key="inspect_files").set_value(files).run()
    at.button(key="inspect_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)     # scored the rest: a warning
    assert any("scan.jpg" in w for w in t.warnings(at)), t.warnings(at)
    assert len(table(at)) == len(files) - 1
    # the skipped file stays listed after a re-run (e.g. a slider move)
    at.slider(key="insp_alpha").set_value(0.3).run()
    assert any("1 file(s) skipped" in e.label for e in at.expander)


def test_an_image_far_smaller_than_the_input_is_scored_with_a_warning(demo: Path) -> None:
    """An 8 × 8 image was scored NG (enlarged to the input size) without a word."""
    import io

    from PIL import Image

    tiny = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 120, 120)).save(tiny, format="PNG")
    at = inspected(demo_button=False)
    files = t.inspect_uploads(demo)[:2] + [("tiny8.png", tiny.getvalue(), "image/png")]
    at.file_uploader(key="inspect_files").set_value(files).run()
    at.button(key="inspect_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert len(table(at)) == 3                                   # scored all the same
    crop = t.slot(at).model.config.crop
    notes = [w for w in t.warnings(at) if w.startswith("tiny8.png: 8×8 px")]
    assert notes and f"enlarged to the model's {crop} px input" in notes[0], t.warnings(at)
    assert any("1 image(s) far smaller" in e.label for e in at.expander)


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        (("scan.png", b"\x89PNG\r\n\x1a\n broken", "image/png"), "scan.png"),
        (("empty.zip", t.zip_bytes({}), "application/zip"), "empty.zip"),
        (("evil.zip", t.zip_bytes({"../up.png": b"x" * 10}), "application/zip"), "evil.zip"),
    ],
)
def test_bad_upload_keeps_previous_results(upload: tuple[str, bytes, str],
                                           expected: str) -> None:
    at = inspected()
    before = table(at)
    at.file_uploader(key="inspect_files").set_value([upload]).run()
    at.button(key="inspect_go").click().run()
    assert not t.exceptions(at)
    assert any(expected in e for e in t.errors(at)), t.errors(at)
    pd.testing.assert_frame_equal(table(at), before)


def test_zip_batch_and_downloads(demo: Path) -> None:
    at = inspected(demo_button=False)
    members = {f"batch/{n}": d for n, d, _ in t.inspect_uploads(demo)}
    at.file_uploader(key="inspect_files").set_value(
        ("batch.zip", t.zip_bytes(members), "application/zip")).run()
    at.button(key="inspect_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    df = table(at)
    assert len(df) == len(members) and all(n.startswith("batch/") for n in df["name"])
    assert at.download_button(key="inspect_csv") is not None
    assert at.download_button(key="inspect_zip") is not None
    insp = at.session_state["inspection"]
    res = insp.result
    csv = views.table_csv(df)
    assert pd.read_csv(io.BytesIO(csv))["name"].tolist() == df["name"].tolist()
    data = views.overlays_zip(res.names, res.images, res.maps, df,
                              views.Display(*insp.scale), res.pixel_threshold)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    assert "results.csv" in names
    assert sum(n.startswith("overlays/") and n.endswith("_overlay.png") for n in names) == len(df)
    assert all(".." not in n for n in names)


def test_new_model_marks_old_results_stale() -> None:
    at = inspected()
    t.open_page(at, "train")
    t.train_demo(at)
    at = t.open_page(at, "inspect")
    assert any("earlier model" in w.value for w in at.warning)
    at.button(key="inspect_rescore").click().run()
    assert not t.exceptions(at)
    assert not any("earlier model" in w.value for w in at.warning)
    assert len(table(at)) == 6


def test_a_threshold_below_the_slider_step_is_shown_as_it_is() -> None:
    """A saved threshold finer than the slider's step (e.g. 0.001 where the step is 1) must
    show on the slider as the value the verdicts use, not as the slider's lowest step."""
    at = inspected()
    at.session_state["thresholds"]["A"].image = 1e-3
    at.run()
    assert not t.exceptions(at)
    assert t.metric(at, "Image threshold") == "0.001"
    assert at.slider(key="insp_image_thr").value == pytest.approx(1e-3)
    assert t.metric(at, "NG count") == "6"
