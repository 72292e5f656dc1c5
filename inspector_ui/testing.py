"""Helpers for the app's tests (AppTest drivers, small data, crafted bad uploads).

Kept in the package so every ``tests/test_app_*.py`` file can share them without a conftest.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from streamlit.testing.v1 import AppTest

from padim_core.config import PRESETS

from .text import as_shown

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
SMALL = {"d": 32, "image_size": 128, "crop": 112}
"""Fast settings for tests on a 2-core CPU (with EfficientNet-Lite0 and, through the crop, the
square resize of the reference settings)."""
SMALL_MODEL = {**PRESETS["reference"], **SMALL}
"""PadimModel arguments of the model :func:`train_demo` trains (reference settings + SMALL)."""
TIMEOUT = 180.0


def make_small_demo(root: Path, n_train: int = 8, n_good: int = 3, n_defect: int = 3) -> Path:
    """A tiny synthetic demo set (MVTec layout, 128 px) for tests."""
    from padim_core.demo import make_demo_set

    return make_demo_set(Path(root), n_train=n_train, n_test_good=n_good,
                         n_test_defect=n_defect, size=128)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG-encode an RGB uint8 image."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive of ``{member name: bytes}`` (names are written verbatim, even ``../x``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def folder_zip(folder: Path, prefix: str = "") -> bytes:
    """Zip a folder (e.g. an MVTec category), optionally under one top-level folder."""
    members = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            members[prefix + path.relative_to(folder).as_posix()] = path.read_bytes()
    return zip_bytes(members)


def train_uploads(demo: Path) -> list[tuple[str, bytes, str]]:
    """The demo set's training images as browser uploads (name, bytes, mime)."""
    return [(p.name, p.read_bytes(), "image/png")
            for p in sorted((Path(demo) / "train" / "good").glob("*.png"))]


def inspect_uploads(demo: Path) -> list[tuple[str, bytes, str]]:
    """The demo set's test images as browser uploads, named ``<type>_<file>``."""
    return [(f"{p.parent.name}_{p.name}", p.read_bytes(), "image/png")
            for p in sorted((Path(demo) / "test").glob("*/*.png"))]


def other_version_model() -> bytes:
    """A safetensors file that claims a future model format version."""
    import safetensors.numpy

    return safetensors.numpy.save({"mean": np.zeros((4, 2), np.float32)}, metadata={
        "format": "padim-inspector-model", "format_version": "99", "padim": "{}"})


def new_app() -> AppTest:
    """A fresh simulated browser session on the landing page."""
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()


def open_page(at: AppTest, page: str) -> AppTest:
    """Switch to ``pages/<page>.py`` and run it."""
    return at.switch_page(f"pages/{page}.py").run()


def use_small_settings(at: AppTest, prefix: str = "trainA") -> AppTest:
    """Put a training panel on the reference settings (EfficientNet-Lite0, square resize),
    then d / image size / crop to :data:`SMALL`."""
    at.button(key=f"{prefix}_preset_reference").click().run()
    at.number_input(key=f"{prefix}_d_efficientnet_lite0").set_value(SMALL["d"])
    at.select_slider(key=f"{prefix}_size").set_value(SMALL["image_size"]).run()
    at.select_slider(key=f"{prefix}_crop_{SMALL['image_size']}").set_value(SMALL["crop"])
    return at.run()


def train_demo(at: AppTest, prefix: str = "trainA") -> AppTest:
    """Train on the demo set from a training panel, with small settings."""
    use_small_settings(at, prefix)
    return at.button(key=f"{prefix}_demo").click().run()


def errors(at: AppTest) -> list[str]:
    """Texts of the ``st.error`` boxes on the page, as the browser shows them (the
    Markdown escapes of the names and messages in them decoded: :func:`text.as_shown`)."""
    return [as_shown(str(e.value)) for e in at.error]


def warnings(at: AppTest) -> list[str]:
    """Texts of the ``st.warning`` boxes on the page, as the browser shows them."""
    return [as_shown(str(w.value)) for w in at.warning]


def exceptions(at: AppTest) -> list[str]:
    """Uncaught exceptions shown on the page (should always be empty)."""
    return [str(e.value) for e in at.exception]


def metric(at: AppTest, label: str) -> str:
    """The value of the metric with ``label``."""
    for m in at.metric:
        if m.label == label:
            return str(m.value)
    raise KeyError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


def slot(at: AppTest, key: str = "A") -> Any:
    """The ModelSlot in the simulated session (None when empty)."""
    slots = at.session_state.get("model_slots") or {}
    return slots.get(key)
