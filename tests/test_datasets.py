"""Tests for padim_core.datasets: MVTec categories, wrapped roots, training image lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from padim_core.datasets import (
    NORMAL_LABEL,
    LabeledImage,
    MVTecCategory,
    find_dataset_root,
    training_images,
)
from padim_core.errors import InvalidInputError


def write_png(path: Path, value: int = 50) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, dtype=np.uint8)).save(path)
    return path


def make_category(root: Path) -> Path:
    """A small MVTec-style category with one missing mask and some litter."""
    for name in ("000.png", "001.png", "002.png"):
        write_png(root / "train" / "good" / name)
    write_png(root / "test" / "good" / "000.png")
    write_png(root / "test" / "crack" / "000.png")
    write_png(root / "test" / "crack" / "001.png")
    write_png(root / "test" / "broken_large" / "000.png")
    write_png(root / "ground_truth" / "crack" / "000_mask.png", 255)
    write_png(root / "ground_truth" / "broken_large" / "000_mask.png", 255)
    (root / "test" / ".ipynb_checkpoints").mkdir()
    write_png(root / "test" / ".ipynb_checkpoints" / "000.png")
    (root / "test" / "empty_type").mkdir()
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")
    return root


def test_from_folder_reads_train_test_and_masks(tmp_path: Path) -> None:
    root = make_category(tmp_path / "bottle")
    category = MVTecCategory.from_folder(root)
    assert category.root == root
    assert category.train == [root / "train" / "good" / f"00{i}.png" for i in range(3)]
    gt = root / "ground_truth"
    assert category.test == [
        LabeledImage(
            root / "test/broken_large/000.png",
            "broken_large",
            True,
            gt / "broken_large/000_mask.png",
        ),
        LabeledImage(root / "test/crack/000.png", "crack", True, gt / "crack/000_mask.png"),
        LabeledImage(root / "test/crack/001.png", "crack", True, None),
        LabeledImage(root / "test/good/000.png", NORMAL_LABEL, False, None),
    ]
    assert category.defect_types == ["broken_large", "crack", "good"]


def test_good_images_never_get_a_mask(tmp_path: Path) -> None:
    root = make_category(tmp_path / "c")
    write_png(root / "ground_truth" / "good" / "000_mask.png")
    good = [item for item in MVTecCategory.from_folder(root).test if not item.is_anomalous]
    assert [item.mask_path for item in good] == [None]


def test_mask_without_suffix_is_found(tmp_path: Path) -> None:
    root = make_category(tmp_path / "c")
    write_png(root / "ground_truth" / "crack" / "001.png", 255)
    crack = [item for item in MVTecCategory.from_folder(root).test if item.defect_type == "crack"]
    assert [item.mask_path.name if item.mask_path else None for item in crack] == [
        "000_mask.png",
        "001.png",
    ]


def test_labeled_image_is_frozen(tmp_path: Path) -> None:
    item = LabeledImage(tmp_path / "x.png", "good", False, None)
    with pytest.raises(AttributeError):
        item.defect_type = "crack"  # type: ignore[misc]


@pytest.mark.parametrize(
    "remove,problem",
    [
        ("train/good", "missing train/good"),
        ("test", "missing test/"),
    ],
)
def test_from_folder_says_what_is_missing(tmp_path: Path, remove: str, problem: str) -> None:
    import shutil

    root = make_category(tmp_path / "c")
    shutil.rmtree(root / remove)
    with pytest.raises(InvalidInputError) as err:
        MVTecCategory.from_folder(root)
    assert err.value.source == str(root)
    assert problem in err.value.problem
    assert "expected train/good, test/<defect type>" in err.value.problem


def test_from_folder_with_empty_train_or_test(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "train" / "good").mkdir(parents=True)
    (root / "test" / "good").mkdir(parents=True)
    with pytest.raises(InvalidInputError) as err:
        MVTecCategory.from_folder(root)
    assert err.value.source == str(root / "train" / "good")
    assert err.value.problem.startswith("contains no image files")
    write_png(root / "train" / "good" / "000.png")
    with pytest.raises(InvalidInputError) as err:
        MVTecCategory.from_folder(root)
    assert err.value.source == str(root / "test")
    assert "contains no images" in err.value.problem


def test_from_folder_rejects_non_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is not a folder"):
        MVTecCategory.from_folder(tmp_path / "missing")


def test_find_dataset_root(tmp_path: Path) -> None:
    direct = make_category(tmp_path / "direct")
    assert find_dataset_root(direct) == direct
    wrapper = tmp_path / "wrapper"
    inner = make_category(wrapper / "bottle")
    (wrapper / "__MACOSX").mkdir()
    assert find_dataset_root(wrapper) == inner
    several = tmp_path / "several"
    make_category(several / "bottle")
    make_category(several / "cable")
    with pytest.raises(InvalidInputError) as err:
        find_dataset_root(several)
    assert str(err.value) == f"{several}: contains several categories (bottle, cable); choose one"
    (tmp_path / "nothing" / "images").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="no MVTec-style category found"):
        find_dataset_root(tmp_path / "nothing")


def test_training_images_from_plain_folder_and_categories(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    write_png(plain / "b.png")
    write_png(plain / "a.jpg.png")
    (plain / "notes.txt").write_text("x")
    assert [p.name for p in training_images(plain)] == ["a.jpg.png", "b.png"]
    category = make_category(tmp_path / "cat")
    assert training_images(category) == MVTecCategory.from_folder(category).train
    wrapped = tmp_path / "wrapped"
    inner = make_category(wrapped / "bottle")
    assert [p.parent for p in training_images(wrapped)] == [inner / "train" / "good"] * 3


def test_training_images_only_needs_train_good(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_png(root / "train" / "good" / "x.png")
    assert training_images(root) == [root / "train" / "good" / "x.png"]


def test_training_images_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="folder not found"):
        training_images(tmp_path / "missing")
    file = write_png(tmp_path / "one.png")
    with pytest.raises(InvalidInputError) as err:
        training_images(file)
    assert str(err.value) == f"{file}: is not a folder"
    empty = tmp_path / "empty"
    (empty / "docs").mkdir(parents=True)
    with pytest.raises(InvalidInputError) as err:
        training_images(empty)
    assert str(err.value) == (
        f"{empty}: contains no image files and is not an MVTec-style category "
        "(no train/good folder)"
    )
    several = tmp_path / "several"
    make_category(several / "a")
    make_category(several / "b")
    with pytest.raises(InvalidInputError, match="contains several categories"):
        training_images(several)
