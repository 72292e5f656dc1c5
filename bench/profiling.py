"""Where predict and fit spend their time beyond the backbone (``python -m bench --profile``).

The real ``predict`` / ``fit`` run under cProfile; the cumulative time of the engine's own
step functions (looked up by name, matched by code object) gives the breakdown. A second,
finer breakdown times the numpy/torch pieces of one batch by hand.
"""

from __future__ import annotations

import cProfile
import importlib
import io
import pstats
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from padim_core import gaussian, images, scoring
from padim_core.gaussian.cpu_statistics import MAX_STAGE_IMAGES
from padim_core.model import PadimModel
from padim_core.threads import single_blas_thread

Key = tuple[str, int, str]

# (label, "module:qualified.name") — indentation in the label shows nesting.
PREDICT_STEPS: list[tuple[str, str]] = [
    ("total predict", "model:PadimModel.predict"),
    ("  decode/crop (arrays in; wait for threads)", "loading:decode_batches"),
    ("  backbone forward", "backbones:FeatureExtractor.forward"),
    ("  embedding (gather, upsample, patch-major)", "embedding:Embedder.__call__"),
    ("  mahalanobis", "scoring:mahalanobis"),
    ("  maps (bilinear + blur)", "model:PadimModel._render"),
    ("  image_scores", "scoring:image_scores"),
    ("  PredictResult.concat", "model:PredictResult.concat"),
]

FIT_STEPS: list[tuple[str, str]] = [
    ("total fit", "model:PadimModel.fit"),
    ("  decode/crop (arrays in; wait for threads)", "loading:decode_batches"),
    ("  backbone forward", "backbones:FeatureExtractor.forward"),
    ("  embedding (gather, upsample, patch-major)", "embedding:Embedder.__call__"),
    ("  accumulator update (staging; Σx, Σxxᵀ per 128 images)",
     "gaussian.cpu_statistics:CpuPatchStatistics.update"),
    ("  staging slot for the embedder (flushes when full)",
     "gaussian.cpu_statistics:CpuPatchStatistics._slot"),
    ("  finalize (last flush, Cholesky, inverse, leave-one-out)",
     "gaussian.fitting:finalize"),
    ("  calibration maps", "model:PadimModel._render"),
    ("  threshold_at_fpr", "thresholds:threshold_at_fpr"),
]


def owner_and_name(path: str) -> tuple[Any, str]:
    """"module:Class.attr" under padim_core → (the module or class holding it, its name);
    AttributeError if a part on the way is gone."""
    module, _, qualname = path.partition(":")
    owner: Any = importlib.import_module(f"padim_core.{module}")
    *parents, name = qualname.split(".")
    for part in parents:
        owner = getattr(owner, part)
    return owner, name


def _resolve(path: str) -> Callable[..., Any] | None:
    try:
        owner, name = owner_and_name(path)
    except AttributeError:
        return None
    return getattr(owner, name, None)


def _key(fn: Callable[..., Any]) -> Key:
    code = fn.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def profile(fn: Callable[[], object]) -> pstats.Stats:
    """Run ``fn`` under cProfile."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    return pstats.Stats(prof)


def breakdown(stats: pstats.Stats, steps: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Cumulative seconds of each named step (0 where not called; steps the engine no
    longer has are left out)."""
    table: dict[Key, tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    out = {}
    for label, path in steps:
        fn = _resolve(path)
        if fn is None:
            continue
        row = table.get(_key(fn))
        out[label.strip() if label.startswith("total") else label] = float(row[3]) if row else 0.0
    return out


def top(stats: pstats.Stats, n: int = 15) -> str:
    """The ``n`` functions with the most own time, as pstats prints them."""
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(n)
    lines = buf.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


def _best(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def predict_pieces(fitted: PadimModel, batch: np.ndarray) -> dict[str, float]:
    """Seconds of each numpy/torch piece of predict on one (B, crop, crop, 3) batch (CPU)."""
    state = fitted._state()
    gauss = state.gaussian
    embedder = fitted._embedder(state)
    cfg = fitted.config
    extractor = fitted.extractor
    out: dict[str, float] = {}
    with torch.inference_mode():
        out["decode/crop of arrays (load_image + resize_and_crop + stack)"] = _best(
            lambda: np.stack([images.resize_and_crop(images.load_image(a), cfg.crop, cfg.crop)
                              for a in batch]))
        feats = extractor(torch.from_numpy(batch))
        out["backbone forward"] = _best(lambda: extractor(torch.from_numpy(batch)))
        emb = embedder(feats)
        out["embedding (H, W, B, d)"] = _best(lambda: embedder(feats))
        h, w, b, d = emb.shape
        xn = emb.reshape(h * w, b, d).numpy()
        sq = np.empty((b, h * w), np.float32)
        with single_blas_thread():
            out["mahalanobis kernel on one core (x − μ, product, Σ²)"] = _best(
                lambda: gaussian.squared_distances(xn, gauss.mean, gauss.whitener, out=sq))
        dist = scoring.mahalanobis(emb, gauss)
        out["mahalanobis (whole, patches shared over threads)"] = _best(
            lambda: scoring.mahalanobis(emb, gauss))
        maps = fitted._render(dist, state.grid)
        out["maps: bilinear + blur"] = _best(lambda: fitted._render(dist, state.grid))
        out["image_scores + .numpy()"] = _best(
            lambda: (scoring.image_scores(maps).double().numpy(), maps.numpy()))
    return out


def fit_pieces(fitted: PadimModel, batch: np.ndarray) -> dict[str, float]:
    """Seconds of the per-batch fit pieces on one batch, and of one finalize (CPU)."""
    embedder = fitted._embedder()
    cfg = fitted.config
    out: dict[str, float] = {}
    emb = fitted._embed(batch, embedder)
    h, w, b, d = emb.shape
    x = emb.reshape(h * w, b, d).numpy()
    acc = gaussian.patch_statistics(h * w, d)
    out["accumulator update, one batch (staged)"] = _best(lambda: acc.update(x))
    staged = np.concatenate([x] * max(1, MAX_STAGE_IMAGES // b), axis=1)
    scratch = gaussian.patch_statistics(h * w, d)    # its sums are only timed
    out[f"  rank-{staged.shape[1]} Σxxᵀ update of staged images (threads)"] = _best(
        lambda: scratch._add(staged))
    hold = x[:, : max(1, b // 5)].copy()
    t0 = time.perf_counter()
    gaussian.finalize(acc, cfg.eps, holdout=hold)
    out["finalize with leave-one-out calibration (once per fit)"] = time.perf_counter() - t0
    return out
