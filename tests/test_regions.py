"""Regions of interest, don't-care areas and the minimum defect size (issue #15)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import safetensors.numpy

from padim_core import PadimModel, model_files
from padim_core.config import PRESETS
from padim_core.demo import make_demo_set
from padim_core.errors import InvalidInputError, ModelFileError
from padim_core.images import load_image, resize_and_crop
from padim_core.model import PredictResult
from padim_core.regions import defect_regions, load_region, region_from_shapes
from padim_core.visualize import threshold_overlay_png

SIZE = CROP = 96
CORNER = (slice(0, 56), slice(0, 56))        # the don't-care area of these tests


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("regions") / "set", n_train=24, n_test_good=4,
                         n_test_defect=1, size=128)


@pytest.fixture(scope="module")
def train(demo_root: Path) -> list[Path]:
    return sorted((demo_root / "train" / "good").glob("*.png"))


def corner_excluded() -> np.ndarray:
    region = np.ones((CROP, CROP), bool)
    region[CORNER] = False
    return region


def model_for(train: list[Path], region: np.ndarray | None = None, **kw: object) -> PadimModel:
    # the reference settings (Lite0, square resize, nearest upsampling, map maximum): the
    # format versions below are those of nearest upsampling (bilinear needs format 4)
    settings = {**PRESETS["reference"], "image_size": SIZE, "crop": CROP, **kw}
    return PadimModel(d=24, device="cpu", sigma=2.0, region=region, **settings).fit(train)


@pytest.fixture(scope="module")
def whole(train: list[Path]) -> PadimModel:
    return model_for(train)


@pytest.fixture(scope="module")
def regioned(train: list[Path]) -> PadimModel:
    return model_for(train, corner_excluded())


def with_blob_in_corner(path: Path) -> np.ndarray:
    """A good test part with a loud defect inside the excluded corner only."""
    img = resize_and_crop(load_image(path), SIZE, CROP).copy()
    cv2.circle(img, (14, 14), 9, (255, 0, 255), -1)
    return img


# ------------------------------------------------------------------ masks in
def png(arr: np.ndarray) -> bytes:
    return cv2.imencode(".png", arr)[1].tobytes()


def test_mask_of_another_size_is_resized_with_a_note() -> None:
    mask = np.full((50, 40), 255, np.uint8)
    mask[:10] = 0
    region, notes = load_region(png(mask), CROP, "roi.png")
    assert region.shape == (CROP, CROP) and not region[:10].any() and region[40:].all()
    assert any("resized" in n and "roi.png" in n for n in notes)


def test_grey_levels_above_127_count_as_inspect_with_a_note() -> None:
    mask = np.array([[0, 100], [128, 255]], np.uint8).repeat(CROP // 2, 0).repeat(CROP // 2, 1)
    region, notes = load_region(png(mask), CROP, "m.png")
    assert region.tolist() == (mask > 127).tolist()
    assert any("4 grey levels" in n for n in notes)


@pytest.mark.parametrize(("data", "problem"), [
    (png(np.zeros((CROP, CROP), np.uint8)), "nothing to inspect"),
    (b"not an image at all", "is not an image"),
    (b"", "is not an image"),
])
def test_unusable_masks_are_refused_by_name(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem) as err:
        load_region(data, CROP, "mask.png")
    assert err.value.source == "mask.png"


@pytest.mark.parametrize("area", [-1, CROP * CROP + 1])
def test_min_area_outside_the_crop_is_refused(area: int) -> None:
    with pytest.raises(InvalidInputError, match="min_defect_area"):
        PadimModel(image_size=SIZE, crop=CROP, min_defect_area=area, weights="random")


def test_shapes_paint_include_then_exclude() -> None:
    square = [(10, 10), (60, 10), (60, 60), (10, 60)]
    hole = [(20, 20), (30, 20), (30, 30), (20, 30)]
    assert region_from_shapes(CROP, []) is None
    only_square = region_from_shapes(CROP, [("include", square), ("exclude", hole)])
    assert only_square[40, 40] and not only_square[80, 80] and not only_square[25, 25]
    all_but = region_from_shapes(CROP, [("exclude", square)])
    assert all_but[80, 80] and not all_but[40, 40]


def test_exclude_shapes_take_from_the_current_region_include_shapes_start_anew() -> None:
    """Drawn over a model that already ignores its left half (shown grey on the canvas), an
    exclude shape keeps the left half ignored; include shapes say what is inspected."""
    current = np.ones((CROP, CROP), bool)
    current[:, : CROP // 2] = False
    top = [(0, 0), (CROP, 0), (CROP, 10), (0, 10)]
    less = region_from_shapes(CROP, [("exclude", top)], current)
    assert not less[:, : CROP // 2].any() and not less[:5].any() and less[50, CROP - 5]
    assert current[5, CROP - 5], "the current region is not changed in place"
    square = [(10, 10), (60, 10), (60, 60), (10, 60)]
    anew = region_from_shapes(CROP, [("include", square)], current)
    assert anew[40, 20] and not anew[80, 80]        # the square, left half included
    assert region_from_shapes(CROP, [], current) is current


# ------------------------------------------------------------------ scores and thresholds
def test_a_defect_only_in_the_excluded_area_scores_like_a_good_part(
        demo_root: Path, whole: PadimModel, regioned: PadimModel) -> None:
    good = sorted((demo_root / "test" / "good").glob("*.png"))
    parts = [with_blob_in_corner(p) for p in good]
    assert whole.predict(parts).verdicts().all()                  # seen: NG everywhere
    res = regioned.predict(parts)
    assert not res.verdicts().any()
    clean = regioned.predict(good).scores
    np.testing.assert_allclose(res.scores, clean, rtol=0.25)
    seen = whole.predict(parts)
    assert all(seen.defects(i)[1][CORNER].any() for i in range(len(parts)))
    assert not any(res.defects(i)[1][CORNER].any() for i in range(len(parts)))  # no contour


def test_thresholds_with_a_region_ignore_the_excluded_pixels(regioned: PadimModel) -> None:
    """Making the calibration images wildly abnormal inside the excluded area leaves both
    thresholds as they were; over the whole image they jump."""
    state = regioned.state_
    before = (regioned.image_threshold_, regioned.pixel_threshold_)
    loud = state.calibration_distances.copy()
    loud[:, :4, :4] = 1e4          # patch grid cells well inside the excluded corner
    regioned.state_ = state.__class__(**{**state.__dict__, "calibration_distances": loud})
    try:
        regioned.set_region(corner_excluded())
        assert (regioned.image_threshold_, regioned.pixel_threshold_) == pytest.approx(before)
        regioned.set_region(None)
        assert regioned.image_threshold_ > 100 * before[0]
    finally:
        regioned.state_ = state
        regioned.region = state.region


def test_fit_with_a_region_equals_setting_it_after_fit(whole: PadimModel,
                                                       regioned: PadimModel) -> None:
    whole_thresholds = (whole.image_threshold_, whole.pixel_threshold_)
    whole.set_region(corner_excluded())
    try:
        assert whole.image_threshold_ == pytest.approx(regioned.image_threshold_)
        assert whole.pixel_threshold_ == pytest.approx(regioned.pixel_threshold_)
        assert (whole.image_threshold_, whole.pixel_threshold_) != \
            pytest.approx(whole_thresholds)
    finally:
        whole.set_region(None)
    assert (whole.image_threshold_, whole.pixel_threshold_) == pytest.approx(whole_thresholds)


# ------------------------------------------------------------------ min defect area
def one_hot_pixel() -> PredictResult:
    maps = np.zeros((1, 32, 32), np.float32)
    maps[0, 16, 16] = 5.0
    return PredictResult(["speck"], np.array([5.0]), maps, np.zeros((1, 32, 32, 3), np.uint8),
                         image_threshold=1.0, pixel_threshold=1.0, min_defect_area=4)


def test_a_hot_pixel_below_the_min_area_draws_no_contour_and_passes_the_area_rule() -> None:
    res = one_hot_pixel()
    assert res.defects(0)[0] == []
    assert len(res.defects(0, min_area=1)[0]) == 1         # it is there, just too small
    assert res.verdicts().tolist() == [True]                 # the score rule still sees it
    assert res.verdicts(rule="area").tolist() == [False]
    assert res.verdicts(rule="area", min_area=1).tolist() == [True]
    image = np.zeros((32, 32, 3), np.uint8)
    white = [(cv2.imdecode(np.frombuffer(threshold_overlay_png(image, res.maps[0], 1.0,
                                                               min_area=a), np.uint8), 1)
              == 255).all(axis=2).sum() for a in (4, 1)]
    assert white[0] == 0 < white[1]


def test_defect_regions_report_areas_and_boxes_largest_first() -> None:
    amap = np.zeros((40, 40), np.float32)
    amap[2:5, 3:9] = 2.0           # 18 px
    amap[30:32, 30:32] = 3.0       # 4 px
    region = np.ones((40, 40), bool)
    found, mask = defect_regions(amap, 1.0, region, min_area=1)
    assert [(r.area, r.bbox) for r in found] == [(18, (3, 2, 6, 3)), (4, (30, 30, 2, 2))]
    assert mask.sum() == 22
    region[30:, 30:] = False
    assert [r.area for r in defect_regions(amap, 1.0, region)[0]] == [18]


# ------------------------------------------------------------------ files
def test_region_and_min_area_survive_save_and_load(tmp_path: Path, regioned: PadimModel,
                                                   demo_root: Path) -> None:
    regioned.set_defect_rule(7, "area")
    try:
        regioned.save(tmp_path / "m.safetensors")
        again = PadimModel.load(tmp_path / "m.safetensors", device="cpu")
    finally:
        regioned.set_defect_rule(0, "score")
    assert np.array_equal(again.region_, corner_excluded())
    assert (again.config.min_defect_area, again.config.verdict_rule) == (7, "area")
    assert again.image_threshold_ == regioned.image_threshold_
    meta = safetensors.safe_open(str(tmp_path / "m.safetensors"), "numpy").metadata()
    assert meta["format_version"] == "3"
    test = sorted((demo_root / "test").rglob("*.png"))
    np.testing.assert_allclose(again.predict(test).scores, regioned.predict(test).scores,
                               rtol=1e-5)
    assert again.card()["region"].startswith("66.0%")


def test_a_file_without_region_keeps_its_old_version_and_loads_whole(
        tmp_path: Path, whole: PadimModel) -> None:
    whole.save(tmp_path / "w.safetensors", updatable=False)
    meta = safetensors.safe_open(str(tmp_path / "w.safetensors"), "numpy").metadata()
    assert meta["format_version"] == "1"
    again = PadimModel.load(tmp_path / "w.safetensors", device="cpu")
    assert again.region_ is None and again.card()["region"] == "whole image"


@pytest.mark.parametrize(("region", "problem"), [
    (np.zeros((CROP, CROP), np.uint8), "nothing to inspect"),
    (np.full((CROP, CROP), 2, np.uint8), "other than 0 and 1"),
    (np.ones((8, 8), np.uint8), "tensor 'region' has shape"),
])
def test_a_damaged_region_in_a_file_is_refused(tmp_path: Path, regioned: PadimModel,
                                               region: np.ndarray, problem: str) -> None:
    tensors, meta = regioned._tensors_and_meta(updatable=False)
    tensors["region"] = region
    path = tmp_path / "bad.safetensors"
    model_files.write(path, tensors, meta)
    with pytest.raises(ModelFileError, match=problem):
        PadimModel.load(path, device="cpu")


def test_changing_the_region_of_a_file_from_before_regions_asks_for_a_refit() -> None:
    old = PadimModel.load(Path(__file__).parent / "data" / "model_d9d19cd.safetensors",
                          device="cpu")
    assert old.region_ is None
    with pytest.raises(InvalidInputError, match="refit"):
        old.set_region(np.ones((old.config.crop,) * 2, bool))


def test_per_image_json_is_json(whole: PadimModel, demo_root: Path) -> None:
    from padim_core.regions import summary

    res = whole.predict(sorted((demo_root / "test").rglob("*.png"))[:2])
    text = json.dumps(summary(res.defects(0, min_area=0)[0]))
    assert "n_defect_regions" in json.loads(text)


def test_the_service_scores_over_the_region_and_reports_defects(
        demo_root: Path, whole: PadimModel, regioned: PadimModel) -> None:
    from fastapi.testclient import TestClient

    from padim_core.service import create_app

    part = png(cv2.cvtColor(with_blob_in_corner(
        sorted((demo_root / "test" / "good").glob("*.png"))[0]), cv2.COLOR_RGB2BGR))
    answers = {}
    for name, model in (("whole", whole), ("regioned", regioned)):
        with TestClient(create_app(model, max_wait_ms=1)) as client:
            answers[name] = client.post("/predict", files={"file": ("p.png", part,
                                                                    "image/png")}).json()
    assert answers["whole"]["verdict"] == "NG" and answers["regioned"]["verdict"] == "OK"
    assert answers["whole"]["n_defect_regions"] >= 1
    assert all(r["x"] + r["width"] > 56 or r["y"] + r["height"] > 56
               for r in answers["regioned"]["defect_regions"])


def test_pixel_metrics_count_only_the_inspected_pixels() -> None:
    """Maps right inside the region and wrong outside it: perfect with the region."""
    from padim_core.evaluation import evaluate_predictions

    rng = np.random.default_rng(0)
    gt = np.zeros((4, 32, 32), bool)
    gt[2:, 10:16, 10:16] = True
    gt[2:, 2:6, 24:30] = True                      # a defect in the ignored strip
    maps = np.where(gt, 5.0, 1.0).astype(np.float32) + rng.random(gt.shape, np.float32) * 0.1
    maps[:, :, 20:] = rng.random((4, 32, 12), np.float32) * 9   # garbage where ignored
    region = np.ones((32, 32), bool)
    region[:, 20:] = False
    args = ([0, 0, 1, 1], maps.max(axis=(1, 2)), list(gt), maps, ["good"] * 2 + ["x"] * 2)
    whole = evaluate_predictions(*args)
    inside = evaluate_predictions(*args, region=region)
    assert inside.pixel_auroc == pytest.approx(1.0) and inside.aupro == pytest.approx(1.0)
    assert whole.pixel_auroc < 0.95 and whole.aupro < 0.9
