"""Aspect-preserving resize (``resize="pad"``): geometry, validation, save/load, evaluation.

Why it exists: parts that are not square and vary in size (the magnetic tile set runs from
0.36 to 2.6 width/height) are stretched by a different amount each under the square resize;
padding keeps one scale for all (docs/quality.md measures it).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from padim_core import PadimModel
from padim_core.config import DEFAULTS
from padim_core.datasets import MVTecCategory
from padim_core.demo import make_demo_set
from padim_core.errors import InvalidInputError
from padim_core.evaluation import evaluate_model
from padim_core.images import (
    letterbox_box,
    resize_and_crop,
    resize_and_crop_mask,
    unpad_map,
)


def test_wide_image_is_centred_between_black_bands() -> None:
    image = np.full((50, 200, 3), 200, np.uint8)
    out = resize_and_crop(image, 64, 64, "pad")
    assert out.shape == (64, 64, 3)
    assert letterbox_box(200, 50, 64) == (24, 0, 16, 64)
    assert (out[24:40] == 200).all()
    assert not out[:24].any() and not out[40:].any()


def test_reflect_fills_the_bands_with_the_part_and_masks_with_nothing() -> None:
    image = np.full((50, 200, 3), 200, np.uint8)
    image[:4] = 10                     # a dark top edge, mirrored into the band above
    out = resize_and_crop(image, 64, 64, "pad-reflect")
    assert (out[24:40, :, 0] > 0).all() and (out[:24] > 0).all() and (out[40:] > 0).all()
    assert out[23, 0, 0] < 200 and out[8, 0, 0] == 200
    mask = resize_and_crop_mask(np.ones((50, 200), bool), 64, 64, "pad-reflect")
    assert mask[24:40].all() and not mask[:24].any() and not mask[40:].any()


def test_tall_mask_is_padded_like_its_image() -> None:
    mask = np.zeros((300, 100), bool)
    mask[:, 50:] = True
    out = resize_and_crop_mask(mask, 60, 60, "pad")
    top, left, h, w = letterbox_box(100, 300, 60)
    assert (top, left, h, w) == (0, 20, 60, 20)
    assert not out[:, :left].any() and not out[:, left + w:].any()
    assert out[:, left + w // 2:left + w].all() and not out[:, left:left + w // 2].any()


def test_unpad_map_returns_the_square_geometry() -> None:
    """A map that is the letterboxed image, un-padded, equals the square-resized image."""
    yy, xx = np.mgrid[0:40, 0:160]
    gray = (xx + 2 * yy).astype(np.float32)
    padded = resize_and_crop((gray / gray.max() * 255).astype(np.uint8), 64, 64, "pad")
    back = unpad_map(padded.astype(np.float32), 160, 40)
    square = resize_and_crop((gray / gray.max() * 255).astype(np.uint8), 64, 64)
    assert back.shape == (64, 64)
    assert np.abs(back - square).mean() < 4.0


def test_pad_means_no_crop_and_unknown_modes_are_named() -> None:
    assert PadimModel(resize="pad").config.crop == DEFAULTS.image_size == 224
    assert PadimModel(resize="pad", image_size=320).config.crop == 320
    with pytest.raises(InvalidInputError, match="crop") as err:
        PadimModel(resize="pad-reflect", crop=200)
    assert err.value.source == "crop"
    with pytest.raises(InvalidInputError) as err:
        PadimModel(resize="fit")
    assert err.value.source == "resize" and "stretch" in err.value.problem


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> MVTecCategory:
    """The demo set with every image made wide (2:1), as non-square parts are."""
    root = make_demo_set(tmp_path_factory.mktemp("pad") / "set", n_train=24, n_test_good=3,
                         n_test_defect=4, seed=5)
    for path in root.rglob("*.png"):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(path), cv2.resize(img, (img.shape[1], img.shape[0] // 2),
                                          interpolation=cv2.INTER_NEAREST))
    return MVTecCategory.from_folder(root)


def test_padded_model_saves_loads_and_evaluates_on_the_mask_geometry(
        demo: MVTecCategory, tmp_path: Path) -> None:
    # Lite0, nearest upsampling, map maximum: the settings this geometry test was pinned with
    model = PadimModel(backbone="efficientnet_lite0", d=16, image_size=64, resize="pad",
                       device="cpu", sigma=1.0, upsample="nearest", score_top_percent=0.0)
    model.fit(demo.train)
    model.save(tmp_path / "m.safetensors")
    again = PadimModel.load(tmp_path / "m.safetensors", device="cpu")
    assert again.config.resize == "pad"
    test = [item.path for item in demo.test]
    np.testing.assert_allclose(again.predict(test).scores, model.predict(test).scores,
                               rtol=1e-5)
    res = model.predict(test[:1])
    assert not res.images[0][:16].any()     # the black band above the wide part
    report = evaluate_model(model, demo.test)
    assert report.image_auroc == 1.0
    assert report.pixel_auroc > 0.8
