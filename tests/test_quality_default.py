"""The default since issue 14, the quality settings of docs/quality.md (EfficientNet-Lite2,
all 192 channels, the whole image at 224 px with mirrored bands for non-square parts, bilinear
feature upsampling, top-0.5 % image score: every quality goal of issue 14 on both data sets),
on the synthetic demo set.

What it pins: the default's settings; with them the demo set's defects are all found and
located, and a defect in the 16 px border that the reference recipe's 256 → 224 centre crop
cuts away is inside the map and flagged. The reference recipe stays a preset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from padim_core import PadimModel
from padim_core.config import DEFAULTS, PRESETS
from padim_core.datasets import MVTecCategory
from padim_core.demo import make_demo_set
from padim_core.evaluation import evaluate_model
from padim_core.images import load_image


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> MVTecCategory:
    root = make_demo_set(tmp_path_factory.mktemp("quality") / "set", n_train=40,
                         n_test_good=6, n_test_defect=9, seed=11)
    return MVTecCategory.from_folder(root)


@pytest.fixture(scope="module")
def model(demo: MVTecCategory) -> PadimModel:
    with pytest.warns(UserWarning, match="training images for d=192"):
        return PadimModel(device="cpu").fit(demo.train)


def test_defaults_are_the_quality_settings_and_reference_is_the_paper() -> None:
    assert (DEFAULTS.backbone, DEFAULTS.d, DEFAULTS.image_size, DEFAULTS.crop) == \
        ("efficientnet_lite2", 192, 224, 224)        # all channels; padding: no crop
    assert (DEFAULTS.sigma, DEFAULTS.score_top_percent, DEFAULTS.eps) == (4.0, 0.5, 0.01)
    assert (DEFAULTS.resize, DEFAULTS.upsample) == ("pad-reflect", "bilinear")
    assert PRESETS["quality"] == {}
    reference = PadimModel(**PRESETS["reference"]).config
    assert (reference.backbone, reference.d, reference.image_size, reference.crop,
            reference.resize, reference.upsample, reference.score_top_percent) == \
        ("efficientnet_lite0", 100, 256, 224, "stretch", "nearest", 0.0)


def test_default_finds_and_locates_the_demo_defects(model: PadimModel,
                                                    demo: MVTecCategory) -> None:
    report = evaluate_model(model, demo.test)
    assert report.image_auroc == 1.0
    assert report.pixel_auroc > 0.95


def test_default_maps_cover_the_border(model: PadimModel, demo: MVTecCategory,
                                       tmp_path: Path) -> None:
    """A dark spot in the left 16 px: outside a 224 centre crop, inside today's map, where it
    is the hottest place and raises the image score well above the same image without it."""
    good = next(item.path for item in demo.test if not item.is_anomalous)
    image = load_image(good).copy()
    image[116:140, 2:14] = 20
    res = model.predict([good, image])
    assert res.maps.shape[1:] == (224, 224)            # the whole image, resized
    assert res.scores[1] > 1.2 * res.scores[0]
    peak = np.unravel_index(res.maps[1].argmax(), res.maps[1].shape)
    scale = 224 / image.shape[0]                       # source pixels → map pixels
    assert peak[1] < 24 * scale and 104 * scale <= peak[0] <= 152 * scale
