"""The crop rule shown in docs/export.md makes the same pixels as padim_core.

Why: users of the ONNX file build its input themselves from that snippet; if it drifted
from ``images.resize_and_crop`` their scores would drift too, silently. The block is read
from the document and run as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from padim_core.images import RESIZE_MODES, load_image, resize_and_crop

DOC = Path(__file__).resolve().parents[1] / "docs" / "export.md"


@pytest.fixture(scope="module")
def model_input():  # type: ignore[no-untyped-def]
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    code = next(b for b in blocks if "def model_input" in b)
    assert len(code.strip().splitlines()) <= 32      # short enough to copy
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["model_input"]


@pytest.mark.parametrize("shape", [(256, 256, 3), (300, 200, 3), (200, 300, 3), (100, 400, 3),
                                   (480, 130, 3), (64, 64, 3), (900, 1000, 3), (333, 333)],
                         ids=str)
@pytest.mark.parametrize("size, crop", [(256, 224), (224, 224), (320, 256)])
@pytest.mark.parametrize("resize", RESIZE_MODES)
def test_doc_snippet_equals_resize_and_crop(model_input, tmp_path: Path, shape: tuple,
                                            size: int, crop: int, resize: str) -> None:
    """In every resize mode: the snippet once knew only "stretch" while the default models
    letterbox with mirrored bands ("pad-reflect"), so non-square parts scored up to 40 % off."""
    rng = np.random.default_rng(sum(shape))
    # smooth plus noise: interpolation differences would show
    base = rng.integers(0, 256, (shape[0] // 16 + 2, shape[1] // 16 + 2, *shape[2:]))
    img = np.kron(base, np.ones((16, 16, *([1] * (len(shape) - 2)))))[:shape[0], :shape[1]]
    img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    for ext in ("png", "jpg"):
        path = tmp_path / f"x.{ext}"
        Image.fromarray(img).save(path)
        got = model_input(path, size, crop, resize)
        want = resize_and_crop(load_image(path), size, crop, resize)
        assert got.dtype == np.uint8 and got.shape == (crop, crop, 3)
        assert np.array_equal(got, want)
