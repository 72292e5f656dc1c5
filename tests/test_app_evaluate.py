"""AppTest: Evaluate page (demo set, MVTec zip, bad zips, applying recommended thresholds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector_ui import testing as t

pytestmark = pytest.mark.usefixtures("demo_env", "scratch_tempdir")

METRICS = ("Image AUROC", "Pixel AUROC", "AUPRO (FPR ≤ 0.3)", "Image F1 (best)",
           "Pixel F1 (best)")


def evaluated():  # type: ignore[no-untyped-def]
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    at = t.open_page(at, "evaluate")
    return at.button(key="eval_demo").click().run()


def test_evaluate_demo_set_shows_metrics_and_curves() -> None:
    at = evaluated()
    assert not t.exceptions(at) and not t.errors(at)
    for label in METRICS:
        value = t.metric(at, label)
        assert value == "—" or 0.0 <= float(value) <= 1.0
    assert float(t.metric(at, "Image AUROC")) >= 0.5
    charts = at.get("plotly_chart")
    assert len(charts) == 2, "ROC and PR curves"
    per_type = [d.value for d in at.dataframe if "defect type" in d.value.columns][0]
    assert set(per_type["defect type"]) == {"good", "scratch", "stain", "hole"}
    good = per_type[per_type["defect type"] == "good"]["image AUROC"].iloc[0]
    assert good == "n/a"                            # one class only; it read "None"
    assert at.download_button(key="eval_json") is not None
    rep = at.session_state["evaluation"].report
    assert rep.n_images == 6


def test_apply_recommended_thresholds_moves_inspect_sliders() -> None:
    at = evaluated()
    rep = at.session_state["evaluation"].report
    at.button(key="eval_apply").click().run()
    assert not t.exceptions(at)
    assert any("Inspect now uses" in s.value for s in at.success)
    at = t.open_page(at, "inspect")
    at.button(key="inspect_demo").click().run()
    assert not t.exceptions(at)
    assert at.slider(key="insp_image_thr").value == pytest.approx(rep.image_f1_threshold)
    assert at.slider(key="insp_pixel_thr").value == pytest.approx(rep.pixel_f1_threshold)
    assert t.metric(at, "Image threshold") == f"{rep.image_f1_threshold:.3f}"


def test_evaluate_uploaded_mvtec_zip_and_train_first(demo: Path, tmp_path: Path) -> None:
    at = t.open_page(t.new_app(), "evaluate")
    assert at.checkbox(key="eval_fit_first").value is True, "no model yet: train first"
    t.use_small_settings(at, "evalfit")
    archive = t.folder_zip(demo, prefix="plates/")
    at.file_uploader(key="eval_zip").set_value(("plates.zip", archive, "application/zip"))
    at.run()
    at.button(key="eval_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at) is not None and t.slot(at).model.config.crop == t.SMALL["crop"]
    assert at.session_state["evaluation"].label == "plates.zip"
    assert float(t.metric(at, "Image AUROC")) >= 0.0
    assert not [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith("padim-insp")]


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        (("flat.zip", t.zip_bytes({"a.png": b"x" * 10}), "application/zip"), "flat.zip"),
        (("empty.zip", t.zip_bytes({}), "application/zip"), "empty.zip"),
        (("evil.zip", t.zip_bytes({"../../x.png": b"x"}), "application/zip"), "evil.zip"),
        (("set.zip", b"this is not a zip", "application/zip"), "set.zip"),
    ],
)
def test_bad_zip_keeps_previous_report(upload: tuple[str, bytes, str], expected: str) -> None:
    at = evaluated()
    before = at.session_state["evaluation"]
    at.checkbox(key="eval_fit_first").set_value(False)
    at.file_uploader(key="eval_zip").set_value(upload).run()
    at.button(key="eval_go").click().run()
    assert not t.exceptions(at)
    errors = t.errors(at)
    assert any(expected in e for e in errors), errors
    assert not any("/tmp" in e or "padim-inspector-" in e for e in errors), errors
    assert at.session_state["evaluation"] is before
    assert t.metric(at, "Image AUROC") == f"{before.report.image_auroc:.3f}"
