"""AppTest: landing page and Train page (demo, uploads, zips, bad uploads, model files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector_ui import testing as t
from padim_core.config import DEFAULTS

# The scratch temp root lets tests check that upload scratch folders are cleaned up.
pytestmark = pytest.mark.usefixtures("demo_env", "scratch_tempdir")


def scratch_left(tmp_path: Path) -> list[str]:
    return [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("padim-inspector")]


def test_landing_page_leads_to_train() -> None:
    at = t.new_app()
    assert not t.exceptions(at)
    assert at.title[0].value.endswith("PaDiM Inspector")
    text = at.markdown[0].value
    assert "Train" in text and "Inspect" in text and text.count("\n") == 2
    assert any("train" in str(link.proto.page).lower() for link in at.get("page_link"))


def test_train_page_offers_backbones_and_device() -> None:
    at = t.open_page(t.new_app(), "train")
    assert not t.exceptions(at)
    box = at.selectbox(key="trainA_backbone")
    assert box.value == DEFAULTS.backbone == "efficientnet_lite2"
    from padim_core.backbones import backbone_status

    missing = [s for s in backbone_status() if not s.available]
    assert all(name != s.name for s in missing for name in box.options)
    captions = " ".join(c.value for c in at.caption)
    for s in missing:
        assert s.label in captions and "unavailable" in captions
    assert "CPU" in captions or "CUDA" in captions


def test_training_panel_defaults_are_the_engines() -> None:
    from padim_core.config import default_crop

    at = t.open_page(t.new_app(), "train")
    assert at.selectbox(key="trainA_backbone").value == DEFAULTS.backbone
    # d follows the chosen backbone's own default (issue 14: 192 for Lite2, 100 for Lite0)
    assert at.number_input(key=f"trainA_d_{DEFAULTS.backbone}").value == DEFAULTS.d == 192
    assert at.select_slider(key="trainA_size").value == DEFAULTS.image_size
    assert at.radio(key="trainA_resize").value == DEFAULTS.resize
    assert at.radio(key="trainA_upsample").value == DEFAULTS.upsample
    assert at.number_input(key="trainA_top").value == DEFAULTS.score_top_percent
    # padding: no crop widget (the whole image); a square resize offers the centre crop
    assert not [s for s in at.select_slider if s.key.startswith("trainA_crop_")]
    at.radio(key="trainA_resize").set_value("stretch").run()
    assert at.select_slider(key=f"trainA_crop_{DEFAULTS.image_size}").value == \
        default_crop(DEFAULTS.image_size)
    at.select_slider(key="trainA_size").set_value(160).run()
    assert at.select_slider(key="trainA_crop_160").value == default_crop(160)


def test_train_on_demo_shows_model_card(tmp_path: Path, fit_calls: list[int]) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    assert not t.exceptions(at) and not t.errors(at)
    slot = t.slot(at)
    assert slot is not None and slot.model.config.d == t.SMALL["d"]
    assert slot.model.config.crop == t.SMALL["crop"]
    assert t.metric(at, "Training images") == "8"
    assert t.metric(at, "Backbone") == "efficientnet_lite0"
    assert float(t.metric(at, "Image threshold")) > 0
    assert any("trained" in s.value for s in at.success)
    assert at.get("plotly_chart"), "calibration histogram missing"
    assert at.download_button(key="cardA_download") is not None
    assert len(fit_calls) == 1, "one click, one fit (re-runs must not fit again)"


def test_a_message_does_not_move_what_is_below_it() -> None:
    """The "model is ready" message shows on one run only. Streamlit knows unkeyed elements
    (the model-file expander) by position, so the page below must not shift when it goes, or
    an expander the user just opened closes on the next click."""
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    assert any("is ready" in s.value for s in at.success)
    layout = [type(e).__name__ for e in at.main.children.values()]
    at.run()
    assert not at.success
    assert [type(e).__name__ for e in at.main.children.values()] == layout


def test_train_on_uploaded_files_and_zip(demo: Path, tmp_path: Path,
                                         fit_calls: list[int]) -> None:
    at = t.use_small_settings(t.open_page(t.new_app(), "train"))
    files = t.train_uploads(demo)
    at.file_uploader(key="trainA_files").set_value(files).run()
    at.button(key="trainA_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at).model.n_train_images_ == len(files)

    archive = t.zip_bytes({f"good/{name}": data for name, data, _ in files})
    at.file_uploader(key="trainA_files").set_value(("good.zip", archive, "application/zip"))
    at.run()
    at.button(key="trainA_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at).model.n_train_images_ == len(files)
    assert len(fit_calls) == 2
    assert not scratch_left(tmp_path), "per-session scratch folder not cleaned up"


def test_bad_files_are_named_and_skipped(demo: Path) -> None:
    at = t.use_small_settings(t.open_page(t.new_app(), "train"))
    files = t.train_uploads(demo)
    files += [("notes.txt", b"just some text", "text/plain"),
              ("broken.png", files[0][1][:60], "image/png"),
              ("empty.png", b"", "image/png")]
    at.file_uploader(key="trainA_files").set_value(files).run()
    at.button(key="trainA_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)     # it trained: no red boxes
    text = " | ".join(t.warnings(at))
    for name in ("notes.txt", "broken.png", "empty.png"):
        assert name in text
    slot = t.slot(at)
    assert slot is not None and slot.model.n_train_images_ == len(files) - 3
    assert {n for n, _ in slot.skipped} >= {"notes.txt", "broken.png", "empty.png"}


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        (("notes.txt", b"not an image at all", "text/plain"), "notes.txt"),
        (("empty.zip", t.zip_bytes({}), "application/zip"), "empty.zip"),
        (("docs.zip", t.zip_bytes({"readme.txt": b"hello"}), "application/zip"), "docs.zip"),
        (("evil.zip", t.zip_bytes({"../../evil.png": b"x" * 100}), "application/zip"),
         "evil.zip"),
        (("corrupt.zip", b"PK\x03\x04" + b"\x00" * 50, "application/zip"), "corrupt.zip"),
    ],
)
def test_bad_upload_keeps_trained_model(upload: tuple[str, bytes, str], expected: str,
                                        tmp_path: Path) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    before = t.slot(at)
    at.file_uploader(key="trainA_files").set_value([upload]).run()
    at.button(key="trainA_go").click().run()
    assert not t.exceptions(at)
    assert any(expected in e for e in t.errors(at)), t.errors(at)
    assert t.slot(at) is before, "a failed upload must not replace the trained model"
    assert t.metric(at, "Training images") == "8"
    assert not scratch_left(tmp_path)


def test_zip_with_paths_outside_names_the_member(demo: Path) -> None:
    at = t.use_small_settings(t.open_page(t.new_app(), "train"))
    files = t.train_uploads(demo)
    members = {f"ok/{n}": d for n, d, _ in files}
    members["../outside.png"] = files[0][1]
    at.file_uploader(key="trainA_files").set_value([("mixed.zip", t.zip_bytes(members),
                                                     "application/zip")]).run()
    at.button(key="trainA_go").click().run()
    assert not t.exceptions(at)
    assert any("mixed.zip" in w and "outside.png" in w for w in t.warnings(at)), t.warnings(at)
    assert t.slot(at).model.n_train_images_ == len(files)


def test_model_download_and_load_round_trip() -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    model = t.slot(at).model
    data = model.to_bytes()
    other = t.open_page(t.new_app(), "train")
    other.file_uploader(key="loadA_file").set_value(("part.safetensors", data,
                                                     "application/octet-stream")).run()
    other.button(key="loadA_go").click().run()
    assert not t.exceptions(other) and not t.errors(other)
    loaded = t.slot(other)
    assert loaded is not None and "part.safetensors" in loaded.origin
    assert loaded.model.image_threshold_ == pytest.approx(model.image_threshold_)
    assert t.metric(other, "d") == str(t.SMALL["d"])


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("future.safetensors", t.other_version_model(), "version"),
        ("random.safetensors", b"\x00" * 64, "not a PaDiM Inspector model"),
        ("empty.safetensors", b"", "empty"),
    ],
)
def test_bad_model_file_keeps_current_model(name: str, data: bytes, problem: str) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    before = t.slot(at)
    at.file_uploader(key="loadA_file").set_value((name, data, "application/octet-stream"))
    at.run()
    at.button(key="loadA_go").click().run()
    assert not t.exceptions(at)
    assert any(name in e and problem in e for e in t.errors(at)), t.errors(at)
    assert t.slot(at) is before


def test_upload_path_decodes_each_image_once(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed budget (upload training within 1.3x of the CLI fit) rests on this: uploads go
    to the engine as the bytes the browser sent, and each one is decoded exactly once."""
    import padim_core.loading as engine

    decoded: list[object] = []
    real = engine.load_image

    def counting(source, name=None):  # type: ignore[no-untyped-def]
        decoded.append(source)
        return real(source, name)

    monkeypatch.setattr(engine, "load_image", counting)
    at = t.use_small_settings(t.open_page(t.new_app(), "train"))
    files = t.train_uploads(demo)
    at.file_uploader(key="trainA_files").set_value(files).run()
    at.button(key="trainA_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert len(decoded) == len(files)
    assert all(isinstance(s, bytes) for s in decoded), "uploads reach the engine as bytes"


def test_model_for_a_backbone_without_weights_names_the_file(demo: Path) -> None:
    from padim_core import PadimModel
    from padim_core.backbones import backbone_status

    if any(s.name == "resnet18" and s.available for s in backbone_status()):
        pytest.skip("resnet18 weights are installed here")
    data = [d for _, d, _ in t.train_uploads(demo)[:4]]
    resnet = PadimModel(backbone="resnet18", weights="random", d=16, image_size=64, crop=64,
                        device="cpu").fit(data)
    # the same model as if it had been trained with ImageNet weights on another machine
    import json

    import safetensors.numpy

    raw = resnet.to_bytes()
    tensors = safetensors.numpy.load(raw)
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    padim = json.loads(meta["padim"])
    padim["config"]["weights"] = None
    meta["padim"] = json.dumps(padim)
    file = safetensors.numpy.save(tensors, metadata=meta)

    at = t.train_demo(t.open_page(t.new_app(), "train"))
    before = t.slot(at)
    at.file_uploader(key="loadA_file").set_value(("resnet.safetensors", file,
                                                  "application/octet-stream")).run()
    at.button(key="loadA_go").click().run()
    assert not t.exceptions(at)
    hits = [e for e in t.errors(at) if "resnet.safetensors" in e and "resnet18" in e]
    assert hits and not any("--weights" in e for e in hits), t.errors(at)
    assert t.slot(at) is before
