"""Streaming statistics: exact merge, the d = 550 CPU path, the torch (GPU) code path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from padim_core.errors import InvalidInputError
from padim_core.gaussian import HoldoutStore, finalize, leave_one_out, patch_statistics
from padim_core.scoring import MapRenderer, gaussian_blur, mahalanobis


def samples(p: int, n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((p, d, d)) / np.sqrt(d)
    x = rng.standard_normal((p, n, d)) @ mix + rng.standard_normal((p, 1, d)) * 3
    return x.astype(np.float32)


def reference_inverse(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    means = x.mean(1)
    invs = np.stack([np.linalg.inv(np.cov(xp, rowvar=False) + eps * np.eye(x.shape[2]))
                     for xp in x])
    return means, invs


@pytest.mark.parametrize("packed", [False, True])
def test_merge_of_shards_equals_whole(packed: bool) -> None:
    x = samples(9, 50, 12)
    block = 4 * 12 * 12 * 8
    whole = patch_statistics(9, 12, block_bytes=block, packed=packed)
    for i in range(0, 50, 8):
        whole.update(x[:, i:i + 8])
    a = patch_statistics(9, 12, block_bytes=block, packed=packed).update(x[:, :17])
    b = patch_statistics(9, 12, block_bytes=block, packed=packed)
    b.update(x[:, 17:30]).update(x[:, 30:])
    merged = a.merge(b)
    assert merged.n == whole.n == 50
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-12)
    np.testing.assert_allclose(merged.covariance(eps=0.01), whole.covariance(eps=0.01),
                               rtol=1e-10, atol=1e-12)
    ref = np.stack([np.cov(xp.astype(np.float64), rowvar=False) for xp in x]) + 0.01 * np.eye(12)
    np.testing.assert_allclose(whole.covariance(eps=0.01), ref, rtol=1e-9, atol=1e-9)
    g_merged, _ = finalize(merged, 0.01)
    g_whole, _ = finalize(whole, 0.01)
    np.testing.assert_allclose(g_merged.whitener, g_whole.whitener, rtol=1e-6, atol=1e-6)


def test_merge_rejects_other_shapes() -> None:
    with pytest.raises(ValueError):
        patch_statistics(4, 3).merge(patch_statistics(4, 5))
    with pytest.raises(ValueError, match="layouts"):
        patch_statistics(4, 3, packed=True).merge(patch_statistics(4, 3, packed=False))


@pytest.mark.parametrize("packed", [False, True])
def test_cpu_path_at_d550_matches_numpy_inverse(packed: bool) -> None:
    p, n, d = 3, 700, 550
    x = samples(p, n, d, seed=3)
    acc = patch_statistics(p, d, block_bytes=2 * d * d * 8, packed=packed)  # 2 blocks
    for i in range(0, n, 128):
        acc.update(x[:, i:i + 128])
    gauss, _ = finalize(acc, 0.01)
    means, invs = reference_inverse(x, 0.01)
    w = gauss.whitener.astype(np.float64)
    np.testing.assert_allclose(w @ w.transpose(0, 2, 1), invs, rtol=2e-3,
                               atol=2e-5 * np.abs(invs).max())
    probe = samples(p, 4, d, seed=9)
    emb = torch.from_numpy(probe[:, None])                      # (H=P, W=1, B, d)
    ours = mahalanobis(emb, gauss).numpy()[:, :, 0]
    diff = probe.astype(np.float64) - means[:, None, :]
    ref = np.sqrt(np.einsum("pbi,pij,pbj->bp", diff, invs, diff))
    np.testing.assert_allclose(ours, ref, rtol=1e-4)


@pytest.mark.parametrize("n", [40, 7])      # 7 < d + 1: the covariance rests on eps
# float32 where rounding stays small (the default), or float64 everywhere (share 0): the
# formula itself is checked to float64 precision.
@pytest.mark.parametrize(("share", "rtol"), [(leave_one_out.MAX_LOO_SHARE, 1e-5), (0.0, 1e-7)])
def test_calibration_distances_are_leave_one_out(n: int, share: float, rtol: float,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leave_one_out, "MAX_LOO_SHARE", share)
    d, eps = 6, 0.01
    x = samples(5, n, d, seed=4)
    cal = [1, 4, n - 1]
    _, hold_sq = finalize(patch_statistics(5, d).update(x), eps, holdout=x[:, cal])
    eps_left_out = eps * (n - 1) / (n - 2)
    for row, j in enumerate(cal):
        others = np.delete(x, j, axis=1)
        means, invs = reference_inverse(others, eps_left_out)
        diff = x[:, j].astype(np.float64) - means
        ref = np.einsum("pi,pij,pj->p", diff, invs, diff)
        np.testing.assert_allclose(hold_sq[row], ref, rtol=rtol)


def test_leave_one_out_needs_three_images() -> None:
    x = samples(2, 2, 3)
    with pytest.raises(InvalidInputError, match="at least 3"):
        finalize(patch_statistics(2, 3).update(x), 0.01, holdout=x[:, :1])


def test_torch_code_path_matches_numpy_path() -> None:
    x = samples(7, 30, 10, seed=5)
    np_acc = patch_statistics(7, 10).update(x)
    t_acc = patch_statistics(7, 10, use_torch=True).update(torch.from_numpy(x))
    g_np, h_np = finalize(np_acc, 0.01, holdout=x[:, :5])
    g_t, h_t = finalize(t_acc, 0.01, holdout=torch.from_numpy(x[:, :5]))
    assert isinstance(g_t.whitener, torch.Tensor)
    np.testing.assert_allclose(g_t.whitener.numpy(), g_np.whitener, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_t.numpy(), h_np, rtol=1e-6)
    emb = torch.from_numpy(x[:, None, :3].copy())
    np.testing.assert_allclose(mahalanobis(emb, g_t).numpy(), mahalanobis(emb, g_np).numpy(),
                               rtol=1e-5)


def test_too_few_images_is_a_clear_error() -> None:
    acc = patch_statistics(2, 3).update(samples(2, 1, 3))
    with pytest.raises(InvalidInputError, match="at least 2"):
        finalize(acc, 0.01)


def test_identical_images_still_invert_thanks_to_eps() -> None:
    x = np.repeat(samples(3, 1, 8), 10, axis=1)                 # zero variance
    gauss, _ = finalize(patch_statistics(3, 8).update(x), 0.01)
    w = gauss.whitener.astype(np.float64)
    np.testing.assert_allclose(w @ w.transpose(0, 2, 1), np.broadcast_to(np.eye(8) / 0.01,
                               (3, 8, 8)), rtol=1e-5, atol=1e-3)


def test_map_renderer_equals_upsample_then_blur() -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    dist = rng.random((2, 14, 9)).astype(np.float32) * 5
    ours = MapRenderer((14, 9), 64, 4.0)(torch.from_numpy(dist)).numpy()
    up = F.interpolate(torch.from_numpy(dist)[:, None], size=(64, 64), mode="bilinear",
                       align_corners=False)[:, 0].double().numpy()
    ref = np.stack([gaussian_filter(m, sigma=4) for m in up])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_blur_matches_scipy_reflect_mode() -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    maps = rng.random((2, 40, 23)).astype(np.float32)   # narrower than the kernel radius x2
    ours = gaussian_blur(torch.from_numpy(maps), 4.0).numpy()
    ref = np.stack([gaussian_filter(m.astype(np.float64), sigma=4) for m in maps])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


# memory_bytes: spill on the first append, on the second (the first moves too), never
@pytest.mark.parametrize("memory_bytes", [0, 6 * 5 * 5 * 4, 1 << 20])
def test_spilled_holdout_in_chunks_equals_one_array(memory_bytes: int) -> None:
    x = samples(6, 45, 5, seed=8)
    _, from_array = finalize(patch_statistics(6, 5).update(x), 0.01, holdout=x[:, 30:])
    store = HoldoutStore(memory_bytes=memory_bytes)
    for lo, hi in ((30, 34), (34, 41), (41, 45)):
        batch = np.ascontiguousarray(x[:, lo:hi])
        store.append(batch)
        batch[:] = 1e6                       # the store keeps its own copy
    stats = patch_statistics(6, 5, block_bytes=2 * 5 * 5 * 8).update(x)
    _, from_store = finalize(stats, 0.01, holdout=store)
    store.close()
    assert store.count == 15
    np.testing.assert_allclose(from_store, from_array, rtol=1e-10)


def test_torch_path_without_holdout_returns_no_distances() -> None:
    x = torch.from_numpy(samples(4, 12, 3))
    _, hold = finalize(patch_statistics(4, 3, use_torch=True).update(x), 0.01)
    assert hold is None


@pytest.mark.parametrize("workers", [1, 2])
def test_staged_and_direct_batches_give_the_reference_statistics(workers: int) -> None:
    p, d = 7, 9
    x = samples(p, 40, d, seed=11)
    # Room for 3 staged images: batches of 1-2 are staged and flushed when the next one does
    # not fit; batches of 5 and 7 go straight to the sums (after a flush).
    acc = patch_statistics(p, d, block_bytes=3 * d * d * 8, workers=workers,
                                   stage_bytes=3 * p * d * 4)
    start = 0
    for size in (1, 2, 1, 5, 2, 2, 7, 3, 1, 1, 1, 14):
        acc.update(x[:, start:start + size])
        start += size
    assert start == 40 and acc.n == 40
    np.testing.assert_allclose(acc.sum, x.astype(np.float64).sum(1), rtol=1e-12)
    ref = np.stack([np.cov(xp.astype(np.float64), rowvar=False) for xp in x]) + 0.01 * np.eye(d)
    np.testing.assert_allclose(acc.covariance(eps=0.01), ref, rtol=1e-9, atol=1e-9)
    acc.update(x[:, :1])                  # staged again, so finalize must flush it
    gauss, _ = finalize(acc, 0.01)
    means, invs = reference_inverse(np.concatenate([x, x[:, :1]], axis=1), 0.01)
    w = gauss.whitener.astype(np.float64)
    np.testing.assert_allclose(gauss.mean, means, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w @ w.transpose(0, 2, 1), invs, rtol=1e-4, atol=1e-6)
    assert np.all(np.tril(w, -1) == 0)     # upper-triangular whitener, stale triangle masked


def test_not_positive_definite_is_a_clear_error() -> None:
    x = samples(3, 20, 4)
    with pytest.raises(InvalidInputError, match="not positive definite"):
        finalize(patch_statistics(3, 4).update(x), eps=-1e6)


def test_mahalanobis_split_over_threads_equals_one_thread() -> None:
    x = samples(13, 40, 6, seed=12)
    gauss, _ = finalize(patch_statistics(13, 6).update(x), 0.01)
    probe = samples(13, 5, 6, seed=13)
    emb = torch.from_numpy(probe.reshape(13, 1, 5, 6))             # (H=13, W=1, B, d)
    one = mahalanobis(emb, gauss, workers=1).numpy()
    np.testing.assert_array_equal(mahalanobis(emb, gauss, workers=3).numpy(), one)
    means, invs = reference_inverse(x, 0.01)
    diff = probe.astype(np.float64) - means[:, None, :]
    ref = np.sqrt(np.einsum("pbi,pij,pbj->bp", diff, invs, diff))
    np.testing.assert_allclose(one[:, :, 0], ref, rtol=1e-4)


def test_mahalanobis_in_cache_sized_steps_covers_every_patch() -> None:
    # 1000 patches at b = 40, d = 32: steps of 51 patches with a partial last one.
    p, d = 1000, 32
    x = samples(p, 60, d, seed=21)
    gauss, _ = finalize(patch_statistics(p, d).update(x), 0.01)
    probe = samples(p, 40, d, seed=22)
    emb = torch.from_numpy(probe.reshape(p, 1, 40, d))
    ours = mahalanobis(emb, gauss, workers=2).numpy()[:, :, 0]
    means, invs = reference_inverse(x, 0.01)
    diff = probe.astype(np.float64) - means[:, None, :]
    ref = np.sqrt(np.einsum("pbi,pij,pbj->bp", diff, invs, diff))
    np.testing.assert_allclose(ours, ref, rtol=1e-4)


@pytest.mark.parametrize("packed", [False, True])
def test_whitener_is_upper_triangular_over_exact_zeros(packed: bool) -> None:
    # The CPU path never masks: it relies on the lower triangle never being written.
    p, d = 20, 7
    x = samples(p, 30, d, seed=31)
    gauss, _ = finalize(patch_statistics(p, d, packed=packed).update(x), 0.01)
    assert not np.tril(gauss.whitener, -1).any()
    w = gauss.whitener.astype(np.float64)
    _, invs = reference_inverse(x, 0.01)
    np.testing.assert_allclose(w @ w.transpose(0, 2, 1), invs, rtol=1e-4, atol=1e-7)


def test_embeddings_written_into_the_store_buffer_count_once() -> None:
    p, d = 9, 4
    x = samples(p, 75, d, seed=41)
    direct = patch_statistics(p, d, stage_bytes=20 * p * d * 4)   # 20 images staged
    in_place = patch_statistics(p, d, stage_bytes=20 * p * d * 4)
    buffers = []

    def produce(batch: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        buffers.append(out is not None)
        if out is None:
            return batch.copy()
        out[...] = batch
        return out

    for lo, hi in [(lo, lo + 8) for lo in range(0, 48, 8)] + [(48, 75)]:
        batch = x[:, lo:hi]                          # flushes at 16 + 8 > 20 and so on
        direct.update(batch)
        got = in_place.update_from(hi - lo, lambda out, batch=batch: produce(batch, out))
        np.testing.assert_array_equal(got, batch)
    assert buffers == [True] * 6 + [False]           # 27 images do not fit the stage
    assert in_place.n == direct.n == 75
    np.testing.assert_array_equal(in_place.sum, direct.sum)
    np.testing.assert_allclose(in_place.covariance(), direct.covariance(), rtol=1e-12)
    np.testing.assert_allclose(direct.covariance(), np.stack(
        [np.cov(x[i].astype(np.float64), rowvar=False) for i in range(p)]), rtol=1e-6)


@pytest.mark.parametrize("memory_bytes", [0, 1 << 20])
def test_holdout_keeps_the_chosen_images_of_each_batch(memory_bytes: int) -> None:
    x = samples(5, 12, 3, seed=51)
    store = HoldoutStore(memory_bytes=memory_bytes)
    store.append(x[:, :6], [4, 1])
    store.append(torch.from_numpy(x[:, 6:]), np.array([0, 5]))
    assert store.count == 4
    got = np.concatenate(list(store.chunks(1, 4)), axis=1)
    store.close()
    np.testing.assert_array_equal(got, x[1:4][:, [4, 1, 6, 11]])


@pytest.mark.parametrize(("share", "fails"), [(leave_one_out.MAX_LOO_SHARE, False), (2.0, True)])
def test_outlying_calibration_image_is_scored_in_float64(share: float, fails: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # One calibration image far out on one patch: it holds nearly all of that patch's
    # scatter, so leaving it out magnifies float32 rounding. Only that patch falls back.
    monkeypatch.setattr(leave_one_out, "MAX_LOO_SHARE", share)
    n, d, eps = 40, 6, 1e-6
    x = samples(5, n, d, seed=61).astype(np.float64)
    x[2, 3] += 3000.0
    x = x.astype(np.float32)
    cal = [1, 3, 7]
    _, hold_sq = finalize(patch_statistics(5, d).update(x), eps, holdout=x[:, cal])
    others = np.delete(x, 3, axis=1)
    means, invs = reference_inverse(others, eps * (n - 1) / (n - 2))
    diff = x[:, 3].astype(np.float64) - means
    ref = np.einsum("pi,pij,pj->p", diff, invs, diff)
    close = np.allclose(hold_sq[1], ref, rtol=1e-5)
    assert close != fails


@pytest.mark.parametrize("n", [10, 200])
def test_blocks_where_leaving_out_magnifies_rounding_go_to_float64_after_a_trial(
        n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # 160 patches in 16 blocks of 10, every image a calibration image. d = 9 and n = 10:
    # each image holds about d / n of its patch's scatter, so most patches have an image
    # above the float32 limit; after a trial of a few patches such blocks are scored in
    # float64 without a float32 pass over them, so float32 sees fewer than the 160 patches.
    # At n = 200 float32 covers each block's trial and then the whole block.
    seen: list[tuple[np.dtype, int]] = []
    in_sample = leave_one_out._in_sample

    def counting(holdout, lo, hi, mean, whitener, patches=None):  # noqa: ANN001, ANN202
        seen.append((whitener.dtype, hi - lo if patches is None else len(patches)))
        return in_sample(holdout, lo, hi, mean, whitener, patches)

    monkeypatch.setattr(leave_one_out, "_in_sample", counting)
    p, d, eps = 160, 9, 0.01
    x = samples(p, n, d, seed=9)
    cal = list(range(n)) if n < 20 else [0, 5, n - 1]
    _, hold_sq = finalize(patch_statistics(p, d).update(x), eps, holdout=x[:, cal])
    float32_patches = sum(k for dtype, k in seen if dtype == np.float32)
    if n < 20:
        assert 16 * leave_one_out.TRIAL_PATCHES <= float32_patches < p
    else:
        assert float32_patches == 16 * (leave_one_out.TRIAL_PATCHES + 10)
    for row, j in enumerate(cal):
        means, invs = reference_inverse(np.delete(x, j, axis=1), eps * (n - 1) / (n - 2))
        diff = x[:, j].astype(np.float64) - means
        np.testing.assert_allclose(hold_sq[row], np.einsum("pi,pij,pj->p", diff, invs, diff),
                                   rtol=1e-5)
