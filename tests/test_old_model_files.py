"""Model files written by earlier versions load and score exactly as they did.

``tests/data/model_d9d19cd.safetensors`` was written by the code of commit d9d19cd (before
the image-score rule became a setting), together with the scores that code gave on a small
demo set (``model_d9d19cd.json``). Settings added since are missing from that file; they must
load as the behaviour the file was fitted under (``config.FIELDS_ADDED_LATER``), not as
today's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from padim_core import PadimModel
from padim_core.config import FIELDS_ADDED_LATER
from padim_core.demo import make_demo_set

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads((DATA / "model_d9d19cd.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory, recorded: dict) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("old") / "set", **recorded["demo"])


def test_old_file_lacks_the_new_settings() -> None:
    """The premise: the stored configuration predates every field in FIELDS_ADDED_LATER."""
    from padim_core import model_files

    _, meta = model_files.read(DATA / "model_d9d19cd.safetensors")
    assert not set(FIELDS_ADDED_LATER) & set(meta["config"])


def test_old_file_loads_with_the_old_behaviour() -> None:
    model = PadimModel.load(DATA / "model_d9d19cd.safetensors", device="cpu")
    for name, old_value in FIELDS_ADDED_LATER.items():
        assert getattr(model.config, name) == old_value, name


def test_old_file_scores_as_before(demo_root: Path, recorded: dict) -> None:
    model = PadimModel.load(DATA / "model_d9d19cd.safetensors", device="cpu")
    res = model.predict([demo_root / name for name in recorded["images"]])
    np.testing.assert_allclose(res.scores, recorded["scores"], rtol=1e-4)
    np.testing.assert_allclose(res.maps.max(axis=(1, 2)), recorded["map_max"], rtol=1e-4)
    np.testing.assert_allclose(res.maps.mean(axis=(1, 2)), recorded["map_mean"], rtol=1e-4)
    assert model.image_threshold_ == pytest.approx(recorded["image_threshold"])


def test_new_settings_survive_save_and_load(tmp_path: Path, demo_root: Path) -> None:
    train = sorted((demo_root / "train" / "good").glob("*.png"))
    model = PadimModel(d=16, image_size=64, crop=56, device="cpu", sigma=2.0,
                       score_top_percent=3.0, upsample="bilinear").fit(train)
    model.save(tmp_path / "m.safetensors")
    again = PadimModel.load(tmp_path / "m.safetensors", device="cpu")
    assert (again.config.sigma, again.config.score_top_percent) == (2.0, 3.0)
    assert again.config.upsample == "bilinear"
    test = sorted((demo_root / "test").rglob("*.png"))
    np.testing.assert_allclose(again.predict(test).scores, model.predict(test).scores,
                               rtol=1e-5)


def test_bilinear_file_is_format_4_and_nearest_stays_readable_by_older_versions(
        tmp_path: Path, demo_root: Path) -> None:
    """A reader that predates ``upsample`` would score a bilinear model with nearest
    upsampling, so such a file says format 4 (which it refuses); a nearest one does not."""
    from padim_core import model_files

    train = sorted((demo_root / "train" / "good").glob("*.png"))
    for mode, version in (("bilinear", "4"), ("nearest", "2")):
        PadimModel(d=8, image_size=64, crop=56, device="cpu", upsample=mode).fit(train) \
            .save(tmp_path / f"{mode}.safetensors")
        raw = (tmp_path / f"{mode}.safetensors").read_bytes()
        n = int.from_bytes(raw[:8], "little")
        assert json.loads(raw[8:8 + n])["__metadata__"]["format_version"] == version, mode
        assert model_files.read(tmp_path / f"{mode}.safetensors")[1]["config"]["upsample"] \
            == mode


@pytest.mark.parametrize("d", [1, 2, 7])
def test_whitener_triangles_are_packed_in_the_order_files_hold(d: int) -> None:
    """Files hold each whitener's upper triangle row by row (``np.triu_indices`` order);
    packing and unpacking keep that order and the zeros below the diagonal."""
    from padim_core import model_files

    rng = np.random.default_rng(d)
    whitener = np.triu(rng.normal(size=(3, d, d))).astype(np.float32)
    rows, cols = np.triu_indices(d)
    packed = model_files.pack_upper(whitener)
    np.testing.assert_array_equal(packed, whitener[:, rows, cols])
    np.testing.assert_array_equal(model_files.unpack_upper(packed, d), whitener)
