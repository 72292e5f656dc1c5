"""Evaluation metrics for anomaly detection on a labelled set.

Image level: AUROC, F1-optimal threshold, ROC / precision-recall curve points.
Pixel level: AUROC over all pixels, AUPRO (Bergmann et al., "The MVTec Anomaly Detection
Dataset", IJCV 2021) and an F1-optimal pixel threshold.

Conventions used throughout:

* labels / masks: 1 (True) = anomalous, 0 (False) = normal.
* A score is called anomalous when ``score >= threshold`` (scikit-learn's convention, so the
  thresholds returned here can be used directly with :func:`padim_core.visualize.defect_mask`).
* Every input error raises :class:`~padim_core.errors.InvalidInputError` naming the argument.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from padim_core.errors import InvalidInputError

#: Above this many pixels, :func:`pixel_f1_optimal_threshold` works on a deterministic subsample.
PIXEL_F1_MAX_PIXELS = 2_000_000

_SUBSAMPLE_SEED = 0


# --------------------------------------------------------------------------- validation


def _labels_1d(labels: ArrayLike, source: str = "labels") -> NDArray[np.bool_]:
    """Return ``labels`` as a 1-D bool array, rejecting anything but 0/1 values."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInputError(source, f"expected a non-empty 1-D sequence, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
            raise InvalidInputError(source, "labels must be 0 (normal) or 1 (anomalous)")
        arr = arr.astype(bool)
    return arr


def _scores_1d(scores: ArrayLike, n: int, source: str = "scores") -> NDArray[np.floating]:
    """Return ``scores`` as a finite 1-D float array of length ``n``."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(source, f"scores must be numbers ({exc})") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidInputError(
            source, f"expected {n} scores (one per label), got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise InvalidInputError(source, "scores contain NaN or infinite values")
    return arr


def as_labels_and_scores(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Validated copies: labels as 1-D bool, scores as finite float64 of the same length."""
    y = _labels_1d(labels)
    return y, _scores_1d(scores, y.size)


def _require_both_classes(labels: NDArray[np.bool_], source: str, what: str) -> None:
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        only = "anomalous" if n_pos else "normal"
        raise InvalidInputError(
            source, f"only {only} {what} present; this metric needs both normal and anomalous ones"
        )


def _pixel_arrays(
    masks: ArrayLike, maps: ArrayLike
) -> tuple[NDArray[np.bool_], NDArray[np.floating]]:
    """Validate ``masks`` (N,H,W) bool and ``maps`` (N,H,W) float of the same shape.

    Float32 maps are kept as float32 (no float64 copy) to keep ~100 maps of 224x224 cheap.
    """
    masks_arr = np.asarray(masks)
    maps_arr = np.asarray(maps)
    if maps_arr.dtype not in (np.float32, np.float64):
        maps_arr = maps_arr.astype(np.float64)
    if masks_arr.ndim == 2:
        masks_arr = masks_arr[None]
    if maps_arr.ndim == 2:
        maps_arr = maps_arr[None]
    if masks_arr.ndim != 3 or masks_arr.size == 0:
        raise InvalidInputError("masks", f"expected shape (N, H, W), got {masks_arr.shape}")
    if maps_arr.shape != masks_arr.shape:
        raise InvalidInputError(
            "maps", f"shape {maps_arr.shape} does not match the masks' shape {masks_arr.shape}"
        )
    if masks_arr.dtype != np.bool_:
        if not np.isin(masks_arr, (0, 1)).all():
            raise InvalidInputError("masks", "mask values must be 0/1 or bool")
        masks_arr = masks_arr.astype(bool)
    if not np.isfinite(maps_arr).all():
        raise InvalidInputError("maps", "anomaly maps contain NaN or infinite values")
    return masks_arr, maps_arr


# --------------------------------------------------------------------------- image level


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve of image scores (labels: 1 = anomalous)."""
    y = _labels_1d(labels)
    s = _scores_1d(scores, y.size)
    _require_both_classes(y, "labels", "images")
    return float(roc_auc_score(y, s))


def roc_curve_points(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """ROC curve as plain arrays ``(fpr, tpr, thresholds)`` for plotting.

    From :func:`sklearn.metrics.roc_curve`: ``thresholds`` is decreasing and its first entry is
    ``+inf`` (the point (0, 0) where nothing is called anomalous).
    """
    y = _labels_1d(labels)
    s = _scores_1d(scores, y.size)
    _require_both_classes(y, "labels", "images")
    fpr, tpr, thresholds = roc_curve(y, s)
    return (
        np.asarray(fpr, dtype=np.float64),
        np.asarray(tpr, dtype=np.float64),
        np.asarray(thresholds, dtype=np.float64),
    )


def pr_curve_points(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Precision-recall curve as plain arrays ``(precision, recall, thresholds)`` for plotting.

    From :func:`sklearn.metrics.precision_recall_curve`: ``precision`` and ``recall`` have one
    more entry than ``thresholds`` (the final point precision 1, recall 0).
    """
    y = _labels_1d(labels)
    s = _scores_1d(scores, y.size)
    if not y.any():
        raise InvalidInputError("labels", "no anomalous images; precision/recall are undefined")
    precision, recall, thresholds = precision_recall_curve(y, s)
    return (
        np.asarray(precision, dtype=np.float64),
        np.asarray(recall, dtype=np.float64),
        np.asarray(thresholds, dtype=np.float64),
    )


def _best_f1(y: NDArray[np.bool_], s: NDArray[np.floating]) -> tuple[float, float]:
    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def f1_optimal_threshold(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Return ``(threshold, best F1)``: the score threshold maximising image-level F1.

    Images with ``score >= threshold`` are called anomalous. The threshold is one of the
    observed scores; ties in F1 go to the lowest such threshold (scikit-learn's thresholds
    rise, and the first maximum is taken).
    """
    y = _labels_1d(labels)
    s = _scores_1d(scores, y.size)
    if not y.any():
        raise InvalidInputError("labels", "no anomalous images; F1 is undefined")
    return _best_f1(y, s)


def f1_at_threshold(
    labels: ArrayLike, scores: ArrayLike, threshold: float, strict: bool = False
) -> float:
    """Image F1 when calling ``score >= threshold`` (``>`` if ``strict``) anomalous.

    PadimModel's own verdicts use the same ``>=`` rule; ``strict`` gives ``>``.
    """
    y = _labels_1d(labels)
    s = _scores_1d(scores, y.size)
    if not y.any():
        raise InvalidInputError("labels", "no anomalous images; F1 is undefined")
    return _f1_counts(y, s > threshold if strict else s >= threshold)


def f1_of_verdicts(labels: ArrayLike, verdicts: ArrayLike) -> float:
    """Image F1 of given NG verdicts (True = anomalous), whatever rule made them (e.g. the
    area rule's defect regions)."""
    y = _labels_1d(labels)
    pred = np.asarray(verdicts, dtype=bool).reshape(-1)
    if pred.size != y.size:
        raise InvalidInputError("verdicts", f"expected {y.size} verdicts, got {pred.size}")
    if not y.any():
        raise InvalidInputError("labels", "no anomalous images; F1 is undefined")
    return _f1_counts(y, pred)


def _f1_counts(y: NDArray[np.bool_], pred: NDArray[np.bool_]) -> float:
    tp = int(np.count_nonzero(y & pred))
    fp = int(np.count_nonzero(~y & pred))
    fn = int(np.count_nonzero(y & ~pred))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


# --------------------------------------------------------------------------- pixel level


def pixel_auroc(masks: ArrayLike, maps: ArrayLike) -> float:
    """AUROC over all pixels of all images (masks bool (N,H,W), maps float (N,H,W)).

    The arrays are passed to scikit-learn as flat views (float32 maps stay float32), so
    ~100 maps of 224x224 (5M pixels) need a few hundred MB at most.
    """
    m, a = _pixel_arrays(masks, maps)
    y = m.reshape(-1)
    _require_both_classes(y, "masks", "pixels")
    return float(roc_auc_score(y, a.reshape(-1)))


def pixel_f1_at_threshold(
    masks: ArrayLike, maps: ArrayLike, threshold: float, strict: bool = False
) -> float:
    """Pixel F1 (all pixels, no subsampling) calling ``map >= threshold`` (``>`` if strict)."""
    m, a = _pixel_arrays(masks, maps)
    if not m.any():
        raise InvalidInputError("masks", "no anomalous pixels; F1 is undefined")
    flat = a.reshape(-1)
    return _f1_counts(m.reshape(-1), flat > threshold if strict else flat >= threshold)


def _stratified_subsample(y: NDArray[np.bool_], max_pixels: int) -> NDArray[np.intp]:
    """Deterministic (fixed seed) subsample keeping the anomalous/normal pixel ratio."""
    rng = np.random.default_rng(_SUBSAMPLE_SEED)
    fraction = max_pixels / y.size
    chosen = []
    for cls_idx in (np.flatnonzero(y), np.flatnonzero(~y)):
        if cls_idx.size:
            k = max(1, round(cls_idx.size * fraction))
            chosen.append(rng.choice(cls_idx, size=min(k, cls_idx.size), replace=False))
    idx = np.concatenate(chosen)
    idx.sort()
    return idx


def pixel_f1_optimal_threshold(
    masks: ArrayLike, maps: ArrayLike, max_pixels: int = PIXEL_F1_MAX_PIXELS
) -> tuple[float, float]:
    """Return ``(threshold, best F1)`` over pixels; ``map >= threshold`` is anomalous.

    To stay fast, when there are more than ``max_pixels`` pixels the threshold is chosen on a
    deterministic stratified subsample of ``max_pixels`` pixels (fixed seed, the same share of
    anomalous and of normal pixels), and the F1 returned is that threshold's on *all* pixels:
    reproducible, never above what the threshold achieves (the subsample's own F1 was, by up
    to 0.0014), and within a few 1e-4 of the exact best.
    """
    m, a = _pixel_arrays(masks, maps)
    if max_pixels < 2:
        raise InvalidInputError("max_pixels", f"must be at least 2, got {max_pixels}")
    y = m.reshape(-1)
    s = a.reshape(-1)
    if not y.any():
        raise InvalidInputError("masks", "no anomalous pixels; F1 is undefined")
    if y.size <= max_pixels:
        return _best_f1(y, s)
    idx = _stratified_subsample(y, max_pixels)
    threshold, _ = _best_f1(y[idx], s[idx])
    return threshold, _f1_counts(y, s >= threshold)


def pro_curve(masks: ArrayLike, maps: ArrayLike, valid: ArrayLike | None = None,
              ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-region-overlap curve ``(fpr, pro)`` over all thresholds, starting at (0, 0).

    Ground-truth regions are the 8-connected components of each mask. At a threshold t, PRO is
    the mean over all regions (of all images) of the fraction of the region's pixels with
    score >= t, so every region counts equally whatever its size; FPR is the fraction of all
    normal pixels (of all images, good images included) with score >= t.

    Computed in one pass: pixel scores are sorted once (descending); each pixel of region r
    contributes ``1 / (|r| * n_regions)`` to PRO and each normal pixel ``1 / n_normal`` to FPR;
    cumulative sums are read at the last pixel of each group of equal scores (one point per
    unique threshold). ``fpr`` is non-decreasing and ends at 1.

    ``valid`` (H, W) bool, optional: only these pixels count (a region of interest); the
    ground truth is cut to it before its regions are found.
    """
    m, a = _pixel_arrays(masks, maps)
    if valid is not None:
        valid = np.broadcast_to(np.asarray(valid, bool), m.shape)
        m = m & valid
    structure = np.ones((3, 3), dtype=bool)  # 8-connectivity
    pro_weight = np.zeros(m.shape, dtype=np.float64)
    n_regions = 0
    for i, mask in enumerate(m):
        labeled, n = ndimage.label(mask, structure=structure)
        if n == 0:
            continue  # a mask without regions adds only normal pixels
        sizes = np.bincount(labeled.ravel(), minlength=n + 1)
        per_label = np.zeros(n + 1, dtype=np.float64)
        per_label[1:] = 1.0 / sizes[1:]
        pro_weight[i] = per_label[labeled]
        n_regions += n
    if n_regions == 0:
        raise InvalidInputError(
            "masks", "no anomalous regions in the ground truth; PRO is undefined"
        )
    normal = ~m.reshape(-1)
    scores = a.reshape(-1)
    if valid is not None:
        keep = valid.reshape(-1)
        normal, scores = normal[keep], scores[keep]
        pro_weight = pro_weight.reshape(-1)[keep]
    n_normal = int(normal.sum())
    if n_normal == 0:
        raise InvalidInputError(
            "masks", "every pixel is anomalous; the false positive rate is undefined"
        )

    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores = scores[order]
    pro = np.cumsum(pro_weight.reshape(-1)[order])
    del pro_weight
    fp = np.cumsum(normal[order], dtype=np.int64)
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    del order, sorted_scores
    fpr = fp[last_of_tie] / n_normal
    pro = np.clip(pro[last_of_tie] / n_regions, 0.0, 1.0)
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], pro))


def _area_up_to(x: NDArray[np.float64], y: NDArray[np.float64], x_max: float) -> float:
    """Trapezoid area under (x, y) (x non-decreasing) from x[0] to ``x_max``.

    The curve is cut at ``x_max`` with a linearly interpolated end point.
    """
    k = int(np.searchsorted(x, x_max, side="right"))  # points with x <= x_max
    xs, ys = x[:k], y[:k]
    if k < x.size and xs[-1] < x_max:
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        y_end = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        xs = np.append(xs, x_max)
        ys = np.append(ys, y_end)
    return float(np.trapezoid(ys, xs))


def aupro(masks: ArrayLike, maps: ArrayLike, fpr_limit: float = 0.3,
          valid: ArrayLike | None = None) -> float:
    """Normalized area under the PRO curve up to ``fpr_limit`` (perfect detector = 1.0).

    As in Bergmann et al. (MVTec AD, IJCV 2021): the PRO-vs-FPR curve of :func:`pro_curve`
    is integrated with the trapezoid rule from FPR 0 to ``fpr_limit`` (linear interpolation at
    the limit) and divided by ``fpr_limit``. Masks without regions (good images) add only
    normal pixels; if there are no regions at all, InvalidInputError is raised.
    """
    if not 0.0 < float(fpr_limit) <= 1.0:
        raise InvalidInputError("fpr_limit", f"must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(masks, maps, valid)
    return _area_up_to(fpr, pro, float(fpr_limit)) / float(fpr_limit)
