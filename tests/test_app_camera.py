"""AppTest: the Inspect page's camera — a photo is scored at once, joins the results and the
history, is not scored again on a rerun, and a bad photo changes nothing.

Why: at the bench an inspector holds a part to a phone or webcam; each photo must be judged
at once and kept with the batch (and the audit trail) like an upload.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector_ui import testing as t
from inspector_ui.text import md
from padim_core.store import Filters, Store

pytestmark = pytest.mark.usefixtures("demo_env")


def jpeg(path: Path) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.imread(str(path)), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def rows(at) -> list[str]:  # type: ignore[no-untyped-def]
    frames = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    assert len(frames) == 1
    return list(frames[0]["name"])


def history_names(workspace: Path) -> list[str]:
    with Store.open(workspace) as store:
        return sorted(r.file_name for r in store.history.find(Filters(), limit=100))


def test_photos_join_the_results_and_the_history(demo_env: Path, tmp_path: Path,
                                                 predict_calls: list[int]) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    at = t.open_page(at, "inspect")
    at.button(key="inspect_demo").click().run()
    assert len(rows(at)) == 6 and len(predict_calls) == 1
    assert not at.get("camera_input"), "the camera stays off until switched on"

    at.toggle(key="inspect_camera_on").set_value(True).run()
    first = sorted((demo_env / "test").glob("*/*.png"))[-1]
    photo = jpeg(first)
    at.camera_input(key="inspect_camera").set_value(("image.jpg", photo, "image/jpeg")).run()
    assert not t.exceptions(at) and not t.errors(at)
    names = rows(at)
    assert len(names) == 7 and names[-1].startswith("photo_") and names[-1].endswith(".jpg")
    assert len(predict_calls) == 2
    model = t.slot(at).model
    expected = float(model.predict([photo]).scores[0])
    insp = at.session_state["inspection"]
    assert float(insp.result.scores[-1]) == pytest.approx(expected, rel=1e-6)
    assert insp.label == "demo test set + 1 photo"
    assert t.metric(at, "Images") == "7"
    assert any(md(names[-1]) in str(s.value) for s in [*at.success, *at.warning])  # escaped
    # the photo is the selected image, and is in the history with the batch
    assert at.selectbox(key="inspect_selected").value == 6
    workspace = tmp_path / "workspace"
    assert len(history_names(workspace)) == 7 and names[-1] in history_names(workspace)

    at.run()                                   # a rerun keeps the photo but does not re-score
    assert len(rows(at)) == 7 and len(predict_calls) == 3   # 3rd: model.predict above

    other = sorted((demo_env / "test").glob("*/*.png"))[0]
    at.camera_input(key="inspect_camera").set_value(("image.jpg", jpeg(other),
                                                     "image/jpeg")).run()
    assert len(rows(at)) == 8 and len(set(rows(at))) == 8
    assert at.session_state["inspection"].label == "demo test set + 2 photos"
    assert len(history_names(workspace)) == 8

    at.camera_input(key="inspect_camera").set_value(("image.jpg", b"\xff\xd8 not a jpeg",
                                                     "image/jpeg")).run()
    assert not t.exceptions(at)
    assert any("None of the images could be read" in e for e in t.errors(at))
    assert len(rows(at)) == 8 and len(history_names(workspace)) == 8


def test_a_photo_alone_starts_results() -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    at = t.open_page(at, "inspect")
    at.toggle(key="inspect_camera_on").set_value(True).run()
    image = np.full((128, 128, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    at.camera_input(key="inspect_camera").set_value(("image.jpg", buf.tobytes(),
                                                     "image/jpeg")).run()
    assert not t.exceptions(at)
    assert len(rows(at)) == 1 and at.session_state["inspection"].label == "camera"
