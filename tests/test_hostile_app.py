"""Hostile inputs through the Streamlit app's upload paths (AppTest, one simulated session).

Same table as the API and CLI suites (``tests/hostile_inputs.py``), fed to the real upload
widgets: the Train page's image uploader (files and zips), its model-file loader, and the
Inspect page's uploader. For every bad upload the rules are:

* no uncaught exception on the page;
* an ``st.error`` whose text names the file (or ``archive: member``) and the problem;
* the session's model (slot A) and its inspection results stay exactly as they were
  (same objects), so one bad file never costs the user their work;
* scratch folders for zips are removed, and nothing is written outside them.

Odd but valid images (16-bit, RGBA, palette, CMYK, GIF, TIFF, EXIF-rotated, ...) are
accepted and scored. To keep the file fast, one trained session receives many bad uploads
in a row (checking after each one) instead of training a session per case.

Decision on "a model file for another backbone": a model file is self-describing, so the
app uses the backbone the file names and shows it on the model card (never a silent swap
with the backbone selected for training); it refuses the file with an ``st.error`` when that
backbone's weights are not on this machine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hostile_inputs as h
import pytest

from inspector_ui import testing as t
from padim_core import PadimModel
from padim_core.backbones import backbone_status

N_DEMO_TRAIN = 8  # training images in the shared ``demo`` set (conftest.py)
OCTET = "application/octet-stream"

pytestmark = pytest.mark.usefixtures("demo_env", "scratch_tempdir")


def shrink_limit(monkeypatch: pytest.MonkeyPatch, name: str, value: int) -> None:
    """Set limit ``name`` in limits.py and wherever a module imported it by name."""
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(("padim_core", "inspector_ui")) and hasattr(module, name):
            monkeypatch.setattr(module, name, value)


def mime(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower()
    return {"png": "image/png", "jpg": "image/jpeg", "zip": "application/zip"}.get(suffix,
                                                                                   OCTET)


def upload(case: h.Case | tuple[str, bytes]) -> tuple[str, bytes, str]:
    name, data = case.pair if isinstance(case, h.Case) else case
    return name, data, mime(name)


def trained_session() -> Any:
    """A session on the Train page with a model trained on the demo set (small settings)."""
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    assert not t.exceptions(at) and t.slot(at) is not None
    return at


def assert_error_names(at: Any, name: str, fragment: str) -> None:
    """No exception, and one st.error naming ``name`` and containing ``fragment``."""
    assert not t.exceptions(at), t.exceptions(at)
    errors = t.errors(at)
    hits = [e for e in errors if name in e and fragment in e.lower()]
    assert hits, f"no st.error naming {name!r} with {fragment!r}: {errors}"
    assert all("Traceback" not in e for e in errors)


def train_upload(at: Any, files: list[tuple[str, bytes, str]]) -> Any:
    at.file_uploader(key="trainA_files").set_value(files).run()
    return at.button(key="trainA_go").click().run()


def load_model_upload(at: Any, name: str, data: bytes) -> Any:
    at.file_uploader(key="loadA_file").set_value((name, data, OCTET)).run()
    return at.button(key="loadA_go").click().run()


def inspect_upload(at: Any, files: list[tuple[str, bytes, str]]) -> Any:
    at.file_uploader(key="inspect_files").set_value(files).run()
    return at.button(key="inspect_go").click().run()


def scratch_left(tmp_path: Path) -> list[str]:
    return [p.name for p in (tmp_path / "tmp").iterdir()]


def escaped(tmp_path: Path) -> list[str]:
    return [p.as_posix() for p in tmp_path.rglob("escape*.png")]


# --------------------------------------------------------------------------- images


def test_training_upload_with_every_image_case(demo: Path) -> None:
    """All cases at once with the good demo images: bad ones named, the rest trained on."""
    at = t.use_small_settings(t.open_page(t.new_app(), "train"))
    files = [*t.train_uploads(demo), *(upload(c) for c in h.image_cases())]
    at = train_upload(at, files)
    assert not t.exceptions(at), t.exceptions(at)
    slot = t.slot(at)
    assert slot is not None
    assert slot.model.n_train_images_ == N_DEMO_TRAIN + len(h.accepted_images())
    assert {n for n, _ in slot.skipped} == {c.name for c in h.rejected_images()}
    assert not t.errors(at), t.errors(at)                # it trained: warnings, not errors
    for case in h.rejected_images():
        assert any(case.name in w and case.fragment in w.lower() for w in t.warnings(at)), \
            (case.name, t.warnings(at))


def test_bad_training_uploads_keep_the_model(demo: Path) -> None:
    """Each bad image alone (nothing usable), then too little data: error, model kept."""
    at = trained_session()
    before = t.slot(at)
    for case in h.rejected_images():
        at = train_upload(at, [upload(case)])
        assert_error_names(at, case.name, case.fragment)
        assert t.slot(at) is before, case.id
    one_good = t.train_uploads(demo)[:1]
    at = train_upload(at, [*one_good, upload(h.image_case("truncated_png"))])
    assert_error_names(at, "cut.png", "truncated")
    assert any("need at least 2 readable images, got 1" in e for e in t.errors(at)), t.errors(at)
    assert t.slot(at) is before
    assert t.metric(at, "Training images") == str(N_DEMO_TRAIN)


def test_few_and_identical_training_images_train_and_warn(demo: Path) -> None:
    """Fewer images than d: trains, warns. All identical: trains, warns, finite thresholds."""
    at = t.use_small_settings(t.open_page(t.new_app(), "train"))
    at = train_upload(at, t.train_uploads(demo)[:4])
    assert not t.exceptions(at) and not t.errors(at), t.errors(at)
    assert t.slot(at).model.n_train_images_ == 4
    warnings = [w.value for w in at.warning]
    assert any(f"only 4 training images for d={t.SMALL['d']}" in w for w in warnings), warnings
    same = t.train_uploads(demo)[0][1]
    at = train_upload(at, [(f"same_{i}.png", same, "image/png") for i in range(6)])
    assert not t.exceptions(at) and not t.errors(at), t.errors(at)
    model = t.slot(at).model
    assert model.n_train_images_ == 6
    assert float(t.metric(at, "Image threshold")) > 0
    assert any("all score the same" in w.value for w in at.warning)


def test_inspect_uploads_bad_ones_keep_results_odd_ones_are_scored(demo: Path) -> None:
    at = t.open_page(trained_session(), "inspect")
    at.button(key="inspect_demo").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    results = at.session_state["inspection"]
    slot = t.slot(at)
    for case in h.rejected_images():
        at = inspect_upload(at, [upload(case)])
        assert_error_names(at, case.name, case.fragment)
        assert at.session_state["inspection"] is results, case.id
        assert t.slot(at) is slot
    at = inspect_upload(at, [upload(c) for c in h.accepted_images()])
    assert not t.exceptions(at) and not t.errors(at), t.errors(at)
    scored = at.session_state["inspection"].result.names
    assert sorted(scored) == sorted(c.name for c in h.accepted_images())
    assert t.metric(at, "Images") == str(len(h.accepted_images()))


def test_image_upload_over_the_cap(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = trained_session()
    before = t.slot(at)
    shrink_limit(monkeypatch, "MAX_UPLOAD_MB", 1)
    big = ("big.png", h.png(1) + bytes(2 * 1024 * 1024), "image/png")
    at = train_upload(at, [big])
    assert_error_names(at, "big.png", "1 mb upload limit")
    assert t.slot(at) is before


# --------------------------------------------------------------------------- archives


def test_archive_uploads(tmp_path: Path) -> None:
    """Rejected archives: error naming the archive, model kept. Accepted ones: unsafe,
    nested and non-image members named as ``archive: member``, the images trained on.
    Nothing is left in (or written beside) the scratch folder."""
    at = trained_session()
    for case in h.archive_cases():
        before = t.slot(at)
        at = train_upload(at, [upload(case)])
        assert not t.exceptions(at), (case.id, t.exceptions(at))
        if case.outcome == "rejected":
            assert_error_names(at, case.name, case.fragment)
            assert t.slot(at) is before, case.id
        else:
            slot = t.slot(at)
            assert slot is not before, (case.id, t.errors(at))
            assert slot.model.n_train_images_ == 3, case.id
            skipped = {n: p for n, p in slot.skipped}
            for member, fragment in case.skipped:
                key = f"{case.name}: {member}"
                assert fragment in skipped.get(key, ""), (case.id, key, slot.skipped)
                assert any(key in w for w in t.warnings(at)), (case.id, key, t.warnings(at))
        assert scratch_left(tmp_path) == [], case.id
        assert escaped(tmp_path) == [], case.id
    assert not Path("/abs/escape.png").exists()


def test_zip_bomb_on_inspect_keeps_results(tmp_path: Path) -> None:
    at = t.open_page(trained_session(), "inspect")
    at.button(key="inspect_demo").click().run()
    results = at.session_state["inspection"]
    case = h.archive_case("zip_bomb")
    at = inspect_upload(at, [upload(case)])
    assert_error_names(at, case.name, case.fragment)
    assert at.session_state["inspection"] is results
    assert scratch_left(tmp_path) == []


# --------------------------------------------------------------------------- model files


def test_bad_model_files_keep_the_model_and_results(tmp_path: Path) -> None:
    """Every damaged / foreign / tampered model file, then pickles: error, nothing lost."""
    at = t.open_page(trained_session(), "inspect")
    at.button(key="inspect_demo").click().run()
    results = at.session_state["inspection"]
    at = t.open_page(at, "train")
    before = t.slot(at)
    good = before.model.to_bytes()
    tampered = [
        h.Case("config_wrong_type", "type.safetensors",
               h.with_meta(good, lambda m: m["config"].update(image_size="abc")), "rejected",
               "metadata"),
        h.Case("threshold_nan", "nan_thr.safetensors",
               h.with_meta(good, lambda m: m.update(image_threshold=float("nan"))), "rejected",
               "not finite"),
    ]
    for case in [*h.model_file_cases(good), *tampered]:
        at = load_model_upload(at, case.name, case.data)
        fragment = "empty" if not case.data else case.fragment
        assert_error_names(at, case.name, fragment)
        assert t.slot(at) is before, case.id
    for build in (h.malicious_pickle, h.malicious_torch_zip):
        marker = tmp_path / f"pwned_{build.__name__}"
        name, data = build(marker)
        at = load_model_upload(at, name, data)
        assert_error_names(at, name, "not a padim inspector model")
        assert t.slot(at) is before
        assert not marker.exists(), f"{build.__name__} payload ran"
    assert at.session_state["inspection"] is results


def test_model_upload_over_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    at = trained_session()
    before = t.slot(at)
    shrink_limit(monkeypatch, "MAX_MODEL_UPLOAD_MB", 1)
    data = before.model.to_bytes()
    data += bytes(2 * 1024 * 1024)
    at = load_model_upload(at, "big.safetensors", data)
    assert_error_names(at, "big.safetensors", "upload limit")
    assert t.slot(at) is before


def test_model_file_for_another_backbone(demo: Path) -> None:
    """The file's backbone is used and shown; one whose weights are absent is refused."""
    names = [n for n, _, _ in t.train_uploads(demo)[:4]]
    data = [d for _, d, _ in t.train_uploads(demo)[:4]]
    resnet = PadimModel(backbone="resnet18", weights="random", d=16, image_size=64, crop=64,
                        device="cpu").fit(data, names=names)
    at = trained_session()
    assert t.metric(at, "Backbone") == "efficientnet_lite0"
    at = load_model_upload(at, "resnet.safetensors", resnet.to_bytes())
    assert not t.exceptions(at) and not t.errors(at), t.errors(at)
    assert t.metric(at, "Backbone") == "resnet18"
    assert t.slot(at).model.config.backbone == "resnet18"
    if any(s.name == "resnet18" and s.available for s in backbone_status()):
        return
    loaded = t.slot(at)
    pretrained = h.with_meta(resnet.to_bytes(), lambda m: m["config"].update(weights=None))
    at = load_model_upload(at, "resnet_imagenet.safetensors", pretrained)
    assert_error_names(at, "resnet18", "weights")
    assert t.slot(at) is loaded


def test_model_for_absent_backbone_error_names_the_upload(demo: Path) -> None:
    if any(s.name == "resnet18" and s.available for s in backbone_status()):
        pytest.skip("resnet18 weights are installed here")
    names = [n for n, _, _ in t.train_uploads(demo)[:4]]
    data = [d for _, d, _ in t.train_uploads(demo)[:4]]
    resnet = PadimModel(backbone="resnet18", weights="random", d=16, image_size=64, crop=64,
                        device="cpu").fit(data, names=names)
    pretrained = h.with_meta(resnet.to_bytes(), lambda m: m["config"].update(weights=None))
    at = load_model_upload(t.open_page(t.new_app(), "train"), "resnet_imagenet.safetensors",
                           pretrained)
    assert_error_names(at, "resnet_imagenet.safetensors", "resnet18")
    assert not any("--weights" in e for e in t.errors(at)), t.errors(at)


def test_formula_upload_names_are_not_formulas_in_csv() -> None:
    import csv
    import io

    from inspector_ui import views

    at = t.open_page(trained_session(), "inspect")
    at = inspect_upload(at, [(n, h.png(i), "image/png") for i, n in
                             enumerate(h.FORMULA_NAMES)])
    assert not t.exceptions(at) and not t.errors(at), t.errors(at)
    res = at.session_state["inspection"].result
    assert sorted(res.names) == sorted(h.FORMULA_NAMES)  # shown as uploaded, on screen
    table = views.results_table(res.names, res.scores, res.image_threshold)
    rows = list(csv.reader(io.StringIO(views.table_csv(table).decode("utf-8"))))
    cells = [c for row in rows for c in row]
    assert not [c for c in cells if h.is_formula_cell(c)], cells
