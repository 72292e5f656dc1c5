"""AppTest: per-session isolation and the process-wide backbone cache; upload helpers."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st

from inspector_ui import resources, uploads, views
from inspector_ui import testing as t

pytestmark = pytest.mark.usefixtures("demo_env")


def test_sessions_do_not_share_models_or_results() -> None:
    alice = t.train_demo(t.open_page(t.new_app(), "train"))
    alice = t.open_page(alice, "inspect")
    alice.button(key="inspect_demo").click().run()
    bob = t.open_page(t.new_app(), "inspect")
    assert not t.exceptions(bob)
    assert t.slot(bob) is None and "inspection" not in bob.session_state
    # Alice's model is in the shared library for Bob to open, not open in his session
    assert any("No model open. The library above holds 1 version(s)" in i.value
               for i in bob.info)
    bob = t.train_demo(t.open_page(bob, "train"))
    assert t.slot(bob).token != t.slot(alice).token
    # Bob moving his threshold does not move Alice's
    bob = t.open_page(bob, "inspect")
    bob.button(key="inspect_demo").click().run()
    bob.slider(key="insp_image_thr").set_value(bob.slider(key="insp_image_thr").max).run()
    alice.run()
    assert alice.slider(key="insp_image_thr").value == pytest.approx(
        t.slot(alice).model.image_threshold_)


def test_backbone_is_loaded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = resources.load_feature_extractor

    def counting(name, weights=None, device="auto"):  # type: ignore[no-untyped-def]
        calls.append(name)
        return real(name, weights=weights, device=device)

    monkeypatch.setattr(resources, "load_feature_extractor", counting)
    st.cache_resource.clear()
    first = t.train_demo(t.open_page(t.new_app(), "train"))
    second = t.train_demo(t.open_page(t.new_app(), "train"))
    assert calls == ["efficientnet_lite0"]
    assert t.slot(first).model.extractor is t.slot(second).model.extractor
    # a loaded model file gets the shared backbone too
    third = t.open_page(t.new_app(), "train")
    third.file_uploader(key="loadA_file").set_value(
        ("m.safetensors", t.slot(first).model.to_bytes(), "application/octet-stream")).run()
    third.button(key="loadA_go").click().run()
    assert t.slot(third).model.extractor is t.slot(first).model.extractor
    assert calls == ["efficientnet_lite0"]


def test_collect_images_keeps_bytes_and_names(demo: Path) -> None:
    files = [(n, d) for n, d, _ in t.train_uploads(demo)]
    batch = uploads.collect_images([*files, files[0]])
    assert len(batch) == len(files) + 1
    assert batch.names[-1] == files[0][0].replace(".png", " (2).png"), "names stay unique"
    assert batch.data[0] is files[0][1], "uploads are passed on as-is, not copied or decoded"
    assert not batch.problems


def test_collect_images_from_zip_reports_bad_members(demo: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    files = {f"imgs/{n}": d for n, d, _ in t.train_uploads(demo)[:3]}
    files["../escape.png"] = b"x"
    files["notes.txt"] = b"hello"
    batch = uploads.collect_images([("set.zip", t.zip_bytes(files)), ("e.png", b"")])
    assert batch.names == [f"set/{n}" for n in sorted(files) if n.startswith("imgs/")]
    problems = dict(batch.problems)
    assert "e.png" in problems and "empty" in problems["e.png"]
    assert any("escape.png" in name for name in problems)
    assert any("notes.txt" in name for name in problems)
    assert list(tmp_path.iterdir()) == [], "the scratch folder is removed"


def test_results_table_and_overlay_zip_names() -> None:
    scores = np.array([1.0, 3.0, 2.0])
    table = views.results_table(["a.png", "b/../c.png", "a.png"], scores, 2.0)
    assert table["verdict"].tolist() == ["OK", "NG", "NG"]  # NG at or above the threshold
    np.testing.assert_allclose(table["normalized_score"], [0.5, 1.5, 1.0])
    images = np.zeros((3, 32, 32, 3), np.uint8)
    maps = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    data = views.overlays_zip(table["name"].tolist(), images, maps, table,
                              views.Display(0.0, 1.0), 0.5)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    assert len(set(names)) == 4 and all(".." not in n for n in names)
    lo, hi = views.shared_scale([maps[0], maps[1] * 3])
    assert lo == pytest.approx(float(min(maps[0].min(), maps[1].min() * 3)))
    assert hi == pytest.approx(float(max(maps[0].max(), maps[1].max() * 3)))


def test_csv_cells_are_not_spreadsheet_formulas() -> None:
    names = ["=HYPERLINK(1).png", "+1+1.png", "-2+3.png", "@SUM(1).png", "plain.png"]
    table = views.results_table(names, np.arange(5.0) + 1, 2.0)
    text = views.table_csv(table).decode("utf-8")
    import csv

    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert "'=HYPERLINK(1).png" in cells and "plain.png" in cells
    assert table["name"].tolist() == names, "the table on screen keeps the real names"
