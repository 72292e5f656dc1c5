"""Our engine against a straightforward transcription of the PaDiM reference code.

The reference (see ../shared/seed/) hooks layer1..3 of a torchvision ResNet, concatenates the
maps with ``embedding_concat`` (unfold / fold), keeps a channel subset ``idx``, fits
``np.cov(...) + 0.01 I`` per patch in a Python loop, scores with scipy's ``mahalanobis`` per
patch, upsamples bilinearly and smooths with ``gaussian_filter(sigma=4)``. Everything below
is written the slow, obvious way on purpose and shares no code with padim_core's math.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import mahalanobis

from padim_core import PadimModel
from padim_core.images import resize_and_crop

SEED = 7
SIZE = 64


def textures(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:80, 0:80]
    out = []
    for _ in range(n):
        base = 120 + 40 * np.sin(xx / (3 + rng.random()) + rng.random() * 6)
        img = base[..., None] + rng.normal(0, 12, (80, 80, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def embedding_concat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Verbatim logic of the reference implementation."""
    b, c1, h1, w1 = x.size()
    _, c2, h2, w2 = y.size()
    s = int(h1 / h2)
    x = F.unfold(x, kernel_size=s, dilation=1, stride=s)
    x = x.view(b, c1, -1, h2, w2)
    z = torch.zeros(b, c1 + c2, x.size(2), h2, w2)
    for i in range(x.size(2)):
        z[:, :, i, :, :] = torch.cat((x[:, :, i, :, :], y), 1)
    z = z.view(b, -1, h2 * w2)
    return F.fold(z, kernel_size=s, output_size=(h1, w1), stride=s)


def reference_embeddings(images: list[np.ndarray], idx: np.ndarray) -> torch.Tensor:
    torch.manual_seed(SEED)
    model = torchvision.models.resnet18(weights=None).eval()
    outputs: list[torch.Tensor] = []
    for layer in (model.layer1, model.layer2, model.layer3):
        layer[-1].register_forward_hook(lambda _m, _i, o: outputs.append(o))
    crops = np.stack([resize_and_crop(im, SIZE, SIZE) for im in images]).astype(np.float32)
    x = torch.from_numpy(crops / 255.0).permute(0, 3, 1, 2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        model((x - mean) / std)
    emb = outputs[0]
    for feat in outputs[1:]:
        emb = embedding_concat(emb, feat)
    return torch.index_select(emb, 1, torch.as_tensor(idx))


@pytest.fixture(scope="module")
def fitted() -> tuple[PadimModel, list[np.ndarray], list[np.ndarray]]:
    train, test = textures(24, 1), textures(4, 2)
    # The reference settings: square resize, nearest upsampling of the coarser maps, eps
    # 0.01, blur sigma 4, image score = maximum of the map.
    model = PadimModel(backbone="resnet18", weights="random", seed=SEED, d=40,
                       image_size=SIZE, crop=SIZE, batch_size=7, device="cpu", eps=0.01,
                       sigma=4.0, score_top_percent=0.0, resize="stretch",
                       upsample="nearest")
    model.fit(train)
    return model, train, test


def test_maps_and_scores_match_reference(fitted) -> None:
    model, train, test = fitted
    idx = model.state_.channel_index
    train_emb = reference_embeddings(train, idx)
    b, c, h, w = train_emb.shape
    train_emb = train_emb.view(b, c, h * w).numpy().astype(np.float64)
    mean = train_emb.mean(0)
    cov = np.zeros((c, c, h * w))
    for i in range(h * w):
        cov[:, :, i] = np.cov(train_emb[:, :, i], rowvar=False) + 0.01 * np.identity(c)

    test_emb = reference_embeddings(test, idx).view(len(test), c, h * w).numpy()
    dist = np.zeros((h * w, len(test)))
    for i in range(h * w):
        inv = np.linalg.inv(cov[:, :, i])
        dist[i] = [mahalanobis(s[:, i], mean[:, i], inv) for s in test_emb]
    dist = torch.tensor(dist.T.reshape(len(test), h, w))
    maps = F.interpolate(dist.unsqueeze(1), size=SIZE, mode="bilinear",
                         align_corners=False).squeeze(1).numpy()
    maps = np.stack([gaussian_filter(m, sigma=4) for m in maps])

    res = model.predict(test)
    assert res.maps.shape == maps.shape
    np.testing.assert_allclose(res.maps, maps, rtol=1e-4, atol=1e-4 * np.abs(maps).max())
    np.testing.assert_allclose(res.scores, maps.reshape(len(test), -1).max(1), rtol=1e-4)


def test_subset_is_seeded_and_recorded(fitted) -> None:
    model, train, _ = fitted
    again = PadimModel(backbone="resnet18", weights="random", seed=SEED, d=40,
                       image_size=SIZE, crop=SIZE, device="cpu").fit(train[:6])
    np.testing.assert_array_equal(again.state_.channel_index, model.state_.channel_index)
    other = PadimModel(backbone="resnet18", weights="random", seed=SEED + 1, d=40,
                       image_size=SIZE, crop=SIZE, device="cpu").fit(train[:6])
    assert not np.array_equal(other.state_.channel_index, model.state_.channel_index)
