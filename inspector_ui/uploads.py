"""Turning browser uploads (loose files or .zip archives) and the demo set into engine inputs.

Uploads are kept as the bytes the browser sent: the engine decodes each image exactly once
(during fit / predict), so training from the browser costs no more than the CLI. Archives are
unpacked by :func:`padim_core.archives.extract_zip` into a per-session temporary folder that is
deleted before the function returns; only the member bytes stay, in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from padim_core.errors import InvalidInputError, PadimError
from padim_core.limits import IMAGE_EXTENSIONS, MAX_MODEL_UPLOAD_MB, MAX_UPLOAD_MB

from .state import ImageData

#: The caps the file uploaders give the browser (``max_upload_size``): images, zips and masks;
#: model files. The app checks sizes itself as well (``MAX_UPLOAD_MB``, ``MAX_MODEL_UPLOAD_MB``).
IMAGE_UPLOADER_MB: int = MAX_UPLOAD_MB
MODEL_UPLOADER_MB: int = MAX_MODEL_UPLOAD_MB

if TYPE_CHECKING:
    from padim_core.datasets import MVTecCategory

DEMO_DIR_ENV = "PADIM_INSPECTOR_DEMO_DIR"
"""Environment variable naming a demo set folder to use instead of the bundled one (tests)."""

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass
class ImageBatch:
    """Images ready for the engine (names are unique) and the problems met collecting them."""

    names: list[str] = field(default_factory=list)
    data: list[ImageData] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    label: str = ""

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, data: ImageData) -> None:
        """Append one image, renaming it when the name is already taken."""
        unique, n = name, 2
        taken = set(self.names)
        while unique in taken:
            stem, dot, ext = name.rpartition(".")
            unique = f"{stem} ({n}).{ext}" if dot else f"{name} ({n})"
            n += 1
        self.names.append(unique)
        self.data.append(data)

    def sources(self) -> dict[str, ImageData]:
        """name -> data, for later re-use (Compare)."""
        return dict(zip(self.names, self.data, strict=True))

    @classmethod
    def from_sources(cls, sources: dict[str, ImageData], label: str = "") -> ImageBatch:
        """A batch of images kept earlier (e.g. to score them again with a new model)."""
        batch = cls(label=label)
        for name, data in sources.items():
            batch.add(name, data)
        return batch


def session_tag() -> str:
    """A short id of the current browser session (for naming temporary folders)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is not None:
            return str(ctx.session_id)[:8]
    except Exception:  # noqa: BLE001 - outside Streamlit there is no session
        pass
    return "nosession"


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary folder private to this session, removed on exit (even after errors)."""
    with tempfile.TemporaryDirectory(prefix=f"padim-inspector-{session_tag()}-") as tmp:
        yield Path(tmp)


def is_zip(name: str, data: bytes) -> bool:
    """True for a .zip name or zip magic bytes."""
    return name.lower().endswith(".zip") or data[:4] in ZIP_MAGIC


def collect_images(files: Iterable[tuple[str, bytes]], label: str = "") -> ImageBatch:
    """Gather uploaded ``(name, bytes)`` pairs into an :class:`ImageBatch`.

    Zip archives are unpacked (safely) and their image members taken as bytes; empty files,
    empty or unsafe archives are reported in ``problems`` as ``(name, problem)``. Images are
    not decoded here: the engine reports undecodable ones when it reads them.
    """
    batch = ImageBatch(label=label)
    for name, data in files:
        if not data:
            batch.problems.append((name, "the file is empty"))
        elif len(data) > MAX_UPLOAD_MB * 1024 * 1024:
            batch.problems.append((name, f"larger than the {MAX_UPLOAD_MB} MB upload limit"))
        elif is_zip(name, data):
            _add_archive(batch, name, data)
        else:
            batch.add(name, data)
    return batch


def uploaded_batch(files: Any) -> ImageBatch:
    """What ``st.file_uploader`` returned (None, one file or a list) as an :class:`ImageBatch`
    labelled "cracked.png" / "batch.zip" / "12 uploaded files"."""
    if files is None:
        files = []
    elif not isinstance(files, list):
        files = [files]
    label = files[0].name if len(files) == 1 else f"{len(files)} uploaded files"
    return collect_images([(f.name, f.getvalue()) for f in files], label=label)


def _add_archive(batch: ImageBatch, name: str, data: bytes) -> None:
    """Unpack one archive into a scratch folder and keep its images' bytes."""
    from padim_core.archives import extract_zip

    with scratch_dir() as tmp:
        try:
            archive = extract_zip(data, tmp, name=name)
        except PadimError as err:
            batch.problems.append(_split_error(err, name))
            return
        for member, reason in archive.skipped:
            batch.problems.append((f"{name}: {member}", reason))
        images = [p for p in archive.files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not images:
            if not archive.skipped:
                batch.problems.append((name, "the archive holds no images"))
            else:
                batch.problems.append((name, "no usable images in the archive"))
            return
        for path in sorted(images):
            rel = path.relative_to(tmp).as_posix()
            batch.add(f"{Path(name).stem}/{rel}", path.read_bytes())


def _split_error(err: Exception, fallback: str) -> tuple[str, str]:
    """(source, problem) from an engine error; ``str(err)`` already starts with the source."""
    if isinstance(err, InvalidInputError):
        return err.source, err.problem
    return fallback, str(err)


def demo_root() -> Path:
    """The demo set folder: ``$PADIM_INSPECTOR_DEMO_DIR`` if set, else the bundled one."""
    override = os.environ.get(DEMO_DIR_ENV)
    if override:
        return Path(override)
    from padim_core.demo import ensure_demo_set

    return ensure_demo_set()


def demo_category() -> MVTecCategory:
    """The demo set as an MVTec category (train / test / ground truth)."""
    from padim_core.datasets import MVTecCategory

    return MVTecCategory.from_folder(demo_root())


def train_batch(category: MVTecCategory, label: str) -> ImageBatch:
    """A category's defect-free training images, named ``train/good/<file>`` (as paths)."""
    batch = ImageBatch(label=label)
    for path in category.train:
        batch.add(f"train/good/{Path(path).name}", Path(path))
    return batch


def labelled_batch(category: MVTecCategory, label: str) -> ImageBatch:
    """A category's test images, good and defective, named ``<defect type>/<file>``."""
    batch = ImageBatch(label=label)
    for item in category.test:
        batch.add(f"{item.defect_type}/{Path(item.path).name}", Path(item.path))
    return batch
