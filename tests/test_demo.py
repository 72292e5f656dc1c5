"""Tests for the synthetic demo set: layout, counts, determinism, masks that match the defects."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import cv2
import numpy as np
import pytest

from padim_core import demo
from padim_core.demo import DEFECT_TYPES, ensure_demo_set, make_demo_set, render_sample


def _digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by its relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small set (fast) with an uneven defect count, to check how defects are spread."""
    return make_demo_set(tmp_path_factory.mktemp("demo") / "set", n_train=5, n_test_good=3,
                         n_test_defect=7, seed=3)


def test_layout_and_counts(small_set: Path) -> None:
    """MVTec layout, the requested counts, a mask for every defect image and none for good."""
    assert len(list((small_set / "train" / "good").glob("*.png"))) == 5
    assert len(list((small_set / "test" / "good").glob("*.png"))) == 3
    counts = {d: len(list((small_set / "test" / d).glob("*.png"))) for d in DEFECT_TYPES}
    assert sum(counts.values()) == 7 and sorted(counts.values()) == [2, 2, 3]
    assert sorted(p.name for p in (small_set / "test").iterdir()) == sorted(
        ["good", *DEFECT_TYPES]
    )
    assert sorted(p.name for p in (small_set / "ground_truth").iterdir()) == sorted(DEFECT_TYPES)
    assert not (small_set / "ground_truth" / "good").exists()
    for d in DEFECT_TYPES:
        stems = sorted(p.stem for p in (small_set / "test" / d).glob("*.png"))
        masks = sorted(p.name for p in (small_set / "ground_truth" / d).glob("*.png"))
        assert masks == [f"{s}_mask.png" for s in stems]


def test_image_format(small_set: Path) -> None:
    """Images are 256x256 RGB uint8 PNGs; masks are single-channel 0/255 of the same size."""
    img = cv2.imread(str(small_set / "train" / "good" / "000.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    assert img.std() > 5, "a textured surface, not a flat colour"
    for mask_path in (small_set / "ground_truth").rglob("*_mask.png"):
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (256, 256) and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) == {0, 255}, mask_path


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    """Two generations with one seed give identical bytes; another seed gives other images."""
    kw = {"n_train": 2, "n_test_good": 1, "n_test_defect": 3}
    a = _digest(make_demo_set(tmp_path / "a", seed=7, **kw))
    b = _digest(make_demo_set(tmp_path / "b", seed=7, **kw))
    c = _digest(make_demo_set(tmp_path / "c", seed=8, **kw))
    assert a == b
    assert len(a) == 2 + 1 + 3 + 3
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_normal_images_vary() -> None:
    """Normals differ (shift, rotation, lighting), so the model must learn a distribution."""
    imgs = [render_sample(0, "train", "good", i)[1].astype(np.float32) for i in range(3)]
    assert np.abs(imgs[0] - imgs[1]).mean() > 5
    assert np.abs(imgs[1] - imgs[2]).mean() > 5


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_mask_matches_changed_pixels(kind: str) -> None:
    """Every changed pixel is in the mask, nearly every mask pixel changed, and visibly so."""
    for i in range(4):
        clean, image, mask = render_sample(0, "test", kind, i)
        changed = np.any(image != clean, axis=-1)
        assert mask.any()
        assert not (changed & ~mask).any(), "pixels changed outside the mask"
        assert changed[mask].mean() > 0.95, "mask marks pixels that did not change"
        assert 10 <= mask.sum() <= 0.1 * mask.size, "defect is visible but small"
        diff = np.abs(image.astype(np.int16) - clean.astype(np.int16)).max(axis=-1)
        assert np.median(diff[mask]) >= 10, "defect is clearly visible"


def test_written_masks_align_with_written_images(small_set: Path) -> None:
    """The mask files on disk are exactly the rendered masks of the images on disk."""
    for kind in DEFECT_TYPES:
        clean, image, mask = render_sample(3, "test", kind, 0)
        on_disk = cv2.imread(str(small_set / "test" / kind / "000.png"))
        assert np.array_equal(cv2.cvtColor(on_disk, cv2.COLOR_BGR2RGB), image)
        gt = cv2.imread(str(small_set / "ground_truth" / kind / "000_mask.png"), 0)
        assert np.array_equal(gt > 0, mask)


def test_good_images_have_empty_mask() -> None:
    """A good image is its clean surface with an empty mask."""
    clean, image, mask = render_sample(0, "test", "good", 0)
    assert np.array_equal(clean, image) and not mask.any()


def test_refuses_non_empty_folder(tmp_path: Path) -> None:
    """Never mix a new set with left-overs of another."""
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(FileExistsError):
        make_demo_set(tmp_path, n_train=1, n_test_good=1, n_test_defect=1)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown defect kind"):
        render_sample(0, "test", "crack", 0)


def _ensure_in_child(root: str) -> str:
    return str(ensure_demo_set(Path(root)))


def test_ensure_demo_set_once_and_concurrently(tmp_path: Path) -> None:
    """Two processes at once both get a complete set; no temp folders are left behind."""
    root = tmp_path / "cache" / "demo"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_ensure_in_child, [str(root), str(root)])
    assert results == [str(root), str(root)]
    assert len(list((root / "train" / "good").glob("*.png"))) == 60
    assert len(list((root / "test" / "good").glob("*.png"))) == 12
    assert sum(len(list((root / "test" / d).glob("*.png"))) for d in DEFECT_TYPES) == 18
    assert [p.name for p in root.parent.iterdir()] == ["demo"]
    before = _digest(root)
    assert ensure_demo_set(root) == root  # second call reuses, does not regenerate
    assert _digest(root) == before


def test_demo_set_path_is_versioned() -> None:
    assert f"v{demo.DEMO_VERSION}" in demo.demo_set_path().name
