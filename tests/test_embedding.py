"""Embedder: the patch-major embedding equals the reference recipe, bit for bit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from padim_core.embedding import Embedder, random_channel_subset, semi_orthogonal_projection


def _reference(features: list[torch.Tensor], index: np.ndarray) -> torch.Tensor:
    """PaDiM reference: nearest-upsample every map to the first grid, concatenate, select."""
    size = features[0].shape[-2:]
    full = torch.cat([F.interpolate(f, size=size, mode="nearest") for f in features], 1)
    return full[:, torch.as_tensor(index)].permute(2, 3, 0, 1)


def _features(channels, grids, memory_format, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(3, c, g, g, generator=gen).contiguous(memory_format=memory_format)
            for c, g in zip(channels, grids, strict=True)]


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("grids", [(16, 8, 4), (15, 8, 4)])    # even and uneven upsampling
def test_random_subset_matches_reference_exactly(memory_format, grids):
    channels = (24, 40, 112)
    feats = _features(channels, grids, memory_format)
    index = random_channel_subset(sum(channels), 100, seed=3)
    out = Embedder(channels, channel_index=index)(feats)
    assert out.shape == (grids[0], grids[0], 3, 100)
    assert torch.equal(out, _reference(feats, index))


def test_layer_without_selected_channels_is_skipped():
    channels = (8, 8, 8)
    feats = _features(channels, (8, 4, 2), torch.channels_last)
    index = np.array([0, 3, 17, 20, 23])                      # nothing from layer 2
    out = Embedder(channels, channel_index=index)(feats)
    assert torch.equal(out, _reference(feats, index))
    bilinear = Embedder(channels, channel_index=index, upsample="bilinear")(feats)
    torch.testing.assert_close(bilinear, _bilinear_reference(feats, index))


def test_orthogonal_projection_matches_reference():
    channels = (8, 8, 8)
    feats = _features(channels, (8, 4, 2), torch.channels_last)
    proj = semi_orthogonal_projection(24, 10, seed=1)
    out = Embedder(channels, projection=proj)(feats)
    expected = _reference(feats, np.arange(24)) @ torch.as_tensor(proj)
    torch.testing.assert_close(out, expected)


def _bilinear_reference(features: list[torch.Tensor], index: np.ndarray) -> torch.Tensor:
    """Every map bilinearly interpolated to the first grid (half-pixel centres), then select."""
    size = features[0].shape[-2:]
    full = torch.cat([features[0]] + [F.interpolate(f, size=size, mode="bilinear",
                                                    align_corners=False)
                                      for f in features[1:]], 1)
    return full[:, torch.as_tensor(index)].permute(2, 3, 0, 1)


@pytest.mark.parametrize("grids", [(16, 8, 4), (15, 8, 4)])
def test_bilinear_upsampling_matches_interpolating_the_whole_maps(grids):
    channels = (24, 40, 112)
    feats = _features(channels, grids, torch.channels_last)
    index = random_channel_subset(sum(channels), 100, seed=3)
    out = Embedder(channels, channel_index=index, upsample="bilinear")(feats)
    torch.testing.assert_close(out, _bilinear_reference(feats, index))
    # and it is not nearest upsampling: the coarse layers' values differ inside each block
    assert not torch.allclose(out, _reference(feats, index))


def test_bilinear_orthogonal_projection_and_out_buffer():
    channels = (8, 8, 8)
    feats = _features(channels, (8, 4, 2), torch.channels_last)
    proj = semi_orthogonal_projection(24, 10, seed=1)
    out = torch.empty(8, 8, 3, 10)
    Embedder(channels, projection=proj, upsample="bilinear")(feats, out=out)
    expected = _bilinear_reference(feats, np.arange(24)) @ torch.as_tensor(proj)
    torch.testing.assert_close(out, expected)


def test_unknown_upsampling_is_refused():
    with pytest.raises(ValueError, match="upsample must be one of"):
        Embedder((8,), channel_index=np.arange(4), upsample="bicubic")


def test_indices_and_projection_are_copied_to_a_device_once():
    """Why: a host-to-device copy at every batch waits for the device's queue (a stall per
    batch on a GPU); the channel indices and the projection go there once per Embedder."""
    channels, grids = (24, 40, 112), (16, 8, 4)
    feats = [f.double() for f in _features(channels, grids, torch.contiguous_format)]
    index = random_channel_subset(sum(channels), 50, seed=3)
    emb = Embedder(channels, channel_index=index)
    first = emb(feats)                          # float64: the gather path a GPU takes
    cached = emb._on_device[(torch.device("cpu"), torch.float64)][1]
    second = emb(feats)
    assert emb._on_device[(torch.device("cpu"), torch.float64)][1] is cached
    assert torch.equal(first, second)
    assert torch.equal(first, _reference(feats, index))
    proj = Embedder(channels, projection=semi_orthogonal_projection(sum(channels), 20, 1))
    proj(feats)
    assert proj._on_device[(torch.device("cpu"), torch.float64)][0].dtype == torch.float64
    assert pickle.loads(pickle.dumps(emb))._on_device == {}    # a Dask worker copies its own
