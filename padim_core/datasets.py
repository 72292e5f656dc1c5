"""Reading image sets from disk: plain image folders and MVTec-AD style categories.

MVTec layout of one category (e.g. ``bottle/``)::

    train/good/*.png                    normal images for fitting
    test/<defect type>/*.png            test images; the type "good" is normal
    ground_truth/<defect type>/<stem>_mask.png   defect masks (optional here)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from padim_core.errors import InvalidInputError
from padim_core.images import is_visible_folder, iter_image_files, subfolder_hint
from padim_core.limits import IMAGE_EXTENSIONS

#: Folder name of normal (defect-free) images in the MVTec layout.
NORMAL_LABEL = "good"

_LAYOUT_HINT = "expected train/good, test/<defect type> and optionally ground_truth/<defect type>"


@dataclass(frozen=True)
class LabeledImage:
    """One test image with its defect type ("good" for normal) and optional mask file."""

    path: Path
    defect_type: str
    is_anomalous: bool
    mask_path: Path | None


def _visible_subfolders(folder: Path) -> list[Path]:
    """Subfolders sorted by name, without hidden ones and macOS ``__MACOSX`` litter."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and is_visible_folder(p.name)),
                  key=lambda p: p.name)


def _find_mask(root: Path, defect_type: str, image: Path) -> Path | None:
    """``ground_truth/<type>/<stem>_mask.<ext>`` (MVTec), else ``<stem>.<ext>``, else None."""
    folder = root / "ground_truth" / defect_type
    if not folder.is_dir():
        return None
    extensions = [".png", *sorted(IMAGE_EXTENSIONS - {".png"})]
    for stem in (f"{image.stem}_mask", image.stem):
        for extension in extensions:
            candidate = folder / f"{stem}{extension}"
            if candidate.is_file():
                return candidate
    return None


@dataclass
class MVTecCategory:
    """An MVTec-AD style category folder: training images and labelled test images."""

    root: Path
    train: list[Path]
    test: list[LabeledImage]

    @property
    def defect_types(self) -> list[str]:
        """Test defect types in folder order ("good" included if present)."""
        return list(dict.fromkeys(item.defect_type for item in self.test))

    @classmethod
    def from_folder(cls, root: str | os.PathLike) -> MVTecCategory:
        """Read ``root`` in MVTec layout; InvalidInputError says what is missing.

        Defect images without a mask get ``mask_path=None``; good images never have one.
        Empty defect-type folders are ignored; a test folder with no images is an error.
        """
        folder = Path(root)
        if not folder.is_dir():
            raise InvalidInputError(str(folder), "is not a folder")
        if not (folder / "train" / NORMAL_LABEL).is_dir():
            raise InvalidInputError(
                str(folder), f"is not an MVTec-style category: missing train/good ({_LAYOUT_HINT})"
            )
        if not (folder / "test").is_dir():
            raise InvalidInputError(
                str(folder), f"is not an MVTec-style category: missing test/ ({_LAYOUT_HINT})"
            )
        train = iter_image_files(folder / "train" / NORMAL_LABEL)
        test: list[LabeledImage] = []
        for type_folder in _visible_subfolders(folder / "test"):
            try:
                images = iter_image_files(type_folder)
            except InvalidInputError:
                continue  # an empty defect-type folder contributes nothing
            defect_type = type_folder.name
            anomalous = defect_type != NORMAL_LABEL
            for image in images:
                mask = _find_mask(folder, defect_type, image) if anomalous else None
                test.append(LabeledImage(image, defect_type, anomalous, mask))
        if not test:
            raise InvalidInputError(
                str(folder / "test"), "contains no images in any test/<defect type> folder"
            )
        return cls(root=folder, train=train, test=test)


def is_mvtec_category(folder: str | os.PathLike) -> bool:
    """True if ``folder`` has a ``train/good`` subfolder."""
    return (Path(folder) / "train" / NORMAL_LABEL).is_dir()


def find_dataset_root(folder: str | os.PathLike) -> Path:
    """The MVTec category folder in ``folder``: itself, or its single subfolder with
    ``train/good`` (zips often wrap everything in one folder). Raises InvalidInputError.
    """
    base = Path(folder)
    if not base.is_dir():
        raise InvalidInputError(str(base), "is not a folder")
    if is_mvtec_category(base):
        return base
    candidates = [sub for sub in _visible_subfolders(base) if is_mvtec_category(sub)]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(sub.name for sub in candidates)
        raise InvalidInputError(str(base), f"contains several categories ({names}); choose one")
    raise InvalidInputError(
        str(base), f"no MVTec-style category found: no train/good folder ({_LAYOUT_HINT})"
    )


def training_images(path: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Normal images to fit on: ``train/good`` of an MVTec category (also one wrapped in a
    single subfolder), else the image files directly inside the folder (``recursive``: and
    in every folder below it).
    """
    folder = Path(path)
    if not folder.exists():
        raise InvalidInputError(str(folder), "folder not found")
    if not folder.is_dir():
        raise InvalidInputError(str(folder), "is not a folder")
    if is_mvtec_category(folder):
        return iter_image_files(folder / "train" / NORMAL_LABEL)
    wrapped = any(is_mvtec_category(sub) for sub in _visible_subfolders(folder))
    if not (wrapped and recursive):  # recursing into a category would fit on its defects
        try:
            return iter_image_files(folder, recursive=recursive)
        except InvalidInputError as err:
            if not wrapped:
                raise InvalidInputError(
                    str(folder), "contains no image files and is not an MVTec-style category "
                    "(no train/good folder)" + ("" if recursive else subfolder_hint(folder))
                ) from err
    root = find_dataset_root(folder)  # raises if several categories are wrapped here
    return iter_image_files(root / "train" / NORMAL_LABEL)
