"""PadimModel.partial_fit: adding normal images equals fit on the union (same calibration
images), in memory and through a model file; bad input leaves the model as it was."""

from __future__ import annotations

import functools
import io
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from padim_core import InvalidInputError, PadimModel
from padim_core import model as model_module
from padim_core.gaussian import layout, patch_statistics, statistics_from_sums
from padim_core.thresholds import calibration_split

pytestmark = pytest.mark.filterwarnings("ignore:only .* training images:UserWarning")
SMALL = dict(backbone="resnet18", weights="random", d=100, image_size=64, crop=64, seed=3,
             device="cpu")


def textures(n: int, seed: int, size: int = 72) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(60, 200, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def refit(config: dict, base: list, extra: list) -> PadimModel:
    """fit on base + extra with the calibration images fit on base alone chose."""
    cfg = PadimModel(**config).config
    _, cal = calibration_split(len(base), cfg.calibration_fraction, cfg.seed)
    return PadimModel(**config).fit(base + extra, calibration=cal)


def covariances(model: PadimModel) -> np.ndarray:
    """(P, d, d) float64 covariances from the kept sums."""
    data = model.state_.update_data
    d = data.total.shape[1]
    full = np.zeros((data.total.shape[0], d, d))
    rows, cols = np.triu_indices(d)
    full[:, rows, cols] = data.second
    full[:, cols, rows] = data.second
    mean = data.total / data.n
    return (full - data.n * mean[:, :, None] * mean[:, None, :]) / (data.n - 1)


def assert_same_model(got: PadimModel, want: PadimModel, probe: list) -> None:
    assert got.n_train_images_ == want.n_train_images_
    np.testing.assert_allclose(got.mean_, want.mean_, rtol=1e-5, atol=1e-6)
    # relative to the largest entry: embeddings of one image differ in the last float32
    # bits with the batch it was embedded in, which shows on entries near zero
    cov = covariances(want)
    np.testing.assert_allclose(covariances(got), cov, rtol=1e-5, atol=1e-5 * abs(cov).max())
    a, b = got.predict(probe), want.predict(probe)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5, atol=1e-5 * float(b.maps.max()))
    np.testing.assert_allclose(got.calibration_scores_, want.calibration_scores_, rtol=1e-4)
    assert got.image_threshold_ == pytest.approx(want.image_threshold_, rel=1e-4)
    assert got.pixel_threshold_ == pytest.approx(want.pixel_threshold_, rel=1e-4)


BASE, EXTRA, PROBE = textures(12, 0), textures(4, 1), textures(3, 2)


@pytest.fixture(scope="module")
def fitted() -> PadimModel:
    return PadimModel(**SMALL).fit(BASE)


@pytest.fixture(scope="module")
def union() -> PadimModel:
    return refit(SMALL, BASE, EXTRA)


def test_partial_fit_equals_fit_on_the_union(union: PadimModel) -> None:
    model = PadimModel(**SMALL).fit(BASE)
    before = model.image_threshold_, model.pixel_threshold_
    assert model.partial_fit(EXTRA) is model
    assert_same_model(model, union, PROBE)
    assert model.image_threshold_ != before[0]     # the calibration really was redone
    log = model.card()["updates"]
    assert [e["added_images"] for e in log] == [4]
    assert log[0]["n_train_images_before"] == 12
    assert (log[0]["image_threshold_before"], log[0]["pixel_threshold_before"]) == before


def test_many_small_updates_equal_one_fit(union: PadimModel) -> None:
    model = PadimModel(**SMALL).fit(BASE)
    for image in EXTRA:
        model.partial_fit([image])
    assert_same_model(model, union, PROBE)
    assert [e["added_images"] for e in model.card()["updates"]] == [1, 1, 1, 1]


def test_update_of_a_loaded_model_file(tmp_path, union: PadimModel,
                                       fitted: PadimModel) -> None:
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    loaded = PadimModel.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.predict(PROBE).scores, fitted.predict(PROBE).scores)
    loaded.partial_fit(EXTRA[:2])
    loaded.save(path)                                       # an update of an update
    again = PadimModel.load(path, device="cpu").partial_fit(EXTRA[2:])
    assert_same_model(again, union, PROBE)
    assert len(again.card()["updates"]) == 2


def test_compact_file_scores_the_same_but_cannot_be_updated(tmp_path,
                                                            fitted: PadimModel) -> None:
    full, compact = tmp_path / "full.safetensors", tmp_path / "compact.safetensors"
    fitted.save(full)
    fitted.save(compact, updatable=False)
    assert compact.stat().st_size < full.stat().st_size
    # bilinear upsampling (the default) needs format 4 either way; with the paper's nearest
    # upsampling a compact file stays readable by the oldest readers (format 1)
    assert file_version(compact) == file_version(full) == "4"
    small = PadimModel.load(compact, device="cpu")
    np.testing.assert_array_equal(small.predict(PROBE).scores, fitted.predict(PROBE).scores)
    assert small.card()["updatable"] is False and fitted.card()["updatable"] is True
    with pytest.raises(InvalidInputError, match="refit"):
        small.partial_fit(EXTRA)
    nearest = PadimModel(**{**SMALL, "upsample": "nearest"}).fit(BASE)
    nearest.save(full)
    nearest.save(compact, updatable=False)
    assert file_version(compact) == "1" and file_version(full) == "2"


def file_version(path) -> str:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])["__metadata__"]["format_version"]


def test_a_model_configured_not_updatable_keeps_nothing_for_updates() -> None:
    model = PadimModel(**SMALL, updatable=False).fit(BASE)
    assert model.state_.update_data is None and model.card()["update_data_mb"] == 0.0
    with pytest.raises(InvalidInputError, match="refit"):
        model.partial_fit(EXTRA)


def test_unfitted_model_partial_fit_is_fit() -> None:
    a = PadimModel(**SMALL).partial_fit(BASE)
    b = PadimModel(**SMALL).fit(BASE)
    np.testing.assert_array_equal(a.predict(PROBE).scores, b.predict(PROBE).scores)
    assert a.card()["updates"] == []


def test_other_sizes_and_modes_are_handled_as_in_fit(union: PadimModel) -> None:
    """Greyscale, RGBA and other sizes are converted and resized as fit converts them."""
    def encoded(arr: np.ndarray, mode: str, size: tuple[int, int]) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).convert(mode).resize(size).save(buf, format="PNG")
        return buf.getvalue()
    odd = [encoded(EXTRA[0], "L", (90, 70)), encoded(EXTRA[1], "RGBA", (50, 50))]
    model = PadimModel(**SMALL).fit(BASE).partial_fit(odd)
    want = refit(SMALL, BASE, odd)
    assert_same_model(model, want, PROBE)


def test_unreadable_files_are_skipped_and_listed(fitted: PadimModel) -> None:
    model = PadimModel(**SMALL).fit(BASE)
    model.partial_fit([b"not an image", EXTRA[0]], names=["junk.png", "good.png"])
    assert [name for name, _ in model.skipped_] == ["junk.png"]
    assert model.n_train_images_ == 13
    assert model.card()["updates"][0]["skipped"][0][0] == "junk.png"


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_an_image_file_is_added_once(tmp_path) -> None:
    """``padim update`` run twice on one folder added its images twice (72 → 84 images,
    the thresholds moving each time): the update log keeps each added file's SHA-256, so
    a file the model learned by an update is left out and listed, also after a save."""
    a, b = _png(EXTRA[0]), _png(EXTRA[1])
    model = PadimModel(**SMALL).fit(BASE)
    model.partial_fit([a, a], names=["a.png", "a again.png"])       # once within a call
    assert model.n_train_images_ == 13
    assert [n for n, _ in model.skipped_] == ["a again.png"]
    model.save(tmp_path / "m.safetensors")
    model = PadimModel.load(tmp_path / "m.safetensors")
    state = model.state_
    with pytest.warns(UserWarning, match="a.png: already learned by this model"):
        model.partial_fit([a], names=["a.png"])
    assert model.state_ is state                                    # nothing changed
    model.partial_fit([a, b], names=["a.png", "b.png"])
    assert model.n_train_images_ == 14
    assert [n for n, _ in model.skipped_] == ["a.png"]
    assert "already learned by this model" in model.skipped_[0][1]


def test_the_images_fit_learned_are_not_added_again(tmp_path) -> None:
    """An engineer adds new good images to the training folder and runs ``padim update`` on
    the folder: the images fit learned were counted a second time (n 12 → 26 instead of 14).
    fit records each file's SHA-256 (in the model file too), so only the new ones are
    added, and the model equals a fit on the union of distinct images."""
    old = [_png(im) for im in BASE]
    new = [_png(im) for im in EXTRA[:2]]
    names = [f"{i:03d}.png" for i in range(len(old) + len(new))]
    model = PadimModel(**SMALL).fit(old, names=names[:len(old)])
    assert len(model.train_sha256_) == len(old)
    model.save(tmp_path / "m.safetensors")
    model = PadimModel.load(tmp_path / "m.safetensors")
    model.partial_fit(old + new, names=names)
    assert model.n_train_images_ == len(old) + len(new)
    assert [n for n, _ in model.skipped_] == names[:len(old)]
    assert all("one of its training images" in why for _, why in model.skipped_)
    assert_same_model(model, refit(SMALL, old, new), PROBE)
    state = model.state_
    with pytest.warns(UserWarning, match="000.png: already learned by this model"):
        model.partial_fit(old[:1], names=names[:1])
    assert model.state_ is state


def test_zero_usable_images_change_nothing_and_say_so(fitted: PadimModel) -> None:
    state = fitted.state_
    with pytest.warns(UserWarning, match="unchanged.*|no usable images"):
        fitted.partial_fit([b"junk"], names=["junk.png"])
    with pytest.warns(UserWarning, match="no usable images"):
        fitted.partial_fit([])
    assert fitted.state_ is state


def test_an_update_failing_half_way_leaves_the_model_intact(monkeypatch) -> None:
    model = PadimModel(**SMALL).fit(BASE)
    state, data = model.state_, model.state_.update_data
    kept = data.second.copy(), data.total.copy()
    expected = model.predict(PROBE).scores

    def broken(*args, **kwargs):
        raise RuntimeError("interrupted")
    monkeypatch.setattr(model_module, "finalize", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.partial_fit(EXTRA)
    assert model.state_ is state and state.update_data is data
    np.testing.assert_array_equal(data.second, kept[0])
    np.testing.assert_array_equal(data.total, kept[1])
    np.testing.assert_array_equal(model.predict(PROBE).scores, expected)
    monkeypatch.undo()
    assert model.partial_fit(EXTRA).n_train_images_ == 16


def test_torch_statistics_store(monkeypatch) -> None:
    """The accelerator code path (torch store), forced on the CPU, gives the same update."""
    config = {**SMALL, "d": 20}
    want = PadimModel(**config).fit(BASE).partial_fit(EXTRA)
    monkeypatch.setattr(model_module, "patch_statistics",
                        functools.partial(patch_statistics, use_torch=True))
    monkeypatch.setattr(model_module, "statistics_from_sums",
                        functools.partial(statistics_from_sums, use_torch=True))
    got = PadimModel(**config).fit(BASE).partial_fit(EXTRA)
    assert_same_model(got, want, PROBE)
    assert_same_model(got, refit(config, BASE, EXTRA), PROBE)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_update_on_each_device(device: str) -> None:
    """On every device here (CUDA where present: the torch store and torch whiteners)."""
    config = {**SMALL, "d": 30, "device": device}
    model = PadimModel(**config).fit(BASE).partial_fit(EXTRA[:1]).partial_fit(EXTRA[1:])
    assert_same_model(model, refit(config, BASE, EXTRA), PROBE)


def test_d550_packed_statistics(monkeypatch) -> None:
    """d = 550 with packed (upper-triangle) sums, as large models store them."""
    monkeypatch.setattr(layout, "FULL_STORAGE_BYTES", 0)
    config = dict(backbone="wide_resnet50_2", weights="random", d=550, image_size=32,
                  crop=32, seed=5, device="cpu")
    base, extra, probe = textures(10, 3, 40), textures(3, 4, 40), textures(2, 5, 40)
    model = PadimModel(**config).fit(base)
    model.partial_fit(extra[:1]).partial_fit(extra[1:])
    assert_same_model(model, refit(config, base, extra), probe)


def test_explicit_calibration_indices_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="calibration"):
        PadimModel(**SMALL).fit(BASE[:4], calibration=[0, 9])
    with pytest.raises(InvalidInputError, match="calibration"):
        PadimModel(**SMALL).fit(BASE[:3], calibration=[0, 1])


@pytest.mark.parametrize(("stage_images", "p", "workers"), [(64, 7, 2), (3, 7, 2), (64, 37, 1),
                                                             (64, 37, 2)])
def test_updated_sums_equal_a_store_of_the_union(stage_images: int, p: int,
                                                 workers: int) -> None:
    """The CPU update store (kept sums + new images, added inside finalize) gives the sums,
    Gaussians and calibration distances of one store fed every image, also when the new
    images overflow one stage (some reach its sums before finalize), and when each thread
    reuses its scratch block for blocks of different sizes (37 patches: blocks of 3, the
    last of 1)."""
    from padim_core.gaussian import finalize
    from padim_core.gaussian.updated_sums import UpdatedSums

    rng = np.random.default_rng(0)
    d = 5
    old, new = (rng.normal(size=(p, k, d)).astype(np.float32) for k in (9, 8))
    union = patch_statistics(p, d).update(old).update(new)
    n, total, packed = union.packed_sums()
    kept = patch_statistics(p, d).update(old).packed_sums()
    kept_copy = kept[2].copy()
    store = UpdatedSums(*kept, stage_bytes=stage_images * p * d * 4, workers=workers)
    store.update(new[:, :4]).update(new[:, 4:6]).update(new[:, 6:])
    with pytest.raises(RuntimeError):
        store.packed_sums()
    want, want_sq = finalize(union, 0.01, holdout=old[:, :3])
    got, got_sq = finalize(store, 0.01, holdout=old[:, :3])
    np.testing.assert_allclose(got_sq, want_sq, rtol=1e-5)
    assert not np.tril(got.whitener, -1).any()
    got_n, got_total, got_packed = store.packed_sums()
    assert got_n == n == 17
    np.testing.assert_allclose(got_total, total, rtol=1e-12)
    np.testing.assert_allclose(got_packed, packed, rtol=1e-12)
    np.testing.assert_allclose(got.whitener, want.whitener, rtol=1e-5)
    np.testing.assert_array_equal(kept[2], kept_copy)          # the kept sums are untouched


def test_the_record_of_fit_files_is_checked_on_load_and_optional(tmp_path) -> None:
    """A file from before the record loads and updates (it cannot tell its training images
    then); a malformed record is refused with a message that names the file."""
    from padim_core import ModelFileError, model_files

    path = tmp_path / "m.safetensors"
    PadimModel(**SMALL).fit([_png(im) for im in BASE]).save(path)
    tensors, meta = model_files.read(path)
    assert len(meta["train_sha256"]) == len(BASE)
    del meta["train_sha256"]
    model_files.write(path, tensors, meta)
    older = PadimModel.load(path)
    assert older.train_sha256_ == ()
    assert older.partial_fit([_png(EXTRA[0])]).n_train_images_ == len(BASE) + 1
    model_files.write(tmp_path / "bad.safetensors", tensors, {**meta, "train_sha256": ["x"]})
    with pytest.raises(ModelFileError, match="bad.safetensors.*train_sha256"):
        PadimModel.load(tmp_path / "bad.safetensors")


def _resaved(array: np.ndarray) -> bytes:
    """The same pixels in other bytes (what an image tool or a copy job writes)."""
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def test_a_calibration_image_in_other_bytes_is_not_added_again() -> None:
    """The trial: the 12 calibration images re-saved by an image tool and given to
    ``padim update`` took the image threshold from 31.8 to 8.5 (every good part NG): each
    one's leave-one-out score lost only one of its two copies. Their pixels are recognised
    now; other images in the same call are added, and an image merely like a training one
    is still learned."""
    base = textures(16, 0)
    model = PadimModel(**SMALL).fit([_png(im) for im in base])
    cfg = model.config
    _, cal = calibration_split(len(base), cfg.calibration_fraction, cfg.seed)
    copies = [_resaved(base[i]) for i in cal]
    assert all(c != _png(base[i]) for c, i in zip(copies, cal, strict=True))
    near = np.clip(base[cal[0]].astype(int) + 3, 0, 255).astype(np.uint8)   # not a copy
    names = [f"copy_{i}.png" for i in cal] + ["new.png", "near.png"]
    model.partial_fit([*copies, _png(EXTRA[0]), _png(near)], names=names)
    assert model.n_train_images_ == len(base) + 2
    assert [n for n, _ in model.skipped_] == names[:len(cal)]
    assert all("the same picture as one of the model's training images" in why
               for _, why in model.skipped_)
    refit_model = PadimModel(**SMALL).fit([_png(im) for im in base] + [_png(EXTRA[0]),
                                                                          _png(near)],
                                          calibration=cal)
    assert model.image_threshold_ == pytest.approx(refit_model.image_threshold_, rel=1e-5)


def test_max_score_leaves_out_what_the_model_calls_ng(fitted: PadimModel) -> None:
    """``padim update`` learned two parts the model scored NG (and then passed an unadded
    defect of the same kind): with ``max_score`` they are left out and listed with their
    score; without it they are learned, as partial_fit promises."""
    model = PadimModel.from_bytes(fitted.to_bytes(), device="cpu")
    odd = np.zeros((72, 72, 3), np.uint8)
    odd[20:50, 20:50] = 255                                # unlike every training texture
    before = model.predict([odd, EXTRA[0]]).scores
    limit = float(before.mean())                          # between the two
    assert before[0] > 1.5 * before[1]
    model.partial_fit([odd, EXTRA[0]], names=["odd.png", "good.png"], max_score=limit)
    assert model.n_train_images_ == fitted.n_train_images_ + 1
    [(name, why)] = model.skipped_
    assert name == "odd.png" and f"scored {before[0]:.4g}, at or above" in why
    assert PadimModel.from_bytes(fitted.to_bytes(), device="cpu").partial_fit(
        [odd]).n_train_images_ == fitted.n_train_images_ + 1
