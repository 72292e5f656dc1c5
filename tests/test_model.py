"""PadimModel plumbing: device placement of fitted state, save / load, result helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padim_core import NotFittedError, PadimModel
from padim_core.gaussian import PatchGaussian


def textures(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(60, 200, (72, 72, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def model() -> PadimModel:
    return PadimModel(backbone="resnet18", weights="random", d=12, image_size=64, crop=64,
                      seed=3, device="cpu").fit(textures(10, 0))


def test_state_fitted_on_an_accelerator_predicts_on_the_cpu(model: PadimModel) -> None:
    """A model whose Gaussians are torch tensors (fitted on a GPU) scores on a CPU backbone,
    and predict leaves the fitted state as it was."""
    images = textures(2, 1)
    expected = model.predict(images).scores
    numpy_gaussian = model.state_.gaussian
    on_gpu = PatchGaussian(torch.from_numpy(numpy_gaussian.mean),
                           torch.from_numpy(numpy_gaussian.whitener))
    model.state_.gaussian = on_gpu
    try:
        np.testing.assert_allclose(model.predict(images).scores, expected, rtol=1e-6)
        np.testing.assert_allclose(model.predict(images).scores, expected, rtol=1e-6)
        assert model.state_.gaussian is on_gpu
        assert isinstance(on_gpu.whitener, torch.Tensor)
    finally:
        model.state_.gaussian = numpy_gaussian


def test_predict_does_not_change_the_fitted_state(model: PadimModel) -> None:
    before = {name: getattr(model.state_, name) for name in vars(model.state_)}
    model.predict(textures(2, 5))
    list(model.iter_predict(textures(1, 6)))
    assert all(getattr(model.state_, name) is value for name, value in before.items())


def test_save_load_round_trip(model: PadimModel, tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = PadimModel.load(path, device="cpu")
    images = textures(2, 2)
    np.testing.assert_allclose(again.predict(images).scores, model.predict(images).scores,
                               rtol=1e-6)
    assert again.card()["d"] == 12 and again.image_threshold_ == model.image_threshold_
    from_bytes = PadimModel.from_bytes(model.to_bytes(), device="cpu")
    np.testing.assert_array_equal(from_bytes.state_.channel_index, model.state_.channel_index)


def test_normalized_scores_and_verdicts_do_not_depend_on_the_batch(model: PadimModel) -> None:
    images = textures(3, 4)
    alone = model.predict(images[:1])
    together = model.predict(images)
    np.testing.assert_allclose(alone.normalized, together.normalized[:1], rtol=1e-5)
    thr = float(together.scores[1])
    assert together.verdicts(thr)[1] and not together.verdicts(thr + 1e-3)[1]


def test_unfitted_model_says_so() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        PadimModel().predict(textures(1, 0))


def test_unfitted_attributes_look_absent_as_in_scikit_learn() -> None:
    """hasattr(model, "image_threshold_") raised NotFittedError: scikit-learn's is an
    AttributeError too, which check_is_fitted-style code relies on."""
    assert not hasattr(PadimModel(), "image_threshold_")


def test_settings_follow_scikit_learn(model: PadimModel) -> None:
    """get_params / set_params / clone / repr were missing: sklearn.base.clone raised and
    repr(model) was '<padim_core.model.PadimModel object at 0x…>'."""
    from sklearn.base import clone

    from padim_core import InvalidInputError

    copy = clone(model)
    assert copy.state_ is None and copy.get_params().keys() == model.get_params().keys()
    assert {k: v for k, v in copy.get_params().items() if k != "region"} == \
        {k: v for k, v in model.get_params().items() if k != "region"}
    assert copy._extractor is model._extractor               # the backbone is shared
    copy.set_params(d=6, image_size=96)                      # crop given: stays 64
    assert (copy.config.d, copy.config.image_size, copy.config.crop) == (6, 96, 64)
    assert PadimModel(backbone="resnet18").set_params(backbone="efficientnet_lite2"
                                                      ).config.d == 192   # derived again
    with pytest.raises(InvalidInputError, match="^d: cannot change on a fitted model"):
        model.set_params(d=6)
    model.set_params(d=12, decode_workers=0)                 # unchanged, or not fit-defining
    assert model.decode_workers == 0
    model.set_params(decode_workers=None)                    # the shared fixture as it was
    with pytest.raises(InvalidInputError, match="^colour: is not a setting"):
        copy.set_params(colour="red")
    assert repr(model) == ("PadimModel(backbone='resnet18', d=12, image_size=64, crop=64, "
                           "device='cpu', seed=3, weights='random')  # fitted on 10 images, "
                           f"image threshold {model.image_threshold_:.4g}")


@pytest.mark.parametrize("field, value, says", [
    ("d", 2.5, "d: must be a whole number, got 2.5"),            # was cut to 2 silently
    ("image_size", "abc", "image_size: must be a whole number, got 'abc'"),   # int()'s words
    ("image_size", 10, "image_size: must be at least 32, got 10"),             # blamed crop
])
def test_constructor_names_the_bad_setting(field: str, value: object, says: str) -> None:
    from padim_core import InvalidInputError

    with pytest.raises(InvalidInputError, match=says.replace("(", r"\(")):
        PadimModel(**{field: value})
    assert PadimModel(d=np.int64(16), image_size=64.0).config.d == 16


def test_fitted_attributes_have_the_documented_shapes(model: PadimModel) -> None:
    h, w = model.grid_
    assert model.mean_.shape == (h * w, 12)
    assert model.whitener_.shape == (h * w, 12, 12)
    assert not np.tril(model.whitener_, -1).any()
    assert model.channel_index_.shape == (12,) and model.projection_ is None
    assert model.calibration_scores_.shape == (model.n_calibration_images_,)
    with pytest.raises(NotFittedError):
        _ = PadimModel(backbone="resnet18", weights="random", d=12).mean_


def test_joining_batches_keeps_every_image_and_one_batch_is_not_copied() -> None:
    """Why: predict joins its per-batch results; for one batch (the app's single image, a
    line camera's frame) copying the maps and crops again is pure overhead, and on a GPU a
    large share of what predict costs beyond the backbone."""
    from padim_core.model import PredictResult

    rng = np.random.default_rng(0)

    def part(names: list[str]) -> PredictResult:
        n = len(names)
        return PredictResult(names, rng.random(n), rng.random((n, 8, 8)).astype(np.float32),
                             np.zeros((n, 8, 8, 3), np.uint8), 1.0, 2.0)

    one = part(["a", "b"])
    joined = PredictResult.concat([one], 3.0, 4.0, 8)
    assert joined.maps is one.maps and joined.images is one.images
    assert (joined.image_threshold, joined.pixel_threshold) == (3.0, 4.0)
    assert (one.image_threshold, one.pixel_threshold) == (1.0, 2.0)     # left as it was
    two = PredictResult.concat([one, part(["c"])], 3.0, 4.0, 8)
    assert two.names == ["a", "b", "c"] and two.maps.shape == (3, 8, 8)
    np.testing.assert_array_equal(two.maps[:2], one.maps)


def test_mean_training_crop_is_the_rounded_mean_of_the_crops() -> None:
    """Why: the region editor draws on the mean training crop; fit sums the crops in
    integers batch by batch, which must give the exact rounded mean over every batch."""
    from padim_core.images import resize_and_crop

    imgs = [np.full((64, 64, 3), v, np.uint8) for v in (255, 254, 1, 0, 7)]
    imgs[0][:8] = 3
    m = PadimModel(backbone="resnet18", weights="random", d=8, image_size=64, crop=64,
                   device="cpu", batch_size=2, calibration_fraction=0.0).fit(imgs)
    crops = np.stack([resize_and_crop(a, 64, 64) for a in imgs]).astype(np.float64)
    np.testing.assert_array_equal(m.mean_image_, np.rint(crops.mean(axis=0)).astype(np.uint8))


@pytest.mark.parametrize("ahead_by", [1, 2])
def test_predict_with_batches_queued_ahead_gives_the_same_results_in_order(
        model: PadimModel, monkeypatch: pytest.MonkeyPatch, ahead_by: int) -> None:
    """Why: on a GPU predict queues the next batch before fetching the current one's maps
    (so the device is not idle while the host copies); that must not change any result,
    their order, the unreadable inputs listed, or the progress a user sees."""
    from padim_core import model as model_module

    inputs: list = [*textures(3, 5), b"not an image", *textures(4, 6)]
    names = [f"img{i}" for i in range(len(inputs))]
    from dataclasses import replace

    monkeypatch.setattr(model, "config", replace(model.config, batch_size=2))

    def run() -> tuple[list, list]:
        calls: list = []
        parts = list(model.iter_predict(inputs, progress=lambda *a: calls.append(a),
                                        names=names))
        return parts, calls

    direct, direct_calls = run()
    monkeypatch.setattr(model_module, "predict_lookahead", lambda device: ahead_by)
    ahead, ahead_calls = run()
    assert [p.names for p in ahead] == [p.names for p in direct]
    assert [p.skipped for p in ahead] == [p.skipped for p in direct]
    assert sum(len(p.skipped) for p in ahead) == 1 and "img3" in str(ahead[1].skipped)
    for a, d in zip(ahead, direct, strict=True):
        np.testing.assert_array_equal(a.maps, d.maps)
        np.testing.assert_array_equal(a.scores, d.scores)
    assert ahead_calls == direct_calls and ahead_calls[-1][:2] == (8, 8)
