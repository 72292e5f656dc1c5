"""Evaluate a fitted model on an MVTec-style labelled set.

:func:`evaluate_model` runs the model and loads the ground-truth masks;
:func:`evaluate_predictions` is the pure part (arrays in, :class:`EvaluationReport` out).

Pixel ground truth: good images (label 0) without a mask file count as all-normal masks;
anomalous images without a mask file (or with an unreadable one) have no pixel ground truth
and are left out of the pixel metrics (listed in ``EvaluationReport.no_pixel_ground_truth``).
They still count in the image metrics.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from padim_core import metrics
from padim_core.errors import InvalidInputError
from padim_core.names import unique_names

if TYPE_CHECKING:
    from padim_core.datasets import LabeledImage

Progress = Callable[[int, int, str], None]

NO_MASK_FILE = "no mask file"


@dataclass
class EvaluationReport:
    """Metrics of one evaluation run; ``None`` marks a metric without the data it needs.

    Thresholds follow the ``score >= threshold`` rule. ``per_defect_type`` maps each defect
    type to ``{"count", "n_anomalous", "image_auroc", "mean_score"}``, where ``image_auroc``
    compares that type's anomalous images with all good images (None for good-only types).
    """

    image_auroc: float
    image_f1: float
    image_f1_threshold: float
    pixel_auroc: float | None
    aupro: float | None
    pixel_f1: float | None
    pixel_f1_threshold: float | None
    per_defect_type: dict[str, dict[str, Any]]
    n_images: int
    n_anomalous: int = 0
    #: images whose pixels entered the pixel metrics
    n_pixel_images: int = 0
    #: (name, reason) of anomalous images left out of the pixel metrics
    no_pixel_ground_truth: list[tuple[str, str]] = field(default_factory=list)
    #: (name, reason) of inputs the model could not read (in no metric at all)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: the model's own thresholds (set at fit from leave-one-out normal scores) and F1 at
    #: them, using the model's verdict rule ``score >= threshold``; None when it has none
    model_image_threshold: float | None = None
    image_f1_at_model_threshold: float | None = None
    model_pixel_threshold: float | None = None
    pixel_f1_at_model_threshold: float | None = None
    #: per scored image, in scoring order: unique display name (``defect_type/file`` from
    #: ``evaluate_model``), image score, label (True = anomalous) and defect type
    image_names: list[str] = field(default_factory=list)
    image_scores: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    image_labels: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    image_defect_types: list[str] = field(default_factory=list)
    #: wall time of the model's predict call in ``evaluate_model`` (decode + features +
    #: scoring, all images), and per scored image in ms; None where no model ran
    predict_seconds: float | None = None
    ms_per_image: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: plain floats/ints/str, lists instead of tuples, NaN -> None."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _notify(progress: Progress | None, done: int, total: int, stage: str) -> None:
    if progress is not None:
        progress(done, total, stage)


def _per_defect_type(
    labels: NDArray[np.bool_], scores: NDArray[np.float64], defect_types: Sequence[str]
) -> dict[str, dict[str, Any]]:
    types = np.asarray([str(t) for t in defect_types], dtype=object)
    normal_scores = scores[~labels]
    result: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(types.tolist()):  # first-appearance order
        sel = types == name
        positives = scores[sel & labels]
        auroc = None
        if positives.size and normal_scores.size:
            y = np.r_[np.ones(positives.size, bool), np.zeros(normal_scores.size, bool)]
            auroc = metrics.image_auroc(y, np.r_[positives, normal_scores])
        result[name] = {
            "count": int(sel.sum()),
            "n_anomalous": int((sel & labels).sum()),
            "image_auroc": auroc,
            "mean_score": float(scores[sel].mean()),
        }
    return result


def evaluate_predictions(
    labels: ArrayLike,
    scores: ArrayLike,
    masks: Sequence[ArrayLike | None] | None,
    maps: ArrayLike | None,
    defect_types: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    image_threshold: float | None = None,
    pixel_threshold: float | None = None,
    progress: Progress | None = None,
    region: ArrayLike | None = None,
    verdicts: ArrayLike | None = None,
) -> EvaluationReport:
    """Compute every metric from predictions and ground truth (no model, no files).

    ``labels`` (N,) 1 = anomalous; ``scores`` (N,) image scores; ``maps`` (N, H, W) anomaly
    maps or None; ``masks`` one bool (H, W) mask or None per image (None for a good image
    means all normal, for an anomalous image "no pixel ground truth": excluded from pixel
    metrics), or None for no masks at all. ``image_threshold`` / ``pixel_threshold``: the
    model's own thresholds, to report F1 at them. ``verdicts`` (N,) bool: the model's own NG
    verdicts, when its rule is not the score at ``image_threshold`` (the area rule): the
    "F1 at the model's threshold" is then theirs. ``region`` (H, W) bool, or (N, H, W) one
    per image: the pixels the model inspects; pixel metrics count only those. Progress
    stage: ``"metrics"``.
    """
    y, s = metrics.as_labels_and_scores(labels, scores)
    image_threshold = _finite_or_none(image_threshold)
    pixel_threshold = _finite_or_none(pixel_threshold)
    n = y.size
    if len(defect_types) != n:
        raise InvalidInputError(
            "defect_types", f"expected {n} defect types, got {len(defect_types)}"
        )
    shown = [str(v) for v in names] if names is not None else [f"image_{i}" for i in range(n)]
    if len(shown) != n:
        raise InvalidInputError("names", f"expected {n} names, got {len(shown)}")
    if masks is not None and len(masks) != n:
        raise InvalidInputError("masks", f"expected {n} masks (or None entries), got {len(masks)}")
    total = 6
    _notify(progress, 0, total, "metrics")

    image_auroc = metrics.image_auroc(y, s)
    image_thr, image_f1 = metrics.f1_optimal_threshold(y, s)
    f1_at_model = None
    if verdicts is not None:
        f1_at_model = metrics.f1_of_verdicts(y, verdicts)
    elif image_threshold is not None:
        f1_at_model = metrics.f1_at_threshold(y, s, image_threshold)
    _notify(progress, 1, total, "metrics")

    report = EvaluationReport(
        image_auroc=image_auroc,
        image_f1=image_f1,
        image_f1_threshold=image_thr,
        pixel_auroc=None,
        aupro=None,
        pixel_f1=None,
        pixel_f1_threshold=None,
        per_defect_type=_per_defect_type(y, s, defect_types),
        n_images=n,
        n_anomalous=int(y.sum()),
        model_image_threshold=image_threshold,
        image_f1_at_model_threshold=f1_at_model,
        model_pixel_threshold=pixel_threshold,
        image_names=shown,
        image_scores=s,
        image_labels=y,
        image_defect_types=[str(t) for t in defect_types],
    )
    _notify(progress, 2, total, "metrics")

    if maps is None:
        report.no_pixel_ground_truth = [(shown[i], "no anomaly map") for i in np.flatnonzero(y)]
        _notify(progress, total, total, "metrics")
        return report
    maps_arr = np.asarray(maps)
    if maps_arr.ndim != 3 or maps_arr.shape[0] != n:
        raise InvalidInputError("maps", f"expected shape ({n}, H, W), got {maps_arr.shape}")
    used, gt = _pixel_ground_truth(report, y, masks, maps_arr.shape[1:], shown)
    report.n_pixel_images = len(used)
    valid = None if region is None else np.asarray(region, bool)
    if valid is not None and valid.ndim == 3:
        valid = valid[used]
    inside = gt if valid is None else _inspected(gt, valid)
    if used and inside.any() and not inside.all():
        _add_pixel_metrics(report, gt, maps_arr if len(used) == n else maps_arr[used],
                           pixel_threshold, lambda k: _notify(progress, k, total, "metrics"),
                           valid)
    _notify(progress, total, total, "metrics")
    return report


def _inspected(values: NDArray[Any], region: NDArray[np.bool_]) -> NDArray[Any]:
    """The inspected pixels of (N, H, W) ``values``: one flat row per image for one (H, W)
    region, one flat row of all images for (N, H, W) regions."""
    return values[:, region] if region.ndim == 2 else values[region][None]


def _pixel_ground_truth(report: EvaluationReport, y: NDArray[np.bool_],
                        masks: Sequence[ArrayLike | None] | None, shape: tuple[int, ...],
                        shown: Sequence[str]) -> tuple[list[int], NDArray[np.bool_]]:
    """(images with pixel ground truth, their masks (k, H, W)); anomalous images without a
    mask go to ``report.no_pixel_ground_truth``."""
    mask_list: Sequence[ArrayLike | None] = masks if masks is not None else [None] * len(y)
    used: list[int] = []
    gt: list[NDArray[np.bool_]] = []
    for i, mask in enumerate(mask_list):
        if mask is None:
            if y[i]:
                report.no_pixel_ground_truth.append((shown[i], NO_MASK_FILE))
                continue
            mask_arr = np.zeros(shape, dtype=bool)
        else:
            mask_arr = np.asarray(mask) != 0
            if mask_arr.shape != shape:
                raise InvalidInputError(
                    shown[i], f"mask shape {mask_arr.shape} does not match map shape {shape}")
        used.append(i)
        gt.append(mask_arr)
    return used, (np.stack(gt) if gt else np.zeros((0, *shape), dtype=bool))


def _add_pixel_metrics(report: EvaluationReport, gt: NDArray[np.bool_], maps: NDArray[Any],
                       pixel_threshold: float | None, step: Callable[[int], None],
                       region: NDArray[np.bool_] | None = None) -> None:
    """Pixel AUROC, AUPRO and pixel F1 (best and at the model's threshold) into ``report``,
    over the ``region``'s pixels only when given."""
    report.aupro = metrics.aupro(gt, maps, valid=region)
    if region is not None:
        gt, maps = _inspected(gt, region), _inspected(maps, region)
    report.pixel_auroc = metrics.pixel_auroc(gt, maps)
    step(3)
    step(4)
    report.pixel_f1_threshold, report.pixel_f1 = metrics.pixel_f1_optimal_threshold(gt, maps)
    step(5)
    if pixel_threshold is not None:
        report.pixel_f1_at_model_threshold = metrics.pixel_f1_at_threshold(
            gt, maps, pixel_threshold)


# --------------------------------------------------------------------------- with a model


def _display_name(item: LabeledImage) -> str:
    """``defect_type/file name``: MVTec file names repeat across defect types."""
    return f"{item.defect_type}/{Path(item.path).name}"


def _accepts_names(model: Any) -> bool:
    """True if ``model.predict`` takes a ``names`` argument (the real PadimModel does)."""
    try:
        params = inspect.signature(model.predict).parameters
    except (TypeError, ValueError):
        return False
    return "names" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _matches(name: str, item: LabeledImage) -> bool:
    path = Path(item.path)
    return name in (str(item.path), path.name, path.as_posix()) or Path(name).name == path.name


def _readable(item: LabeledImage) -> bool:
    from padim_core.images import load_image

    try:
        load_image(item.path)
    except InvalidInputError:
        return False
    return True


def _align(
    items: Sequence[LabeledImage],
    names: Sequence[str],
    skipped: Sequence[Any],
    given: Sequence[str] | None,
) -> list[int]:
    """Indices of ``items`` that the model scored, in result order.

    The model keeps input order in both ``names`` and ``skipped``. With ``given`` (the unique
    names we passed to ``predict``) matching is exact. Otherwise the model chose the names,
    possibly bare file names that repeat in MVTec sets; where a name fits both the next result
    and the next skipped entry, the image is decoded to tell which one it is.
    """
    if len(names) + len(skipped) != len(items):
        raise InvalidInputError(
            "model",
            f"returned {len(names)} results and {len(skipped)} skipped for {len(items)} inputs",
        )
    if not skipped:
        return list(range(len(items)))

    def fits(name: Any, i: int) -> bool:
        return str(name) == given[i] if given is not None else _matches(str(name), items[i])

    kept: list[int] = []
    j = k = 0
    for i, item in enumerate(items):
        as_result = j < len(names) and fits(names[j], i)
        as_skipped = k < len(skipped) and fits(skipped[k][0], i)
        if as_result and as_skipped:
            as_result = _readable(item)
        if as_result:
            kept.append(i)
            j += 1
        elif as_skipped:
            k += 1
        else:
            raise InvalidInputError(
                str(item.path), "cannot match the model's results to the input images"
            )
    return kept


def evaluate_model(
    model: Any, items: Sequence[LabeledImage], progress: Progress | None = None
) -> EvaluationReport:
    """Run a fitted model on labelled images and compute an :class:`EvaluationReport`.

    The report also holds the per-image results (``image_names``, ``image_scores``,
    ``image_labels``, ``image_defect_types``) and the time of the model's predict call
    (``predict_seconds``, ``ms_per_image``). Images the model cannot read are reported in
    ``skipped`` and left out. Masks are loaded, square-resized and centre-cropped exactly
    like the images (``model.config.image_size``, ``model.config.crop``). A model that pads
    (``resize="pad"``) has its maps mapped back to the square geometry first, so that padding
    never counts as normal pixels and its metrics compare with square-resized models'.
    ``progress(done, total, stage)`` gets the model's own stages, then ``"masks"`` and
    ``"metrics"``.
    """
    if not items:
        raise InvalidInputError("items", "no labelled images to evaluate")
    paths = [item.path for item in items]
    unique = unique_names([_display_name(item) for item in items])
    given = unique if _accepts_names(model) else None
    t0 = time.perf_counter()
    if given is not None:
        res = model.predict(paths, progress=progress, names=given)
    else:
        res = model.predict(paths, progress=progress)
    predict_seconds = time.perf_counter() - t0
    kept = _align(items, list(res.names), list(res.skipped), given)
    kept_set = set(kept)
    skipped_items = [items[i] for i in range(len(items)) if i not in kept_set]
    skipped = [
        (_display_name(item), str(reason))
        for item, (_, reason) in zip(skipped_items, res.skipped, strict=True)
    ]
    if not kept:
        raise InvalidInputError("items", "the model could not read any of the images")

    masks, mask_problems = _masks([items[i] for i in kept], int(model.config.image_size),
                                  int(model.config.crop), progress)
    labels = [bool(items[i].is_anomalous) for i in kept]
    names = [unique[i] for i in kept]
    maps = np.asarray(res.maps)
    region = getattr(model, "region_", None)
    if getattr(model.config, "resize", "stretch") != "stretch":
        maps = _unpadded([items[i] for i in kept], maps)
        if region is not None:    # the region is drawn on the letterboxed crop: per image
            region = _unpadded([items[i] for i in kept], np.broadcast_to(
                region.astype(np.float32), maps.shape).copy()) >= 0.5
    report = evaluate_predictions(
        labels,
        np.asarray(res.scores, dtype=np.float64),
        masks,
        maps,
        [str(items[i].defect_type) for i in kept],
        names=names,
        image_threshold=getattr(model, "image_threshold_", None),
        pixel_threshold=getattr(model, "pixel_threshold_", None),
        progress=progress,
        region=region,
        verdicts=res.verdicts() if getattr(res, "verdict_rule", "score") != "score" else None,
    )
    report.skipped = skipped
    report.predict_seconds = predict_seconds
    report.ms_per_image = 1000 * predict_seconds / len(kept)
    report.no_pixel_ground_truth = [
        (names[n], mask_problems.get(n, NO_MASK_FILE))
        for n in range(len(kept))
        if labels[n] and masks[n] is None
    ]
    return report


def _masks(items: Sequence[LabeledImage], image_size: int, crop: int,
           progress: Progress | None) -> tuple[list[NDArray[np.bool_] | None], dict[int, str]]:
    """Each item's mask cropped like its image (None without one), and why, by position,
    masks that exist could not be read."""
    from padim_core.loading import default_decode_workers, ordered_map

    masks: list[NDArray[np.bool_] | None] = []
    problems: dict[int, str] = {}

    def load(item: LabeledImage) -> NDArray[np.bool_] | str | None:
        return _cropped_mask_or_problem(item.mask_path, image_size, crop)

    # decoded in threads, a few ahead, in order (padim_core.loading)
    loaded = ordered_map(load, items, default_decode_workers(), ahead=32)
    for done, mask in enumerate(loaded, start=1):
        if isinstance(mask, str):
            # a good image stays all-normal; an anomalous one loses its pixel ground truth
            problems[len(masks)] = f"mask unreadable: {mask}"
            mask = None
        masks.append(mask)
        _notify(progress, done, len(items), "masks")
    return masks, problems


def _cropped_mask_or_problem(path: str | Path | None, image_size: int,
                             crop: int) -> NDArray[np.bool_] | str | None:
    """The mask at ``path`` cropped like its image, None without a path, or the problem
    that makes it unreadable."""
    if path is None:
        return None
    try:
        return _load_cropped_mask(path, image_size, crop)
    except InvalidInputError as err:
        return err.problem


def _unpadded(items: Sequence[LabeledImage], maps: NDArray[np.float32]) -> NDArray[np.float32]:
    """Letterboxed maps → the square geometry of the masks (sizes read from file headers)."""
    from PIL import Image

    from padim_core.images import unpad_map

    out = np.empty_like(maps)
    for n, item in enumerate(items):
        with Image.open(item.path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in (5, 6, 7, 8):   # decoded turned a quarter
                width, height = height, width
        out[n] = unpad_map(maps[n], width, height)
    return out


def _load_cropped_mask(path: str | Path, image_size: int, crop: int) -> NDArray[np.bool_]:
    from padim_core.images import load_mask, resize_and_crop_mask

    return resize_and_crop_mask(load_mask(path), image_size, crop)
