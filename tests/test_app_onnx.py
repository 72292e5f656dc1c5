"""AppTest: the model card's ONNX export — checked, offered for download with its parity
figures, made once per model; an export that scores differently is refused with a message.

Why: an inspector hands the line a file from the app; it must score as the app does, and a
second click (or another session) must not spend another half minute exporting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from inspector_ui import onnx_download
from inspector_ui import testing as t
from padim_core.export import ScoringGraph, model_id

pytestmark = [pytest.mark.usefixtures("demo_env"),
              pytest.mark.filterwarnings("ignore:only .* training images")]


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """An empty export cache; counts the exports actually made."""
    onnx_download.export_cache.clear()
    made: list[int] = []
    real = onnx_download.export_onnx_bytes

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(onnx_download, "export_onnx_bytes", counting)
    yield made
    onnx_download.export_cache.clear()


def downloads(at) -> list[str]:  # type: ignore[no-untyped-def]
    return [b.proto.label for b in at.get("download_button")]


def test_export_download_with_parity_figures(exports: list[int], demo_env: Path) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    assert not any("ONNX" in label for label in downloads(at))
    at.button(key="cardA_onnx_export").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert any(label.startswith("Download ONNX (") for label in downloads(at))
    caption = next(c.value for c in at.caption if "Checked with onnxruntime" in c.value)
    assert "limit 0.0001" in caption and "limit 0.001" in caption

    model = t.slot(at).model
    made = onnx_download.export_cache().get(model_id(model.card()))
    assert made is not None and made.parity.ok
    sess = ort.InferenceSession(made.data, providers=["CPUExecutionProvider"])
    assert sess.get_modelmeta().custom_metadata_map["padim.model_id"] == made.model_id
    ref = model.predict(sorted((demo_env / "test").glob("*/*.png")))
    scores, _ = sess.run(None, {"images": ref.images})
    np.testing.assert_allclose(scores, ref.scores, rtol=1e-4)

    at.run()                                  # rerun and a new visit: no second export
    at = t.open_page(t.open_page(at, "inspect"), "train")
    assert any(label.startswith("Download ONNX (") for label in downloads(at))
    assert len(exports) == 1


def test_export_that_scores_differently_is_refused(exports: list[int],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    original = ScoringGraph.forward

    def off_by_a_little(self, images):  # type: ignore[no-untyped-def]
        scores, maps = original(self, images)
        return scores * 1.001, maps
    monkeypatch.setattr(ScoringGraph, "forward", off_by_a_little)
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    at.button(key="cardA_onnx_export").click().run()
    assert not t.exceptions(at)
    message = " ".join(t.errors(at))
    assert message.startswith("ONNX export: not written: onnxruntime differs"), message
    assert "scores max rel diff 1.0" in message and "/tmp" not in message
    assert not any("ONNX" in label for label in downloads(at))
    assert t.slot(at) is not None                # the model stays
