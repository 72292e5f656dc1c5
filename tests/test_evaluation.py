"""Tests for padim_core.evaluation with fake models (no torch)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from padim_core.errors import InvalidInputError
from padim_core.evaluation import EvaluationReport, evaluate_model, evaluate_predictions

try:
    from padim_core.datasets import LabeledImage
except ImportError:  # written by another engineer; same fields

    @dataclass
    class LabeledImage:  # type: ignore[no-redef]
        path: Path
        defect_type: str
        is_anomalous: bool
        mask_path: Path | None


# --------------------------------------------------------------------------- pure part
#
# Six images, 4x4 maps. Good: scores .1 .2 .3. crack: .9 and .25 (with masks),
# scratch: .8 (anomalous, NO mask -> left out of pixel metrics).
# Image AUROC: .9 and .8 beat all 3 good, .25 beats .1 and .2 -> 8/9.
# crack vs good: (3 + 2) / 6 = 5/6; scratch vs good: 1.0.

LABELS = [0, 0, 0, 1, 1, 1]
SCORES = [0.1, 0.2, 0.3, 0.9, 0.25, 0.8]
TYPES = ["good", "good", "good", "crack", "crack", "scratch"]
NAMES = ["good/0", "good/1", "good/2", "crack/0", "crack/1", "scratch/0"]


def _pixel_case() -> tuple[list[np.ndarray | None], np.ndarray]:
    maps = np.full((6, 4, 4), 0.1, dtype=np.float32)
    crack0 = np.zeros((4, 4), dtype=bool)
    crack0[0:2, 0:2] = True
    crack1 = np.zeros((4, 4), dtype=bool)
    crack1[3, 3] = True
    maps[3][crack0] = 0.9
    maps[4][crack1] = 0.7
    # the scratch image's map is high everywhere: if it were (wrongly) used with an empty
    # mask, its 16 pixels would be false positives above every defect pixel
    maps[5] = 5.0
    return [None, None, None, crack0, crack1, None], maps


def test_evaluate_predictions_known_values() -> None:
    masks, maps = _pixel_case()
    calls: list[tuple[int, int, str]] = []
    report = evaluate_predictions(
        LABELS,
        SCORES,
        masks,
        maps,
        TYPES,
        names=NAMES,
        image_threshold=0.5,
        pixel_threshold=0.5,
        progress=lambda d, t, s: calls.append((d, t, s)),
    )
    assert isinstance(report, EvaluationReport)
    assert report.image_auroc == pytest.approx(8 / 9)
    # F1: t=.8 -> P1 R2/3 F1 .8; t=.25 -> TP3 FP1 (.3) -> P3/4 R1 F1 6/7
    assert report.image_f1 == pytest.approx(6 / 7)
    assert report.image_f1_threshold == pytest.approx(0.25)
    # model threshold 0.5: TP 2 (.9 .8), FP 0, FN 1 -> 0.8
    assert report.image_f1_at_model_threshold == pytest.approx(0.8)
    assert report.n_images == 6 and report.n_anomalous == 3
    # scratch excluded: 5 images enter pixel metrics and they separate perfectly
    assert report.n_pixel_images == 5
    assert report.no_pixel_ground_truth == [("scratch/0", "no mask file")]
    assert report.pixel_auroc == pytest.approx(1.0)
    assert report.aupro == pytest.approx(1.0)
    assert report.pixel_f1 == pytest.approx(1.0)
    assert report.pixel_f1_threshold == pytest.approx(0.7)
    assert report.pixel_f1_at_model_threshold == pytest.approx(1.0)
    assert report.per_defect_type == {
        "good": {
            "count": 3,
            "n_anomalous": 0,
            "image_auroc": None,
            "mean_score": pytest.approx(0.2),
        },
        "crack": {
            "count": 2,
            "n_anomalous": 2,
            "image_auroc": pytest.approx(5 / 6),
            "mean_score": pytest.approx(0.575),
        },
        "scratch": {"count": 1, "n_anomalous": 1, "image_auroc": 1.0, "mean_score": 0.8},
    }
    assert calls[0] == (0, 6, "metrics") and calls[-1] == (6, 6, "metrics")
    assert all(stage == "metrics" for _, _, stage in calls)


def test_f1_at_the_model_follows_its_verdicts_under_the_area_rule() -> None:
    """A model deciding by defect area reported F1 by score at its threshold (0.933) instead
    of its real verdicts' (0.962)."""
    verdicts = [False, True, False, True, False, True]     # e.g. from defect regions
    report = evaluate_predictions(LABELS, SCORES, None, None, TYPES, names=NAMES,
                                  image_threshold=0.5, verdicts=verdicts)
    y = np.asarray(LABELS, bool)
    pred = np.asarray(verdicts)
    tp, fp, fn = (y & pred).sum(), (~y & pred).sum(), (y & ~pred).sum()
    assert report.image_f1_at_model_threshold == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert report.image_f1_at_model_threshold != evaluate_predictions(
        LABELS, SCORES, None, None, TYPES, names=NAMES,
        image_threshold=0.5).image_f1_at_model_threshold


def test_pixel_metrics_count_regions_per_image() -> None:
    masks, maps = _pixel_case()
    maps[4][3, 3] = 0.05  # crack/1's one-pixel defect now below every normal pixel
    report = evaluate_predictions(LABELS, SCORES, masks, maps, TYPES)
    # 2 regions: crack/0's found first, crack/1's last -> PRO 0.5 until FPR 1
    assert report.aupro == pytest.approx(0.5)
    # positives: 4 at 0.9 (beat all 75 normals) and 1 at 0.05 (beats none) -> 4/5
    assert report.pixel_auroc == pytest.approx(4 / 5)


def test_no_masks_gives_no_pixel_metrics() -> None:
    _, maps = _pixel_case()
    report = evaluate_predictions(LABELS, SCORES, None, maps, TYPES)
    assert report.pixel_auroc is None and report.aupro is None
    assert report.pixel_f1 is None and report.pixel_f1_threshold is None
    assert report.n_pixel_images == 3  # only the good images
    assert [name for name, _ in report.no_pixel_ground_truth] == ["image_3", "image_4", "image_5"]
    assert report.image_auroc == pytest.approx(8 / 9)
    no_maps = evaluate_predictions(LABELS, SCORES, None, None, TYPES)
    assert no_maps.pixel_auroc is None and no_maps.n_pixel_images == 0


def test_empty_masks_give_no_pixel_metrics() -> None:
    _, maps = _pixel_case()
    empty = [np.zeros((4, 4), dtype=bool)] * 6
    report = evaluate_predictions(LABELS, SCORES, empty, maps, TYPES)
    assert report.aupro is None and report.pixel_auroc is None
    assert report.n_pixel_images == 6


def test_evaluate_predictions_rejects_bad_input() -> None:
    masks, maps = _pixel_case()
    with pytest.raises(InvalidInputError, match="only normal"):
        evaluate_predictions([0, 0], [0.1, 0.2], None, None, ["good", "good"])
    with pytest.raises(InvalidInputError, match="defect_types"):
        evaluate_predictions(LABELS, SCORES, masks, maps, TYPES[:-1])
    masks[3] = np.zeros((5, 5), dtype=bool)
    with pytest.raises(InvalidInputError, match="does not match map shape"):
        evaluate_predictions(LABELS, SCORES, masks, maps, TYPES, names=NAMES)


def test_to_dict_is_json_safe() -> None:
    masks, maps = _pixel_case()
    report = evaluate_predictions(
        LABELS, np.asarray(SCORES, dtype=np.float32), masks, maps, TYPES, names=NAMES
    )
    report.skipped = [("bad.png", "not an image")]
    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["image_auroc"] == pytest.approx(8 / 9)
    assert back["skipped"] == [["bad.png", "not an image"]]
    assert back["per_defect_type"]["good"]["image_auroc"] is None
    assert back["model_image_threshold"] is None
    assert type(back["n_images"]) is int


# --------------------------------------------------------------------------- with a model


@dataclass
class FakeModel:
    """Scores each path from a table; unreadable files are skipped like the real model."""

    table: dict[str, tuple[float, np.ndarray]]
    crop: int = 8
    image_threshold_: float = 0.5
    pixel_threshold_: float = 0.5
    config: SimpleNamespace = field(default_factory=SimpleNamespace)
    calls: list[object] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = SimpleNamespace(image_size=self.crop * 2, crop=self.crop)

    def predict(self, images: list[Path], progress: object = None) -> SimpleNamespace:
        self.calls.append(progress)
        names, scores, maps, skipped = [], [], [], []
        for path in images:
            if Path(path).read_bytes()[:4] != b"\x89PNG":
                skipped.append((Path(path).name, "not an image"))
                continue
            score, amap = self.table[str(path)]
            names.append(Path(path).name)  # bare file names, like images.input_name
            scores.append(score)
            maps.append(amap)
        if callable(progress):
            progress(len(images), len(images), "predict")
        return SimpleNamespace(
            names=names,
            scores=np.asarray(scores, dtype=np.float64),
            maps=np.asarray(maps, dtype=np.float32).reshape(-1, self.crop, self.crop),
            skipped=skipped,
        )


def _write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _mvtec_like(tmp_path: Path) -> tuple[list[LabeledImage], FakeModel]:
    """good/000, good/001, hole/000 (mask), hole/001 (no mask), stain/000 (broken file)."""
    crop = 8
    img = np.full((16, 16, 3), 128, dtype=np.uint8)
    items: list[LabeledImage] = []
    table: dict[str, tuple[float, np.ndarray]] = {}

    def add(kind: str, stem: str, score: float, amap: np.ndarray, mask: np.ndarray | None):
        path = _write_png(tmp_path / "test" / kind / f"{stem}.png", img)
        mask_path = None
        if mask is not None:
            mask_path = _write_png(tmp_path / "ground_truth" / kind / f"{stem}_mask.png", mask)
        items.append(LabeledImage(path, kind, kind != "good", mask_path))
        table[str(path)] = (score, amap)

    flat = np.full((crop, crop), 0.1, dtype=np.float32)
    add("good", "000", 0.1, flat, None)
    add("good", "001", 0.2, flat, None)
    # hole/000: 16x16 mask with a 4x4 defect at rows/cols 6..9 -> after resize to 16 and
    # centre crop 8 (offset 4) the defect sits at rows/cols 2..5 of the crop
    full_mask = np.zeros((16, 16), dtype=np.uint8)
    full_mask[6:10, 6:10] = 255
    hole_map = flat.copy()
    hole_map[2:6, 2:6] = 0.9
    add("hole", "000", 0.9, hole_map, full_mask)
    add("hole", "001", 0.6, np.full((crop, crop), 3.0, dtype=np.float32), None)
    broken = tmp_path / "test" / "stain" / "000.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"this is not a png")
    items.append(LabeledImage(broken, "stain", True, None))
    return items, FakeModel(table, crop=crop)


def test_evaluate_model_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("padim_core.images")
    items, model = _mvtec_like(tmp_path)
    calls: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, stage: str) -> None:
        calls.append((done, total, stage))

    report = evaluate_model(model, items, progress=progress)
    assert model.calls == [progress]  # the caller's progress reaches the model
    assert report.skipped == [("stain/000.png", "not an image")]
    assert report.n_images == 4 and report.n_anomalous == 2
    assert report.image_auroc == pytest.approx(1.0)
    assert report.no_pixel_ground_truth == [("hole/001.png", "no mask file")]
    assert report.n_pixel_images == 3
    # the resized + cropped mask lines up with the 0.9 block: perfect pixel metrics
    assert report.pixel_auroc == pytest.approx(1.0)
    assert report.aupro == pytest.approx(1.0)
    assert report.pixel_f1 == pytest.approx(1.0)
    assert report.model_image_threshold == 0.5
    assert report.image_f1_at_model_threshold == pytest.approx(1.0)
    assert report.pixel_f1_at_model_threshold == pytest.approx(1.0)
    assert set(report.per_defect_type) == {"good", "hole"}
    stages = [s for _, _, s in calls]
    assert stages[0] == "predict" and "masks" in stages and stages[-1] == "metrics"
    assert (4, 4, "masks") in calls
    json.dumps(report.to_dict(), allow_nan=False)


def test_evaluate_model_same_file_names_across_types(tmp_path: Path) -> None:
    """The model names results by bare file name, and every type has a 000.png.

    good/000 ok, hole/000 broken, stain/000 ok: results ["000.png", "000.png"], skipped
    [("000.png", ...)]. Matching by name alone would take hole/000 as the second result and
    call stain/000 the skipped one.
    """
    pytest.importorskip("padim_core.images")
    img = np.full((16, 16, 3), 90, dtype=np.uint8)
    good0 = _write_png(tmp_path / "good" / "000.png", img)
    broken = tmp_path / "hole" / "000.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"junk")
    stain0 = _write_png(tmp_path / "stain" / "000.png", img)
    table = {
        str(good0): (0.2, np.zeros((8, 8), np.float32)),
        str(stain0): (0.7, np.ones((8, 8), np.float32)),
    }
    items = [
        LabeledImage(good0, "good", False, None),
        LabeledImage(broken, "hole", True, None),
        LabeledImage(stain0, "stain", True, None),
    ]
    report = evaluate_model(FakeModel(table), items)
    assert report.skipped == [("hole/000.png", "not an image")]
    assert list(report.per_defect_type) == ["good", "stain"]
    assert report.per_defect_type["stain"]["mean_score"] == pytest.approx(0.7)
    assert report.image_auroc == pytest.approx(1.0)


def test_evaluate_model_passes_unique_names_when_predict_takes_them(tmp_path: Path) -> None:
    pytest.importorskip("padim_core.images")
    items, inner = _mvtec_like(tmp_path)
    items.append(LabeledImage(items[0].path, "good", False, None))  # same file twice
    seen: list[list[str]] = []

    class Named(FakeModel):
        def predict(
            self, images: list[Path], progress: object = None, names: list[str] | None = None
        ) -> SimpleNamespace:
            assert names is not None
            seen.append(list(names))
            res = super().predict(images, progress)
            keep = [n for n, p in zip(names, images, strict=True) if Path(p).stat().st_size > 20]
            bad = [n for n in names if n not in keep]
            return SimpleNamespace(
                names=keep, scores=res.scores, maps=res.maps, skipped=[(n, "bad") for n in bad]
            )

    model = Named(inner.table, crop=inner.crop)
    model.image_threshold_ = float("nan")  # e.g. a model without thresholds
    report = evaluate_model(model, items)
    assert seen == [
        [
            "good/000.png#0",
            "good/001.png",
            "hole/000.png",
            "hole/001.png",
            "stain/000.png",
            "good/000.png#5",
        ]
    ]
    assert report.skipped == [("stain/000.png", "bad")]
    assert report.per_defect_type["good"]["count"] == 3
    assert report.model_image_threshold is None
    assert report.image_f1_at_model_threshold is None


def test_evaluate_model_reports_per_image_results_and_predict_time(tmp_path: Path) -> None:
    pytest.importorskip("padim_core.images")
    items, model = _mvtec_like(tmp_path)

    class Slow(FakeModel):
        def predict(self, images: list[Path], progress: object = None) -> SimpleNamespace:
            time.sleep(0.2)
            return super().predict(images, progress)

    report = evaluate_model(Slow(model.table, crop=model.crop), items)
    # the broken stain/000 is skipped; the rest in input order
    assert report.image_names == ["good/000.png", "good/001.png", "hole/000.png",
                                  "hole/001.png"]
    np.testing.assert_array_equal(report.image_scores, [0.1, 0.2, 0.9, 0.6])
    np.testing.assert_array_equal(report.image_labels, [False, False, True, True])
    assert report.image_defect_types == ["good", "good", "hole", "hole"]
    assert 0.2 <= report.predict_seconds < 60
    assert report.ms_per_image == pytest.approx(1000 * report.predict_seconds / 4)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["image_scores"] == [0.1, 0.2, 0.9, 0.6]
    assert data["image_labels"] == [False, False, True, True]


def test_evaluate_model_unreadable_mask_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("padim_core.images")
    items, model = _mvtec_like(tmp_path)
    items[2].mask_path.write_bytes(b"\x89PNG broken")
    report = evaluate_model(model, items)
    reasons = dict(report.no_pixel_ground_truth)
    assert reasons["hole/001.png"] == "no mask file"
    assert reasons["hole/000.png"].startswith("mask unreadable")
    assert report.pixel_auroc is None  # no anomalous image left with pixel ground truth


def test_evaluate_model_rejects_empty_and_mismatched(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no labelled images"):
        evaluate_model(FakeModel({}), [])

    class Liar(FakeModel):
        def predict(self, images: list[Path], progress: object = None) -> SimpleNamespace:
            return SimpleNamespace(names=[], scores=[], maps=np.zeros((0, 8, 8)), skipped=[])

    items, _ = _mvtec_like(tmp_path)
    with pytest.raises(InvalidInputError, match="returned 0 results"):
        evaluate_model(Liar({}), items)


def test_a_region_of_a_padded_model_is_evaluated_where_the_model_applies_it(
        tmp_path: Path) -> None:
    """evaluate un-pads the maps of a letterboxing model but applied its region (drawn on the
    letterboxed crop) to them as it was: on wide parts a region of the top band (no part
    pixel) inspected the part's top quarter instead."""
    from PIL import Image

    from padim_core import PadimModel
    from padim_core.datasets import LabeledImage

    rng = np.random.default_rng(0)

    def wide(path: Path, defect: bool) -> Path:
        pixels = rng.integers(90, 140, (64, 128, 3), dtype=np.uint8)
        if defect:
            pixels[2:14, 50:70] = 255                       # in the part's top quarter
        Image.fromarray(pixels).save(path)
        return path

    train = [wide(tmp_path / f"t{i}.png", False) for i in range(8)]
    mask = np.zeros((64, 128), np.uint8)
    mask[2:14, 50:70] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    items = [LabeledImage(wide(tmp_path / "g.png", False), "good", False, None),
             LabeledImage(wide(tmp_path / "d.png", True), "spot", True, tmp_path / "m.png")]
    model = PadimModel(backbone="resnet18", weights="random", d=8, image_size=64,
                       resize="pad-reflect", device="cpu").fit(train)
    whole = evaluate_model(model, items)
    assert whole.pixel_auroc is not None
    band = np.zeros((64, 64), bool)
    band[:16] = True                                        # the top band of a 2:1 part
    model.set_region(band)
    assert evaluate_model(model, items).pixel_auroc is None      # no part pixel inspected
