"""Hostile inputs through the Python API: ``PadimModel.fit`` / ``predict`` / ``load`` /
``from_bytes`` and ``archives.extract_zip``.

The table of inputs lives in ``tests/hostile_inputs.py`` and is shared with the CLI and app
suites. Rules checked here, for every case:

* a bad image is skipped, never fatal: it is listed in ``skipped_`` (fit) or
  ``PredictResult.skipped`` (predict) as ``(file name, one-line problem)``, and the good
  images in the same call are still used; odd but valid formats are converted and used;
* too little usable training data raises ``InvalidInputError`` naming the problem;
* a bad model file raises ``ModelFileError`` whose message starts with the file name, and a
  pickle is never unpickled (a marker file proves the payload did not run);
* archive members never land outside the destination folder.

The bugs this suite found (metadata checks, upload cap, weights paths, zero variance,
Pillow's bomb warning) were fixed in the engine; their tests now guard against regressions.

Tiny settings (d=16, 64 px, one shared EfficientNet-Lite0) keep the file well under 2 min
on 2 CPU cores.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hostile_inputs as h
import numpy as np
import pytest
from PIL import Image

from padim_core import InvalidInputError, ModelFileError, PadimError, PadimModel
from padim_core.archives import extract_zip
from padim_core.backbones import FeatureExtractor, backbone_status, load_feature_extractor
from padim_core.images import is_image_file, iter_image_files, load_image

ROOT = Path(__file__).resolve().parents[1]
TINY = {"backbone": "efficientnet_lite0", "d": 16, "image_size": 64, "crop": 64,
        "device": "cpu"}
N_GOOD = 6

pytestmark = [
    pytest.mark.filterwarnings("ignore:only \\d+ training images:UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


# --------------------------------------------------------------------------- helpers


def shrink_limit(monkeypatch: pytest.MonkeyPatch, name: str, value: int) -> None:
    """Set limit ``name`` to ``value`` in limits.py and wherever a module imported it."""
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(("padim_core", "inspector_ui")) and hasattr(module, name):
            monkeypatch.setattr(module, name, value)


def assert_one_line_naming(message: str, name: str, fragment: str) -> None:
    """The message is one line, starts with (or names) the file and says what is wrong."""
    assert "\n" not in message, message
    assert name in message, f"{name!r} not named in {message!r}"
    assert fragment in message.lower(), f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message


def names_and_data(pairs: list[tuple[str, bytes]]) -> tuple[list[str], list[bytes]]:
    return [n for n, _ in pairs], [d for _, d in pairs]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    """One pretrained EfficientNet-Lite0, shared by every model in this file."""
    return load_feature_extractor("efficientnet_lite0", None, "cpu")


def tiny_model(extractor: FeatureExtractor, **overrides: object) -> PadimModel:
    return PadimModel(**{**TINY, **overrides}, extractor=extractor)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(extractor: FeatureExtractor) -> PadimModel:
    """A model fitted on N_GOOD good images."""
    names, data = names_and_data(h.good_images(N_GOOD))
    return tiny_model(extractor).fit(data, names=names)


@pytest.fixture(scope="module")
def good_bytes(trained: PadimModel) -> bytes:
    return trained.to_bytes()


@pytest.fixture(scope="module")
def resnet_bytes() -> bytes:
    """A model file for ResNet-18 (random weights: no download needed)."""
    names, data = names_and_data(h.good_images(4, start=300))
    model = PadimModel(**{**TINY, "backbone": "resnet18"}, weights="random")
    return model.fit(data, names=names).to_bytes()


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("case", h.rejected_images(), ids=lambda c: c.id)
def test_bad_image_is_skipped_by_predict(trained: PadimModel, case: h.Case) -> None:
    good_name, good = h.good_images(1, start=900)[0]
    started = time.perf_counter()
    res = trained.predict([good, case.data], names=[good_name, case.name])
    assert time.perf_counter() - started < 10, "a bad header must be refused before decoding"
    assert res.names == [good_name] and np.isfinite(res.scores).all()
    assert [name for name, _ in res.skipped] == [case.name]
    assert_one_line_naming(f"{case.name}: {res.skipped[0][1]}", case.name, case.fragment)


@pytest.mark.parametrize("case", h.rejected_images(), ids=lambda c: c.id)
def test_bad_image_error_names_the_file(case: h.Case) -> None:
    with pytest.raises(InvalidInputError) as err:
        load_image(case.data, case.name)
    assert err.value.source == case.name
    assert_one_line_naming(str(err.value), case.name, case.fragment)


@pytest.mark.parametrize("case", h.accepted_images(), ids=lambda c: c.id)
def test_odd_but_valid_image_is_converted_and_scored(trained: PadimModel, case: h.Case) -> None:
    res = trained.predict([case.data], names=[case.name])
    assert res.skipped == []
    assert res.names == [case.name]
    assert res.images.shape == (1, 64, 64, 3) and res.images.dtype == np.uint8
    assert res.maps.shape == (1, 64, 64) and np.isfinite(res.maps).all()
    assert np.isfinite(res.scores).all()


def test_conversions_keep_the_content(trained: PadimModel) -> None:
    """Spot checks that conversion is right, not just silent."""
    rgba = trained.predict([h.image_case("rgba").data]).images[0]
    assert rgba[:12].max() == 0  # alpha 0 (top quarter) -> black
    gray = trained.predict([h.image_case("gray16").data]).images[0].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and gray.max() > 128  # not clipped to 255/257
    gif = load_image(h.image_case("animated_gif").data)
    first = np.asarray(load_image(h.encode(
        Image.fromarray(h.texture(8)).convert("P"), "GIF")))
    assert np.array_equal(gif, first)  # first frame


def test_exif_orientation_is_applied(trained: PadimModel) -> None:
    """Decision: EXIF orientation is applied (the part as the operator saw it).

    The file is stored 64 wide x 32 high, dark left / bright right, with Orientation 6; it
    loads 32 wide x 64 high with the dark half on top, and the model sees it that way too.
    """
    case = h.image_case("exif_rotated")
    pixels = load_image(case.data, case.name)
    assert pixels.shape == (64, 32, 3)
    assert pixels[:28].mean() < 60 and pixels[36:].mean() > 180
    seen = trained.predict([case.data]).images[0]
    assert seen[:28].mean() < 60 and seen[36:].mean() > 180


def test_over_limit_header_gives_no_pillow_warning() -> None:
    case = h.image_case("over_limit_100mp")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(InvalidInputError, match="megapixels"):
            load_image(case.data, case.name)
    assert [str(w.message) for w in seen] == []


def test_fit_skips_and_lists_every_bad_image_and_uses_the_rest(
    extractor: FeatureExtractor,
) -> None:
    goods = h.good_images(N_GOOD, start=400)
    pairs = [*goods, *(c.pair for c in h.image_cases())]
    names, data = names_and_data(pairs)
    model = tiny_model(extractor).fit(data, names=names)
    assert model.n_train_images_ == N_GOOD + len(h.accepted_images())
    skipped = dict(model.skipped_)
    assert set(skipped) == {c.name for c in h.rejected_images()}
    for case in h.rejected_images():
        assert_one_line_naming(f"{case.name}: {skipped[case.name]}", case.name, case.fragment)
    assert math.isfinite(model.image_threshold_) and math.isfinite(model.pixel_threshold_)
    assert model.card()["skipped"] == [list(s) for s in model.skipped_]


def test_unreadable_files_beside_the_images_do_not_change_the_model(
    extractor: FeatureExtractor,
) -> None:
    """The same good images, once alone and once with junk that does not open as an image
    in front of and between them (a zip with notes.txt): the same calibration images, so the
    same thresholds. The seeded split once ran over every input, junk included (and then
    over every input whose header opened, half-copied files included)."""
    goods = h.good_images(20, start=700)
    whole_jpeg = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(whole_jpeg, format="JPEG")
    junk = [("notes.txt", b"camera 3, shift B"), ("empty.png", b""),
            ("fake.png", b"<html>not a picture</html>"), ("Thumbs.png", b"\x00" * 64),
            # half-copied files: their headers open, their data is cut short
            ("cut.png", goods[0][1][: len(goods[0][1]) // 2]),
            ("cut.jpg", whole_jpeg.getvalue()[: len(whole_jpeg.getvalue()) // 2])]
    mixed = [junk[0], *goods[:5], junk[1], junk[4], *goods[5:13], junk[2], junk[3],
             *goods[13:], junk[5]]
    names, data = names_and_data(goods)
    alone = tiny_model(extractor).fit(data, names=names)
    names, data = names_and_data(mixed)
    with_junk = tiny_model(extractor).fit(data, names=names)
    assert {name for name, _ in with_junk.skipped_} == {name for name, _ in junk}
    assert with_junk.n_calibration_images_ == alone.n_calibration_images_ > 0
    assert with_junk.image_threshold_ == alone.image_threshold_
    assert with_junk.pixel_threshold_ == alone.pixel_threshold_
    np.testing.assert_array_equal(with_junk.calibration_scores_, alone.calibration_scores_)


def test_folder_with_bad_files_is_used_and_the_bad_ones_listed(
    extractor: FeatureExtractor, tmp_path: Path,
) -> None:
    """A folder as a user has it: good images, every bad case, a text file, a subfolder."""
    folder = h.write_folder(tmp_path / "parts", [*h.good_images(N_GOOD, start=500),
                                                 *(c.pair for c in h.image_cases())])
    (folder / "README.txt").write_text("camera 3, shift B")
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.png").write_bytes(h.png(1))
    files = iter_image_files(folder)
    assert all(is_image_file(p) for p in files) and "README.txt" not in {p.name for p in files}
    model = tiny_model(extractor).fit(files)
    listed = {p.name for p in files}
    bad = {c.name for c in h.rejected_images()} & listed
    assert {name for name, _ in model.skipped_} == bad
    assert model.n_train_images_ == len(listed) - len(bad)
    res = model.predict(files)
    assert {name for name, _ in res.skipped} == bad and len(res.names) == len(listed) - len(bad)


# --------------------------------------------------------------------------- training data


def test_fit_with_no_images(extractor: FeatureExtractor) -> None:
    with pytest.raises(InvalidInputError, match="no images given"):
        tiny_model(extractor).fit([])


def test_fit_with_no_usable_image_names_the_first_bad_file(extractor: FeatureExtractor) -> None:
    bad = h.rejected_images()[:3]
    with pytest.raises(InvalidInputError) as err:
        tiny_model(extractor).fit([c.data for c in bad], names=[c.name for c in bad])
    message = str(err.value)
    assert "\n" not in message
    assert "need at least 2 readable images, got 0" in message
    assert bad[0].name in message and "3 unreadable" in message


def test_fit_with_one_usable_image(extractor: FeatureExtractor) -> None:
    pairs = [*h.good_images(1, start=600), h.empty_file()]
    names, data = names_and_data(pairs)
    with pytest.raises(InvalidInputError, match=r"need at least 2 readable images, got 1.*empty"):
        tiny_model(extractor).fit(data, names=names)


def test_fewer_images_than_d_fits_and_warns(extractor: FeatureExtractor) -> None:
    names, data = names_and_data(h.good_images(4, start=700))
    with pytest.warns(UserWarning, match="only 4 training images for d=16"):
        model = tiny_model(extractor).fit(data, names=names)
    assert any("only 4 training images" in w for w in model.warnings_)
    res = model.predict(data)
    assert np.isfinite(res.maps).all() and np.isfinite(res.scores).all()
    assert math.isfinite(model.image_threshold_)


@pytest.mark.parametrize("kind", ["textured", "flat"])
def test_identical_images_zero_variance(extractor: FeatureExtractor, kind: str) -> None:
    """Every training image the same: zero variance, the eps regularization carries the fit."""
    one = h.png(42) if kind == "textured" else h.encode(
        Image.new("RGB", (h.SIDE, h.SIDE), (128, 128, 128)), "PNG")
    model = tiny_model(extractor).fit([one] * 8)
    assert any("all score the same" in w for w in model.warnings_), model.warnings_
    res = model.predict([one, h.png(43)])
    assert np.isfinite(res.maps).all() and np.isfinite(res.scores).all()
    assert math.isfinite(model.image_threshold_) and math.isfinite(model.pixel_threshold_)
    assert res.scores[1] > res.scores[0]  # a different image is further from "normal"
    again = PadimModel.from_bytes(model.to_bytes(), extractor=extractor)
    assert np.allclose(again.predict([one]).scores, res.scores[:1], atol=1e-2)


def test_identical_images_training_image_is_not_ng(extractor: FeatureExtractor) -> None:
    one = h.png(42)
    model = tiny_model(extractor).fit([one] * 8)
    assert not model.predict([one]).verdicts()[0]


def test_distinct_images_are_not_called_identical(trained: PadimModel) -> None:
    assert trained.n_calibration_images_ == 1
    assert not any("all score the same" in w for w in trained.warnings_), trained.warnings_


# --------------------------------------------------------------------------- model files


def _model_case_ids() -> list[str]:
    return ["empty_model", "tiny_model", "short_text_as_model", "truncated_model",
            "text_as_model", "huge_header_length", "lying_offsets", "other_program",
            "other_version",
            "broken_metadata", "missing_config", "unknown_backbone", "grid_mismatch",
            "d_mismatch", "tampered_shape", "tampered_dtype", "missing_tensor", "nan_tensor",
            "bad_channel_index"]


def model_case(good: bytes, case_id: str) -> h.Case:
    return next(c for c in h.model_file_cases(good) if c.id == case_id)


def test_model_case_list_is_complete(good_bytes: bytes) -> None:
    assert [c.id for c in h.model_file_cases(good_bytes)] == _model_case_ids()


@pytest.mark.parametrize("case_id", _model_case_ids())
def test_bad_model_bytes_are_refused_naming_the_file(good_bytes: bytes, case_id: str) -> None:
    case = model_case(good_bytes, case_id)
    with pytest.raises(ModelFileError) as err:
        PadimModel.from_bytes(case.data, name=case.name)
    assert err.value.source == case.name
    assert_one_line_naming(str(err.value), case.name, case.fragment)


@pytest.mark.parametrize("case_id", _model_case_ids())
def test_bad_model_file_is_refused_naming_the_file(
    good_bytes: bytes, case_id: str, tmp_path: Path,
) -> None:
    case = model_case(good_bytes, case_id)
    path = tmp_path / case.name
    path.write_bytes(case.data)
    with pytest.raises(ModelFileError) as err:
        PadimModel.load(path)
    assert err.value.source == str(path)
    assert_one_line_naming(str(err.value), case.name, case.fragment)


def test_good_model_file_round_trips(good_bytes: bytes, trained: PadimModel,
                                     extractor: FeatureExtractor, tmp_path: Path) -> None:
    """Control for the table above: the untampered bytes load and predict the same."""
    path = tmp_path / "good.safetensors"
    path.write_bytes(good_bytes)
    probe = [h.png(1)]
    for model in (PadimModel.load(path, extractor=extractor),
                  PadimModel.from_bytes(good_bytes, extractor=extractor)):
        assert np.allclose(model.predict(probe).scores, trained.predict(probe).scores)


def test_missing_model_file_and_folder(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.safetensors", tmp_path):
        with pytest.raises(ModelFileError) as err:
            PadimModel.load(path)
        assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("build", [h.malicious_pickle, h.malicious_torch_zip],
                         ids=["pickle", "torch_save_zip"])
def test_pickle_renamed_safetensors_is_refused_unexecuted(build: object, tmp_path: Path) -> None:
    import torch

    # Control: the payload is live: unpickling it does create its marker.
    control = tmp_path / "control"
    _, live = build(control)  # type: ignore[operator]
    if build is h.malicious_pickle:
        pickle.loads(live)  # noqa: S301 - the point of the control
    else:
        torch.load(io.BytesIO(live), weights_only=False)
    assert control.exists()

    marker = tmp_path / "pwned"
    name, data = build(marker)  # type: ignore[operator]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelFileError) as err:
        PadimModel.load(path)
    assert_one_line_naming(str(err.value), name, "not a padim inspector model")
    with pytest.raises(ModelFileError) as err:
        PadimModel.from_bytes(data, name=name)
    assert_one_line_naming(str(err.value), name, "not a padim inspector model")
    # The rule for backbone weights (torch.load with weights_only=True) refuses it too.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(data), weights_only=True)
    assert not marker.exists()


def test_model_file_over_the_size_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      good_bytes: bytes) -> None:
    """The disk cap is checked before reading (limit shrunk to 1 MB; a 3 MB sparse file)."""
    shrink_limit(monkeypatch, "MAX_MODEL_FILE_MB", 1)
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as handle:
        handle.write(good_bytes[:1024])
        handle.truncate(3 * 1024 * 1024)
    with pytest.raises(ModelFileError) as err:
        PadimModel.load(path)
    assert str(err.value) == f"{path}: 3 MB exceeds the 1 MB limit"


def test_model_bytes_over_the_upload_cap(monkeypatch: pytest.MonkeyPatch,
                                         good_bytes: bytes) -> None:
    shrink_limit(monkeypatch, "MAX_MODEL_UPLOAD_MB", 1)
    data = good_bytes + bytes(2 * 1024 * 1024 - len(good_bytes) % 8)
    try:
        PadimModel.from_bytes(data, name="big.safetensors")
    except ModelFileError as err:
        assert_one_line_naming(str(err), "big.safetensors", "limit")
    else:
        raise AssertionError("2 MB of model bytes accepted under a 1 MB upload cap")


# ---- another backbone


def test_model_for_another_backbone_says_which(resnet_bytes: bytes) -> None:
    """A model file is self-describing: loading it gives its own backbone, never a silent
    swap. Refusing it where another backbone is *expected* is the caller's check (the app
    and CLI compare ``model.config.backbone`` with their selection)."""
    model = PadimModel.from_bytes(resnet_bytes, name="resnet.safetensors")
    assert model.config.backbone == "resnet18"
    assert model.card()["backbone"] == "resnet18"
    assert model.weights_origin_.startswith("random")
    assert np.isfinite(model.predict([h.png(1)]).scores).all()


def test_model_for_another_backbone_refuses_a_mismatched_extractor(
    resnet_bytes: bytes, extractor: FeatureExtractor,
) -> None:
    with pytest.raises(InvalidInputError) as err:
        PadimModel.from_bytes(resnet_bytes, name="resnet.safetensors", extractor=extractor)
    assert "resnet18" in str(err.value) and "efficientnet_lite0" in str(err.value)


def test_model_for_another_backbone_error_names_the_file(
    resnet_bytes: bytes, extractor: FeatureExtractor,
) -> None:
    with pytest.raises(InvalidInputError) as err:
        PadimModel.from_bytes(resnet_bytes, name="resnet.safetensors", extractor=extractor)
    assert isinstance(err.value, ModelFileError)
    assert_one_line_naming(str(err.value), "resnet.safetensors", "resnet18")


def test_model_whose_backbone_weights_are_absent(resnet_bytes: bytes) -> None:
    """A file for a backbone with no weights on this machine: a clear error at first use."""
    if any(s.name == "resnet18" and s.available for s in backbone_status()):
        pytest.skip("resnet18 weights are installed here")
    data = h.with_meta(resnet_bytes, lambda m: m["config"].update(weights=None))
    model = PadimModel.from_bytes(data, name="resnet.safetensors")
    with pytest.raises(PadimError) as err:
        model.predict([h.png(1)])
    assert "resnet18" in str(err.value) and "\n" not in str(err.value)


# ---- tampered metadata the validator does not cover (bugs)


def _cfg(key: str, value: object):  # noqa: ANN202 - small local factory
    return lambda m: m["config"].update({key: value})


def _meta(key: str, value: object):  # noqa: ANN202
    return lambda m: m.update({key: value})


TAMPERED_METADATA = {
    "config_out_of_range": _cfg("image_size", 100_000),
    "config_bad_crop": _cfg("crop", 4),
    "config_wrong_type": _cfg("image_size", "abc"),
    "seed_wrong_type": _cfg("seed", "x"),
    "skipped_not_a_list": _meta("skipped", 5),
    "warnings_not_a_list": _meta("warnings", 5),
    "count_wrong_type": _meta("n_train_images", "abc"),
    "threshold_nan": _meta("image_threshold", float("nan")),
    "threshold_inf": _meta("pixel_threshold", float("inf")),
}


@pytest.mark.parametrize("case_id", list(TAMPERED_METADATA))
def test_tampered_metadata_is_a_model_file_error(good_bytes: bytes, case_id: str) -> None:
    data = h.with_meta(good_bytes, TAMPERED_METADATA[case_id])
    name = f"{case_id}.safetensors"
    with pytest.raises(ModelFileError) as err:
        PadimModel.from_bytes(data, name=name)
    assert_one_line_naming(str(err.value), name, "")


def test_model_naming_a_non_weights_file_as_weights(good_bytes: bytes, tmp_path: Path) -> None:
    """A model file on disk may name its weights file; a non-weights file is one clean line."""
    bogus = tmp_path / "notes.txt"
    bogus.write_text("root:x:0:0:root:/root:/bin/bash\n" * 20)
    path = tmp_path / "w.safetensors"
    path.write_bytes(h.with_meta(good_bytes, _cfg("weights", str(bogus))))
    with pytest.raises(PadimError) as err:
        PadimModel.load(path, device="cpu").predict([h.png(1)])
    assert "\n" not in str(err.value) and str(bogus) in str(err.value)


def test_uploaded_model_never_chooses_a_server_path(good_bytes: bytes, tmp_path: Path) -> None:
    """An upload naming a server file as weights: the path is ignored, defaults are used."""
    marker = tmp_path / "secret.txt"
    marker.write_text("not weights")
    data = h.with_meta(good_bytes, _cfg("weights", str(marker)))
    model = PadimModel.from_bytes(data, name="w.safetensors", device="cpu")
    assert model.config.weights is None
    assert model.predict([h.png(1)]).scores.shape == (1,)


def test_model_naming_missing_weights_file(good_bytes: bytes, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(h.with_meta(good_bytes, _cfg("weights", "/nonexistent/w.pth")))
    model = PadimModel.load(path, device="cpu")
    with pytest.raises(PadimError, match="/nonexistent/w.pth: weights file not found"):
        model.predict([h.png(1)])


# --------------------------------------------------------------------------- archives


def all_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", h.archive_cases(), ids=lambda c: c.id)
def test_archive_case(case: h.Case, tmp_path: Path, trained: PadimModel) -> None:
    """Each archive either unpacks (bad members listed) or is refused with nothing left;
    nothing is ever written outside the per-session folder."""
    outside = tmp_path / "outside"
    dest = outside / "session"
    if case.outcome == "rejected":
        with pytest.raises(InvalidInputError) as err:
            extract_zip(case.data, dest, name=case.name)
        assert err.value.source == case.name
        assert_one_line_naming(str(err.value), case.name, case.fragment)
        assert all_files(outside) == set()
    else:
        result = extract_zip(case.data, dest, name=case.name)
        skipped = dict(result.skipped)
        for member, fragment in case.skipped:
            assert fragment in skipped.get(member, ""), (member, result.skipped)
        assert all(p.resolve().is_relative_to(dest.resolve()) for p in result.files)
        assert {f"session/{n}" for n in all_files(dest)} == all_files(outside)
        res = trained.predict(result.files)
        assert len(res.names) >= 3 and np.isfinite(res.scores).all()
        bad = {c.name for c in h.rejected_images()}
        assert {name for name, _ in res.skipped} <= bad
    for escaped in ("escape.png", "escape2.png"):
        assert not (tmp_path / escaped).exists() and not (outside / escaped).exists()
    assert not Path("/abs/escape.png").exists()


def test_archive_caps_member_count_and_total_size(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    shrink_limit(monkeypatch, "MAX_ARCHIVE_MEMBERS", 3)
    many = h.zip_of(h.good_images(5))
    with pytest.raises(InvalidInputError, match=r"^many\.zip: has 5 entries, more than the "
                                                r"limit of 3$"):
        extract_zip(many, tmp_path / "a", name="many.zip")
    shrink_limit(monkeypatch, "MAX_ARCHIVE_MEMBERS", 5000)
    shrink_limit(monkeypatch, "MAX_ARCHIVE_UNCOMPRESSED_MB", 1)
    rng = np.random.default_rng(0)
    big = [(f"{i}.png", rng.integers(0, 256, 700_000, dtype=np.uint8).tobytes())
           for i in range(2)]
    with pytest.raises(InvalidInputError, match=r"^big\.zip: .*more than the limit of 1 MB$"):
        extract_zip(h.zip_of(big, compression=0), tmp_path / "b", name="big.zip")
    assert all_files(tmp_path) == set()


# --------------------------------------------------------------------------- source rules


def _python_sources() -> list[Path]:
    folders = [ROOT / "padim_core", ROOT / "inspector_ui", ROOT / "pages"]
    files = [p for folder in folders if folder.is_dir() for p in folder.rglob("*.py")]
    return [*files, *(p for p in [ROOT / "app.py"] if p.is_file())]


def test_no_user_file_is_unpickled_and_weights_load_weights_only() -> None:
    """Static guard: no pickle/np.load(allow_pickle)/zip extractall; every torch.load passes
    weights_only=True."""
    problems = []
    for path in _python_sources():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        for pattern in (r"\bpickle\.loads?\(", r"\bcloudpickle\b", r"\bdill\b",
                        r"allow_pickle\s*=\s*True", r"\.extractall\(", r"\bjoblib\.load\("):
            if re.search(pattern, text):
                problems.append(f"{rel}: {pattern}")
        for call in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in call.group(0):
                problems.append(f"{rel}: {call.group(0)}")
    assert problems == []


def test_upload_caps_match_streamlit_config_and_every_uploader_names_its_cap() -> None:
    """server.maxUploadSize (Streamlit's cap for every upload) is the model-file cap; each
    file uploader in the app gives the browser its own cap: model files MAX_MODEL_UPLOAD_MB,
    images, zips and masks MAX_UPLOAD_MB (without it they would take 2 GB files)."""
    import tomllib

    from padim_core import limits

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["maxUploadSize"] == limits.MAX_MODEL_UPLOAD_MB
    calls = 0
    for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py"),
                 *(ROOT / "inspector_ui").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        for call in re.finditer(r"file_uploader\((.*?)\)\n", text, re.S):
            calls += 1
            want = "MODEL_UPLOADER_MB" if "Model file" in call.group(1) else "IMAGE_UPLOADER_MB"
            assert f"max_upload_size=uploads.{want}" in call.group(1), (path.name, call.group(0))
    assert calls >= 8
    from inspector_ui import uploads
    assert (uploads.IMAGE_UPLOADER_MB, uploads.MODEL_UPLOADER_MB) == (
        limits.MAX_UPLOAD_MB, limits.MAX_MODEL_UPLOAD_MB)


def test_readme_documents_every_limit() -> None:
    """Each cap in limits.py appears in the README's "Limits and safety" with its value."""
    from padim_core import limits

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Limits and safety", 1)[1].split("\n## ", 1)[0]
    for name in dir(limits):
        value = getattr(limits, name)
        if not name.startswith("MAX_") or not isinstance(value, int):
            continue
        row = next((line for line in section.splitlines() if f"`{name}`" in line), "")
        assert row, f"{name} missing from README Limits and safety"
        assert f"{value:,}" in row or str(value) in row, (name, value, row)


def test_one_image_not_in_a_list_is_refused_with_what_to_give(trained: PadimModel,
                                                              tmp_path: Path) -> None:
    """``predict("part.png")`` returned no result and no error (each character was an
    unreadable "file"); ``predict(Path)`` / ``predict(PIL image)`` raised "not iterable"."""
    [(_, good_bytes)] = h.good_images(1)
    path = tmp_path / "part.png"
    path.write_bytes(good_bytes)
    pixels = load_image(path)
    for one in (str(path), path, good_bytes, Image.open(path), pixels, pixels[..., 0]):
        with pytest.raises(InvalidInputError, match=r"^images: must be a list of images.*"
                                                    r"\[image\]$"):
            trained.predict(one)
    with pytest.raises(InvalidInputError, match="is a folder: give a list of its image files"):
        trained.fit(tmp_path)
    assert len(trained.predict(np.stack([pixels, pixels])).scores) == 2    # a batch array
    with pytest.raises(TypeError, match="^image_1: unsupported image source type: NoneType"):
        trained.predict([path, None])


def _header_variant(data: bytes, change: Any) -> bytes:
    import json as _json
    import struct as _struct

    (n,) = _struct.unpack("<Q", data[:8])
    header = _json.loads(data[8:8 + n])
    change(header)
    raw = _json.dumps(header).encode()
    return _struct.pack("<Q", len(raw)) + raw + data[8 + n:]



def _first_tensor(header: dict) -> dict:
    return next(v for k, v in header.items() if k != "__metadata__")


@pytest.mark.parametrize("change", [
    lambda h: h.__setitem__("__metadata__", [1]),
    lambda h: _first_tensor(h).__setitem__("data_offsets", 5),
    lambda h: _first_tensor(h).__setitem__("data_offsets", []),
    lambda h: _first_tensor(h).__setitem__("data_offsets", [0, "x"]),
    lambda h: h["__metadata__"].__setitem__("padim", "[" * 100_000 + "]" * 100_000),
    lambda h: h["__metadata__"].__setitem__("padim", "[1]"),
], ids=["metadata-list", "offsets-int", "offsets-empty", "offsets-text", "deep-json",
        "metadata-not-an-object"])
def test_crafted_headers_are_model_file_errors(trained: PadimModel, change: Any) -> None:
    """The security review: these escaped as AttributeError / TypeError / IndexError /
    RecursionError, shown as a traceback with server paths (app) or a Python trace (CLI)."""
    with pytest.raises(ModelFileError, match=r"^crafted\.safetensors: "):
        PadimModel.from_bytes(_header_variant(trained.to_bytes(), change),
                              name="crafted.safetensors", device="cpu")


def test_a_blur_wider_than_the_crop_is_refused(trained: PadimModel) -> None:
    """sigma=1e6 in a file loaded, and predict then tried to allocate 800 GB."""
    import json as _json

    def wide_blur(header: dict) -> None:
        padim = _json.loads(header["__metadata__"]["padim"])
        padim["config"]["sigma"] = 1e6
        header["__metadata__"]["padim"] = _json.dumps(padim)

    with pytest.raises(ModelFileError, match="sigma: must be between 0 and the crop"):
        PadimModel.from_bytes(_header_variant(trained.to_bytes(), wide_blur), device="cpu")
