"""An exported model scores over its region in the graph and hands the region, minimum
defect area and verdict rule to the onnxruntime engine (issue #15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from padim_core import PadimModel
from padim_core.demo import make_demo_set
from padim_core.export import export_onnx
from padim_core.onnx_engine import OnnxModel


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("exportroi") / "demo", n_train=12,
                         n_test_good=2, n_test_defect=3, size=128)


def test_onnx_scores_over_the_region_like_torch(demo: Path, tmp_path: Path) -> None:
    region = np.ones((96, 96), bool)
    region[:, :60] = False
    model = PadimModel(d=16, image_size=96, crop=96, device="cpu", region=region,
                       min_defect_area=9, verdict_rule="area")
    with pytest.warns(UserWarning):
        model.fit(sorted((demo / "train" / "good").glob("*.png")))
    export_onnx(model, tmp_path / "m.onnx")
    test = sorted((demo / "test").glob("*/*.png"))
    ref, onnx = model.predict(test), OnnxModel(tmp_path / "m.onnx").predict(test)
    np.testing.assert_allclose(onnx.scores, ref.scores, rtol=1e-4)
    whole = ref.maps.reshape(len(test), -1).max(1)
    assert (whole > ref.scores * 1.0001).any()      # some map peaks lie outside the region
    assert np.array_equal(onnx.region, region)
    assert (onnx.min_defect_area, onnx.verdict_rule) == (9, "area")
    assert onnx.verdicts().tolist() == ref.verdicts().tolist()
