"""PadimModel: the scikit-learn-style entry point (configure, ``fit``, ``predict``, save/load).

Pipeline, one module per step: images → backbones (three feature maps) → embedding
(d channels on one grid) → gaussian (streaming per-patch statistics, one inversion) →
scoring (batched Mahalanobis, upsampling, blur) → thresholds (from leave-one-out scores of
normal training images).
"""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from math import nan
from typing import Any

import numpy as np
import torch

from . import model_files
from .allocator import release_free_memory
from .backbones import (
    RANDOM_WEIGHTS,
    SPECS,
    FeatureExtractor,
    load_feature_extractor,
)
from .config import DEFAULTS, FIELDS_ADDED_LATER, PadimConfig
from .devices import device_label
from .embedding import Embedder, random_channel_subset, semi_orthogonal_projection
from .errors import InvalidInputError, ModelFileError, NotFittedError
from .gaussian import (
    HoldoutStore,
    PatchGaussian,
    PatchStatistics,
    finalize,
    patch_statistics,
    statistics_from_sums,
)
from .images import file_sha256, image_list, input_name, seems_readable
from .loading import DecodedBatch, decode_batches
from .regions import (
    DefectRegion,
    check_region,
    defect_regions,
    inspected_pixels,
    masked_scores,
    region_words,
)
from .results import QueuedResult, ResultFetcher, predict_lookahead
from .scoring import MapRenderer, mahalanobis
from .thresholds import (
    MIN_THRESHOLD,
    calibration_split,
    is_ng,
    is_ng_by_area,
    threshold_at_fpr,
)
from .updates import (
    LEARNED_BEFORE,
    MB,
    SAME_AS_CALIBRATION,
    CalibrationCopies,
    UpdateData,
    learned_sha256,
    scored_ng,
    split_learned,
    update_entry,
)

Progress = Callable[[int, int, str], None]
Array = np.ndarray | torch.Tensor
__version__ = "0.1.0"


@dataclass
class FittedState:
    """What ``fit`` learns; kept apart from the configuration."""

    gaussian: PatchGaussian
    channel_index: np.ndarray | None
    projection: np.ndarray | None
    grid: tuple[int, int]
    image_threshold: float
    pixel_threshold: float
    calibration_scores: np.ndarray
    calibrated_on: str
    n_train_images: int
    n_calibration_images: int
    fit_seconds: float
    device: str
    weights_origin: str
    created: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    update_data: UpdateData | None = None      # what partial_fit needs; None: refit only
    updates: list[dict[str, Any]] = field(default_factory=list)   # partial_fit's log
    region: np.ndarray | None = None           # (crop, crop) bool, True = inspect; None: all
    # (H, h, w) float32 patch distances of the calibration images: thresholds for another
    # region without the images (None in files from before regions)
    calibration_distances: np.ndarray | None = None
    mean_image: np.ndarray | None = None       # (crop, crop, 3) uint8 mean training crop
    # SHA-256 of the image files fit learned (arrays have none): with the update log's, what
    # partial_fit refuses to count twice
    train_sha256: tuple[str, ...] = ()

    def learned_sha256(self) -> set[str]:
        """SHA-256 of every image file this model has learned: fit's and its updates'."""
        return set(self.train_sha256) | learned_sha256(self.updates)


@dataclass
class PredictResult:
    """Scores and maps for a batch of images (unreadable inputs listed in ``skipped``)."""

    names: list[str]
    scores: np.ndarray
    maps: np.ndarray
    images: np.ndarray
    image_threshold: float
    pixel_threshold: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    region: np.ndarray | None = None    # (crop, crop) bool, True = inspected; None: all
    min_defect_area: int = 0
    verdict_rule: str = "score"

    @property
    def normalized(self) -> np.ndarray:
        """Score / image threshold: 1.0 is the boundary, independent of the rest of the batch."""
        return self.scores / self.image_threshold

    def defects(self, i: int, min_area: int | None = None,
                pixel_threshold: float | None = None,
                ) -> tuple[list[DefectRegion], np.ndarray]:
        """Image ``i``'s defect regions (largest first) and their pixel mask: connected
        pixels at or above the pixel threshold, inside the region, of at least ``min_area``
        pixels (the model's minimum when None). Cheap: no model run."""
        return defect_regions(self.maps[i],
                              self.pixel_threshold if pixel_threshold is None
                              else pixel_threshold, self.region,
                              self.min_defect_area if min_area is None else min_area)

    def verdicts(self, threshold: float | None = None, min_area: int | None = None,
                 rule: str | None = None, pixel_threshold: float | None = None) -> np.ndarray:
        """True where the image is NG: by ``thresholds.is_ng`` (score at or above the
        threshold, or not a number) under the ``"score"`` rule; by
        ``thresholds.is_ng_by_area`` (a defect region of at least ``min_area``) under
        ``"area"``. None: the model's own settings."""
        if (rule or self.verdict_rule) == "area":
            counts = [len(self.defects(i, min_area, pixel_threshold)[0])
                      for i in range(len(self.names))]
            return is_ng_by_area(self.scores, np.asarray(counts, np.int64))
        return is_ng(self.scores, self.image_threshold if threshold is None else threshold)

    @classmethod
    def concat(cls, parts: Sequence[PredictResult], image_threshold: float,
               pixel_threshold: float, crop: int) -> PredictResult:
        """Join per-batch results (the region and defect rule of the first part)."""
        if not parts:
            return cls([], np.zeros(0), np.zeros((0, crop, crop), np.float32),
                       np.zeros((0, crop, crop, 3), np.uint8), image_threshold, pixel_threshold)
        first = parts[0]
        if len(parts) == 1:     # one batch: its arrays as they are, not a copy
            return replace(first, image_threshold=image_threshold,
                           pixel_threshold=pixel_threshold)
        return cls([n for p in parts for n in p.names], np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.maps for p in parts]),
                   np.concatenate([p.images for p in parts]), image_threshold, pixel_threshold,
                   [s for p in parts for s in p.skipped], first.region, first.min_defect_area,
                   first.verdict_rule)


def _placed(gaussian: PatchGaussian, device: torch.device) -> PatchGaussian:
    """The Gaussians where scoring runs: numpy for the CPU, torch tensors on ``device``."""
    mean, whitener = gaussian.mean, gaussian.whitener
    if device.type == "cpu":
        if isinstance(whitener, np.ndarray):
            return gaussian
        return PatchGaussian(mean.cpu().numpy(), whitener.cpu().numpy())
    if isinstance(whitener, torch.Tensor) and whitener.device == device:
        return gaussian
    return PatchGaussian(torch.as_tensor(mean).to(device), torch.as_tensor(whitener).to(device))


def _checked_inputs(images: Iterable[Any], names: Sequence[str] | None,
                    what: str | None = None) -> list[Any]:
    """images as a list (``images.image_list``), with one name each when names are given
    (and at least one image when ``what`` names them in the error)."""
    images = image_list(images)
    if names is not None and len(names) != len(images):
        raise InvalidInputError("names", "must have one name per image")
    if what and not images:
        raise InvalidInputError(what, "no images given")
    return images


#: Settings that change how images are fed, not what a fitted model computes.
RUNTIME_SETTINGS = frozenset({"decode_workers", "batch_size"})
#: Settings that define the loaded backbone (a model keeps it while they stay).
BACKBONE_SETTINGS = ("backbone", "weights", "device", "seed")


def _same(a: Any, b: Any) -> bool:
    """Equal settings, arrays (regions) included."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(a, b)
    return a == b


def too_few_readable(used: int, skipped: list[tuple[str, str]]) -> InvalidInputError:
    """fit's error when fewer than 2 images could be read, listing every unreadable one in
    ``skipped`` for callers that show them all."""
    detail = f"; {len(skipped)} unreadable (first: {skipped[0][0]}: {skipped[0][1]})" \
        if skipped else ""
    err = InvalidInputError("training images",
                            f"need at least 2 readable images, got {used}{detail}")
    err.skipped = skipped
    return err


def _checked_calibration(calibration: Sequence[int], n: int) -> np.ndarray:
    """Calibration indices, sorted and unique, or a clear error."""
    idx = np.unique(np.asarray(list(calibration), dtype=np.int64))
    if idx.size and (idx[0] < 0 or idx[-1] >= n):
        raise InvalidInputError("calibration", f"indices must be in [0, {n}), got "
                                               f"{idx[0]}..{idx[-1]}")
    if n - idx.size < 2:
        raise InvalidInputError("calibration", "leaves fewer than 2 images outside it")
    return idx


def _holds_out(stats: PatchStatistics, held: HoldoutStore) -> bool:
    """Whether there are calibration images and enough others to hold them out."""
    return bool(held.count) and stats.n - held.count >= 2


def _fitted(name: str, doc: str) -> property:
    """A read-only fitted attribute (scikit-learn's trailing underscore) from ``state_``."""
    return property(lambda self: getattr(self._state(), name), doc=doc)


class PadimModel:
    """PaDiM anomaly detector: one Gaussian per image patch over pretrained CNN features.

    >>> model = PadimModel(d=100).fit(normal_paths)          # doctest: +SKIP
    >>> res = model.predict(test_paths); res.scores, res.maps  # doctest: +SKIP

    The constructor only stores the configuration (``config``, a ``PadimConfig``); ``fit``
    learns the fitted state (``state_``, a ``FittedState``), read through the attributes
    with a trailing underscore below. Defaults are ``config.DEFAULTS``.

    Parameters
    ----------
    backbone : str, default "efficientnet_lite2"
        Feature extractor, one of ``backbones.SPECS``.
    d : int, optional
        Feature channels kept per patch (at most the backbone's three layers together);
        None for the backbone's own default (``BackboneSpec.default_d``: 192 for Lite2, all
        its channels; 100 for the others).
    image_size : int, default 224
        Size every image is resized to: its long side with the padded resizes, the square
        with "stretch".
    crop : int, optional
        Centre crop fed to the backbone, with ``resize="stretch"`` only; None for the whole
        image (padded resizes) or ``config.default_crop``: 7/8 of ``image_size`` (224 for
        256) with "stretch"; ``crop=image_size`` keeps the border (docs/quality.md).
    device : str, default "auto"
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".
    seed : int, default 1024
        Seed of the channel choice and of the calibration split.
    weights : str or path, optional
        Backbone weights file; None for the installed default, "random" for tests only.
    reduction : {"random", "orthogonal"}, default "random"
        How the d channels are chosen: a random subset, or a semi-orthogonal projection.
    eps : float, default 0.01
        Added to each covariance's diagonal, so it can be inverted with few images.
    calibration_fraction : float, default 0.2
        Share of the training images whose leave-one-out scores set the thresholds.
    image_fpr, pixel_fpr : float, default 0.01 and 0.001
        False-positive rates of normal images (pixels) at the image (pixel) threshold.
    batch_size : int, default 32
        Images decoded and scored together.
    sigma : float, default 4.0
        Gaussian blur of the anomaly maps, in pixels of the crop.
    updatable : bool, default True
        Keep what ``partial_fit`` needs: the float64 sums and the calibration embeddings
        (about 175 MB at d = 100, 4 GB at d = 550, in memory and in the model file).
        False gives the smallest fit memory and files; the model can then only be refitted.
    score_top_percent : float, default 0.5
        Image score = mean of the top share (in %) of its map's pixels; 0 = the maximum
        (the PaDiM paper). Model files from before this setting load with 0.
    resize : str, optional
        "stretch": square resize (the PaDiM paper); "pad": aspect-preserving resize of the
        long side, centred on black (for non-square parts of varying size; the crop is then
        the whole image); "pad-reflect": the same with the part's mirror image in the bands.
        None: "pad-reflect", or "stretch" when a ``crop`` smaller than ``image_size`` is
        given. Model files from before this setting load with "stretch".
    upsample : {"nearest", "bilinear"}, default "bilinear"
        How the stride-8 and stride-16 feature maps reach the stride-4 grid: replicated
        (the PaDiM paper) or bilinearly interpolated. Model files from before this setting
        load with "nearest".
    min_defect_area : int, default 0
        Defect regions (connected pixels at or above the pixel threshold) smaller than this,
        in pixels of the crop, are noise: no contour, not counted (docs/regions.md).
    verdict_rule : {"score", "area"}, default "score"
        NG when the image score reaches the image threshold, or ("area") when a defect
        region of at least ``min_defect_area`` pixels exists.
    region : array of shape (crop, crop), optional
        Pixels to inspect (True) and to ignore (False), e.g. from ``regions.load_region``;
        None inspects the whole crop. Ignored pixels count neither in scores, defects nor
        the thresholds fit calibrates; ``set_region`` changes it after fit.
    extractor : FeatureExtractor, optional
        An already loaded backbone to share (the app caches one per process); it must be
        ``backbone``.
    decode_workers : int, optional
        Threads that decode, resize and crop images, one batch ahead of the backbone; None
        for ``loading.default_decode_workers()``, 0 to decode one image after another. Not
        part of the model (results are the same for any value).

    Attributes
    ----------
    mean_ : ndarray of shape (P, d), float32
        Mean embedding of each of the P = H × W patch positions (``grid_``).
    whitener_ : ndarray of shape (P, d, d), float32
        Upper-triangular M per patch with M Mᵀ = (Σ + eps·I)⁻¹: the squared Mahalanobis
        distance of x is ‖(x − μ) M‖². Torch tensors when fitted on an accelerator.
    grid_ : tuple (H, W)
        Patch grid of the first feature map (56 × 56 for a 224 crop).
    channel_index_ : ndarray of shape (d,) or None
        Channels kept (``reduction="random"``), else None.
    projection_ : ndarray of shape (C, d) or None
        Projection of the C backbone channels (``reduction="orthogonal"``), else None.
    image_threshold_ : float
        Image score at or above which a part is NG (``thresholds.is_ng``).
    pixel_threshold_ : float
        Map value at or above which a pixel is drawn as defect.
    calibration_scores_ : ndarray of shape (n_calibration_images_,)
        Scores of the calibration images, each left out of the Gaussians it is scored by.
    n_train_images_, n_calibration_images_ : int
        Images the Gaussians were fitted on, and those the thresholds came from.
    fit_seconds_ : float
        Wall time of fit, decoding included.
    device_, weights_origin_ : str
        Where fit ran and where the backbone weights came from, in words.
    skipped_ : list of (name, reason)
        Inputs fit could not read.
    warnings_ : list of str
        What fit warned about.
    region_ : ndarray of shape (crop, crop), bool, or None
        The inspected pixels the thresholds were calibrated for; None: the whole crop.
    train_sha256_ : tuple of str
        SHA-256 of the image files fit learned: ``partial_fit`` does not count them again.
    """

    def __init__(self, backbone: str = DEFAULTS.backbone, d: int | None = None,
                 image_size: int = DEFAULTS.image_size, crop: int | None = None,
                 device: str = DEFAULTS.device, seed: int = DEFAULTS.seed,
                 weights: str | os.PathLike | None = DEFAULTS.weights,
                 reduction: str = DEFAULTS.reduction, eps: float = DEFAULTS.eps,
                 calibration_fraction: float = DEFAULTS.calibration_fraction,
                 image_fpr: float = DEFAULTS.image_fpr, pixel_fpr: float = DEFAULTS.pixel_fpr,
                 batch_size: int = DEFAULTS.batch_size, sigma: float = DEFAULTS.sigma,
                 updatable: bool = DEFAULTS.updatable,
                 score_top_percent: float = DEFAULTS.score_top_percent,
                 resize: str | None = None,
                 upsample: str = DEFAULTS.upsample,
                 min_defect_area: int = DEFAULTS.min_defect_area,
                 verdict_rule: str = DEFAULTS.verdict_rule,
                 region: np.ndarray | None = None,
                 extractor: FeatureExtractor | None = None,
                 decode_workers: int | None = None) -> None:
        self.decode_workers = decode_workers
        # as given: None stays None in get_params, so that set_params(backbone=...) or a clone
        # derives them again (the backbone's own d; the crop and resize from image_size)
        self._derived_as_given = {"d": d, "crop": crop, "resize": resize}
        self.config = PadimConfig(
            backbone=backbone, d=d, image_size=image_size, crop=crop,   # whole numbers: checked
            device=str(device), seed=seed,                              # by PadimConfig
            weights=None if weights is None else str(weights),
            reduction=reduction, eps=float(eps), calibration_fraction=float(calibration_fraction),
            image_fpr=float(image_fpr), pixel_fpr=float(pixel_fpr),
            batch_size=batch_size,
            sigma=float(sigma), updatable=bool(updatable),
            score_top_percent=float(score_top_percent), resize=resize,
            upsample=str(upsample), min_defect_area=min_defect_area,
            verdict_rule=str(verdict_rule))
        self.region = None if region is None else check_region(region, self.config.crop)
        self._extractor: FeatureExtractor | None = None
        self._renderer: MapRenderer | None = None
        # (fitted Gaussians, device, the same on that device): see _on_scoring_device
        self._placement: tuple[PatchGaussian, torch.device, PatchGaussian] | None = None
        if extractor is not None:
            self.use_extractor(extractor)
        self.state_: FittedState | None = None

    # ------------------------------------------------------------------ settings
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The settings, as constructor keywords (scikit-learn's convention): the
        configuration as it stands (``set_region`` / ``set_defect_rule`` included; ``d``,
        ``crop`` and ``resize`` as given, None when derived), the region and
        ``decode_workers``. ``deep`` is accepted for scikit-learn; nothing nests.
        The loaded backbone (``extractor``) is shared state, not a setting."""
        return {**asdict(self.config), **self._derived_as_given, "region": self.region,
                "decode_workers": self.decode_workers}

    def set_params(self, **params: Any) -> PadimModel:
        """Change settings before ``fit`` (scikit-learn's convention); returns self.

        On a fitted model only ``decode_workers`` and ``batch_size`` may change: the others
        define the fitted state (``set_region`` and ``set_defect_rule`` change the region and
        defect rule of a fitted model; for other settings, refit a copy:
        ``sklearn.base.clone(model).set_params(...)``).
        """
        current = self.get_params()
        unknown = sorted(set(params) - set(current))
        if unknown:
            raise InvalidInputError(unknown[0], f"is not a setting of PadimModel (settings: "
                                                f"{', '.join(current)})")
        if self.state_ is not None:
            fixed = sorted(k for k, v in params.items() if k not in RUNTIME_SETTINGS
                           and not _same(v, current[k]))
            if fixed:
                raise InvalidInputError(fixed[0], "cannot change on a fitted model: it "
                                                  "defines the fitted state; refit, or "
                                                  "clone(model).set_params(...) then fit")
            self.decode_workers = params.get("decode_workers", self.decode_workers)
            if "batch_size" in params:
                self.config = replace(self.config, batch_size=params["batch_size"])
            return self
        merged = {**current, **params}
        keep = self._extractor if all(merged[k] == current[k] for k in BACKBONE_SETTINGS) \
            else None
        self.__init__(**merged, extractor=keep)   # type: ignore[misc]
        return self

    def __sklearn_clone__(self) -> PadimModel:
        """An unfitted model with the same settings, sharing the loaded backbone (what
        ``sklearn.base.clone`` returns)."""
        return type(self)(**self.get_params(), extractor=self._extractor)

    def __repr__(self) -> str:
        cfg = asdict(self.config)
        default = asdict(PadimConfig(backbone=self.config.backbone))
        shown = {k: v for k, v in cfg.items() if k == "backbone" or v != default[k]}
        text = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        if self.region is not None:
            text += f", region=<{self.region.shape[0]}x{self.region.shape[1]} mask, " \
                    f"{self.region.mean():.0%} inspected>"
        fitted = "" if self.state_ is None else (
            f"  # fitted on {self.state_.n_train_images} images, image threshold "
            f"{self.state_.image_threshold:.4g}")
        return f"PadimModel({text}){fitted}"

    # ------------------------------------------------------------------ plumbing
    @property
    def extractor(self) -> FeatureExtractor:
        """The backbone, loaded on first use."""
        if self._extractor is None:
            self._extractor = load_feature_extractor(
                self.config.backbone, self.config.weights, self.config.device, self.config.seed)
        return self._extractor

    @property
    def device(self) -> torch.device:
        return self.extractor.device

    def use_extractor(self, extractor: FeatureExtractor) -> PadimModel:
        """Share an already loaded backbone (e.g. one cached per process); returns self."""
        if extractor.spec.name != self.config.backbone:
            raise InvalidInputError("extractor", f"is {extractor.spec.name}, the model wants "
                                                 f"{self.config.backbone}")
        self._extractor = extractor
        self._renderer = None
        return self

    def _state(self) -> FittedState:
        if self.state_ is None:
            raise NotFittedError("model is not fitted: call fit() or PadimModel.load() first")
        return self.state_

    def _embedder(self, state: FittedState | None = None) -> Embedder:
        state = state or self._state()
        return Embedder(SPECS[self.config.backbone].channels, state.channel_index,
                        state.projection, self.config.upsample)

    def _decoded_batches(self, images: Sequence[Any], names: Sequence[str] | None,
                         digests: bool = False) -> Iterator[DecodedBatch]:
        """``images`` decoded in batches by ``decode_workers`` threads, the next batch while
        the caller runs the current one (pinned memory for CUDA; see ``loading``), with the
        files' SHA-256 when ``digests``."""
        cfg = self.config
        return decode_batches(images, names, cfg.image_size, cfg.crop, cfg.batch_size,
                              self.decode_workers, pin_memory=self.device.type == "cuda",
                              resize=cfg.resize, digests=digests)

    def _embed(self, crops: np.ndarray | torch.Tensor, embedder: Embedder,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """(b, crop, crop, 3) uint8 → embeddings (H, W, b, d), written into ``out`` if given."""
        pixels = crops if isinstance(crops, torch.Tensor) else torch.from_numpy(crops)
        with torch.inference_mode():
            return embedder(self.extractor(pixels), out=out)

    def _patch_embeddings(self, crops: np.ndarray | torch.Tensor, embedder: Embedder,
                          grid: tuple[int, int] | None = None, out: np.ndarray | None = None,
                          ) -> tuple[np.ndarray | torch.Tensor, tuple[int, int]]:
        """(b, crop, crop, 3) uint8 → patch-major embeddings (P, b, d) (numpy on the CPU) and
        the (H, W) grid of patches; written into ``out`` (P, b, d) if given (then ``grid``
        too)."""
        dest = None if out is None else torch.from_numpy(out).reshape(*grid, *out.shape[1:])
        emb = self._embed(crops, embedder, out=dest)
        x = emb.reshape(emb.shape[0] * emb.shape[1], *emb.shape[2:])
        return (x.numpy() if x.device.type == "cpu" else x), tuple(emb.shape[:2])

    def _render(self, sq_or_dist: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch distances (b, H, W) → smoothed (b, crop, crop) maps."""
        r = self._renderer
        if r is None or r.grid != tuple(grid) or r.rows.device != sq_or_dist.device:
            r = self._renderer = MapRenderer(grid, self.config.crop, self.config.sigma,
                                             sq_or_dist.device)
        with torch.inference_mode():
            return r(sq_or_dist)

    # ------------------------------------------------------------------ fit
    def fit(self, images: Iterable[Any], progress: Progress | None = None,
            names: Sequence[str] | None = None, *,
            calibration: Sequence[int] | None = None) -> PadimModel:
        """Learn the per-patch Gaussians of normal ``images`` and calibrate thresholds.

        images: paths, bytes, PIL images or HxWx3 uint8 arrays. Unreadable ones are skipped
        and listed in ``skipped_``. A share of the images (``calibration_fraction``) sets the
        thresholds, each scored *leave-one-out* (under the Gaussians of the other images, in
        closed form), so thresholds come from images the model did not see while the final
        Gaussians still use every image.

        calibration: indices into ``images`` of the calibration images, instead of the
        seeded share (e.g. to compare ``partial_fit`` with a refit on the same ones).
        Unless ``updatable`` is False, the sums and calibration embeddings are kept
        (``card()["update_data_mb"]``) so that ``partial_fit`` can add images later.
        """
        t0 = time.perf_counter()
        images = _checked_inputs(images, names, "training images")
        self._placement = None          # a copy of the previous model's Gaussians
        cfg = self.config
        channel_index, projection = self._channel_choice()
        embedder = Embedder(self.extractor.channels, channel_index, projection, cfg.upsample)
        cal_idx = (self._calibration_indices(images) if calibration is None
                   else _checked_calibration(calibration, len(images)))
        stats, held, grid, skipped, mean_image, digests = self._accumulate(
            images, names, embedder, cal_idx, progress)
        n_used = stats.n
        update_data = (UpdateData(*stats.packed_sums(), held.to_array())
                       if cfg.updatable and _holds_out(stats, held) else None)
        gaussian, hold_sq = self._factorize(stats, held, progress)
        cal_dist, calibrated_on = self._calibration(gaussian, grid, embedder, hold_sq, images,
                                                    names)
        cal_scores, image_threshold, pixel_threshold = self._thresholds(cal_dist, grid,
                                                                        self.region)
        notes = self._fit_notes(n_used, cal_scores, held_out=hold_sq is not None)
        self.state_ = FittedState(
            gaussian=gaussian, channel_index=channel_index, projection=projection, grid=grid,
            image_threshold=image_threshold, pixel_threshold=pixel_threshold,
            calibration_scores=cal_scores, calibrated_on=calibrated_on,
            n_train_images=n_used, n_calibration_images=len(cal_scores),
            fit_seconds=time.perf_counter() - t0, device=device_label(self.extractor.device),
            weights_origin=self.extractor.weights_origin,
            created=datetime.now(UTC).isoformat(timespec="seconds"), skipped=skipped,
            warnings=notes, update_data=update_data, region=self.region,
            calibration_distances=cal_dist, mean_image=mean_image,
            train_sha256=tuple(d for d in digests if d is not None))
        for note in notes:
            warnings.warn(note, stacklevel=2)
        if progress:
            progress(1, 1, "done")
        return self

    def partial_fit(self, images: Iterable[Any], progress: Progress | None = None,
                    names: Sequence[str] | None = None, *,
                    max_score: float | None = None) -> PadimModel:
        """Add normal ``images`` to the fitted model, exactly; returns self.

        The result is the model ``fit`` would give on the training images plus these, with
        the same configuration and the same calibration images (new images are never
        calibration images): the per-patch sums are added, the Gaussians inverted again,
        and the calibration images re-scored leave-one-out under them, which sets new
        thresholds. The training images are not read again. On an unfitted model this is
        ``fit``. Unreadable inputs are skipped and listed in ``skipped_``; with none usable
        the model stays as it was and a warning says so. Everything is computed into new
        objects and swapped in at the end, so a failure leaves the model as it was.

        An image the model already learned is left out and listed: the same file bytes as a
        training or earlier added image (``train_sha256_``, the update log), or the same
        pixels as a calibration image (``updates.CalibrationCopies``). ``max_score``: leave
        out, and list with its score, every image that scores at least this much under the
        model as it is (e.g. ``image_threshold_``: parts it calls NG are not learned as
        normal unseen; ``padim update`` does so unless ``--include-ng``).
        """
        if self.state_ is None:
            return self.fit(images, progress, names)
        t0 = time.perf_counter()
        state = self.state_
        if state.update_data is None:
            raise InvalidInputError("model", "has no update data (updatable=False, a compact "
                                             "file, a file from before updates, or calibrated "
                                             "on its training images): refit it on all its "
                                             "images with fit()")
        images = _checked_inputs(images, names)
        names = [input_name(im, i) for i, im in enumerate(images)] if names is None \
            else list(names)
        digests = [file_sha256(im) for im in images]
        fresh, learned = split_learned(digests, state.learned_sha256())
        repeats = [(names[i], LEARNED_BEFORE) for i in learned]
        images, names = [images[i] for i in fresh], [names[i] for i in fresh]
        stats, skipped, used = self._add_to_sums(state, images, names, progress, max_score)
        skipped = [*repeats, *skipped]
        added = stats.n - state.update_data.n
        if added == 0:
            detail = f" ({len(skipped)} not added, first: {skipped[0][0]}: {skipped[0][1]})" \
                if skipped else ""
            warnings.warn(f"no usable images to add{detail}: the model is unchanged",
                          stacklevel=2)
            return self
        calibration = state.update_data.calibration
        sums = None if stats.sums_after_finalize else stats.packed_sums()
        gaussian, hold_sq = self._factorize(stats, HoldoutStore.of(calibration), progress)
        update_data = UpdateData(*(sums or stats.packed_sums()), calibration)
        cal_dist, _ = self._calibration(gaussian, state.grid, self._embedder(state), hold_sq,
                                        [], None)
        cal_scores, image_threshold, pixel_threshold = self._thresholds(cal_dist, state.grid,
                                                                        state.region)
        notes = self._fit_notes(stats.n, cal_scores, held_out=True)
        new_state = replace(
            state, gaussian=gaussian, image_threshold=image_threshold,
            pixel_threshold=pixel_threshold, calibration_distances=cal_dist,
            calibration_scores=cal_scores, n_train_images=stats.n, skipped=skipped,
            warnings=notes, update_data=update_data,
            updates=[*state.updates, update_entry(
                added, state.n_train_images, state.image_threshold, state.pixel_threshold,
                skipped, time.perf_counter() - t0,
                [d for d in (digests[fresh[i]] for i in used) if d is not None])])
        self._placement = None
        self.state_ = new_state
        for note in notes:
            warnings.warn(note, stacklevel=2)
        if progress:
            progress(1, 1, "done")
        return self

    def _add_to_sums(self, state: FittedState, images: list[Any], names: Sequence[str] | None,
                     progress: Progress | None, max_score: float | None = None,
                     ) -> tuple[PatchStatistics, list[tuple[str, str]], list[int]]:
        """A new statistics store: the kept sums plus the embeddings of the readable
        ``images`` that are not copies of a calibration image nor score ``max_score`` or
        more; those left out (name, reason); the indices of those added."""
        kept = state.update_data
        stats = statistics_from_sums(kept.n, kept.total, kept.second, self.extractor.device)
        embedder = self._embedder(state)
        copies = CalibrationCopies(kept.calibration)
        skipped: list[tuple[str, str]] = []
        used: list[int] = []
        for batch in self._decoded_batches(images, names):
            idx, crops = batch.indices, batch.pixels
            skipped += batch.skipped
            if len(crops):
                x, grid = self._patch_embeddings(crops, embedder)
                if tuple(grid) != tuple(state.grid):   # a backbone other than the model's
                    raise InvalidInputError("images", f"give a {grid} patch grid, the model "
                                                      f"has {tuple(state.grid)}")
                left_out = dict.fromkeys(np.flatnonzero(copies.find(x)).tolist(),
                                         SAME_AS_CALIBRATION)
                if max_score is not None:
                    scores = self._scores_of(state, x, grid)
                    for j in np.flatnonzero(scores >= max_score).tolist():
                        left_out.setdefault(j, scored_ng(scores[j], max_score))
                keep = [j for j in range(len(idx)) if j not in left_out]
                skipped += [(batch.names[j], why) for j, why in sorted(left_out.items())]
                used += [idx[j] for j in keep]
                if keep:
                    stats.update(x if len(keep) == len(idx) else x[:, keep])
            if progress:
                progress(min(idx[-1] + 1 if idx else 0, len(images)), len(images), "features")
        return stats, skipped, used

    def _scores_of(self, state: FittedState, x: Array, grid: tuple[int, int]) -> np.ndarray:
        """Image scores (b,) of patch embeddings (P, b, d) under ``state``, as predict
        scores them (its region and score rule)."""
        emb = torch.as_tensor(x).reshape(*grid, *x.shape[1:])
        with torch.inference_mode():
            maps = self._render(mahalanobis(emb, self._on_scoring_device(state.gaussian)),
                                grid)
            return masked_scores(maps, state.region, self.config.score_top_percent
                                 ).double().cpu().numpy()

    def _channel_choice(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(channel_index, projection): how the d channels are taken, one of them None."""
        cfg = self.config
        total_c = sum(self.extractor.channels)
        if cfg.reduction == "random":
            return random_channel_subset(total_c, cfg.d, cfg.seed), None
        return None, semi_orthogonal_projection(total_c, cfg.d, cfg.seed)

    def _calibration_indices(self, images: list[Any]) -> np.ndarray:
        """The seeded calibration share of ``images``, drawn over those that seem readable
        (``images.seems_readable``): unreadable inputs among them do not move it, so the same
        images give the same model whatever junk came with them."""
        readable = np.flatnonzero(self._readable_flags(images))
        cfg = self.config
        return readable[calibration_split(len(readable), cfg.calibration_fraction, cfg.seed)[1]]

    def _readable_flags(self, images: list[Any]) -> list[bool]:
        """Whether each input seems readable (no decoding); a cluster asks its workers."""
        return [seems_readable(im) for im in images]

    def _accumulate(self, images: list[Any], names: Sequence[str] | None, embedder: Embedder,
                    cal_idx: np.ndarray, progress: Progress | None,
                    ) -> tuple[PatchStatistics, HoldoutStore, tuple[int, int],
                               list[tuple[str, str]], np.ndarray | None, list[str | None]]:
        """Decode, embed and add every readable image to the per-patch statistics, keeping
        a copy of the calibration images' (``cal_idx``) embeddings.

        Returns (statistics, calibration embeddings, grid, skipped inputs, the mean crop
        (crop, crop, 3) uint8: the background a region is drawn on, the SHA-256 of each image
        used (None for arrays)); a clear error, listing every unreadable input, when fewer
        than 2 images could be read.
        """
        is_cal = np.zeros(len(images), bool)
        is_cal[cal_idx] = True
        device = self.extractor.device
        stats: PatchStatistics | None = None
        held = HoldoutStore()
        skipped: list[tuple[str, str]] = []
        grid = (0, 0)
        crop_sum = np.zeros((self.config.crop, self.config.crop, 3), np.uint64)
        digests: list[str | None] = []
        for batch in self._decoded_batches(images, names, digests=True):
            idx, crops = batch.indices, batch.pixels
            skipped += batch.skipped
            digests += batch.digests
            if len(crops):
                crop_sum += batch.crops.sum(axis=0, dtype=np.uint32)   # exact, 2x faster
                if stats is None:        # the grid is known from the first batch on
                    x, grid = self._patch_embeddings(crops, embedder)
                    stats = patch_statistics(x.shape[0], x.shape[2], device).update(x)
                else:                    # the store may offer a buffer to embed into
                    x = stats.update_from(
                        len(crops), lambda out, crops=crops, grid=grid:
                        self._patch_embeddings(crops, embedder, grid, out)[0])
                cal_rows = np.flatnonzero(is_cal[idx])
                if len(cal_rows):
                    held.append(x, cal_rows)
                if stats.packed and device.type == "cpu":
                    del x
                    release_free_memory()   # gigabytes of sums: no fragmentation on top
            if progress:
                progress(min(idx[-1] + 1 if idx else 0, len(images)), len(images), "features")
        used = 0 if stats is None else stats.n
        if used < 2:
            held.close()
            raise too_few_readable(used, skipped)
        return stats, held, grid, skipped, np.rint(crop_sum / used).astype(np.uint8), digests

    def _factorize(self, stats: PatchStatistics, held: HoldoutStore,
                   progress: Progress | None) -> tuple[PatchGaussian, Array | None]:
        """The Gaussians, and the calibration images' squared leave-one-out distances (H, P)
        when enough images are left to hold them out (else None). Consumes both stores."""
        if progress:
            progress(0, 1, "inverting covariances")
        try:
            return finalize(stats, self.config.eps, holdout=held if _holds_out(stats, held)
                            else None)
        finally:
            held.close()

    def _calibration(self, gaussian: PatchGaussian, grid: tuple[int, int], embedder: Embedder,
                     hold_sq: Array | None, images: list[Any], names: Sequence[str] | None,
                     ) -> tuple[np.ndarray, str]:
        """Normal images' patch distances (H, h, w) float32 for the thresholds, and what they
        are in words.

        From the leave-one-out distances (H, P); without them (too few images to hold any
        out), the training images themselves, which under-estimates normal scores
        (``_fit_notes`` says so).
        """
        if hold_sq is not None:
            dist = torch.as_tensor(hold_sq).float().sqrt().reshape(-1, *grid)
            return (dist.cpu().numpy(), "normal training images, each scored leave-one-out")
        on_device = self._on_scoring_device(gaussian)
        parts = []
        for batch in self._decoded_batches(images, names):
            if len(batch.indices):
                with torch.inference_mode():
                    parts.append(mahalanobis(self._embed(batch.pixels, embedder),
                                             on_device).cpu())
        return torch.cat(parts).numpy(), "training images (too few to hold out)"

    def _thresholds(self, distances: np.ndarray, grid: tuple[int, int],
                    region: np.ndarray | None) -> tuple[np.ndarray, float, float]:
        """Calibration scores (H,) and the (image, pixel) thresholds for ``region``.

        The calibration images' maps are rendered from their patch distances, then scored
        and quantiled over the inspected pixels only: image score = maximum (or top share)
        over inspected pixels; pixel threshold = quantile of inspected pixels.
        """
        cfg = self.config
        with torch.inference_mode():
            maps = self._render(torch.as_tensor(distances).to(self.device), grid)
            scores = masked_scores(maps, region, cfg.score_top_percent).double().cpu().numpy()
        pixels = inspected_pixels(maps.cpu().numpy(), region)
        return (scores, threshold_at_fpr(scores, cfg.image_fpr),
                threshold_at_fpr(pixels, cfg.pixel_fpr))

    def set_region(self, region: np.ndarray | None) -> PadimModel:
        """Inspect only ``region`` ((crop, crop), True = inspect; None: the whole crop) from
        now on, with both thresholds recalibrated for it from the kept calibration
        distances (no image is read again); returns self."""
        state = self._state()
        region = None if region is None else check_region(region, self.config.crop)
        if state.calibration_distances is None:
            raise InvalidInputError("region", "this model file predates regions (it has no "
                                              "calibration distances): refit it with the "
                                              "region")
        scores, image_threshold, pixel_threshold = self._thresholds(
            state.calibration_distances, state.grid, region)
        self.region = region
        self.state_ = replace(state, region=region, calibration_scores=scores,
                              image_threshold=image_threshold, pixel_threshold=pixel_threshold)
        return self

    def set_defect_rule(self, min_defect_area: int | None = None,
                        verdict_rule: str | None = None) -> PadimModel:
        """Change the minimum defect area (pixels of the crop) and/or the verdict rule;
        nothing is recomputed. Returns self."""
        changes = {k: v for k, v in (("min_defect_area", min_defect_area),
                                     ("verdict_rule", verdict_rule)) if v is not None}
        self.config = replace(self.config, **changes)
        return self

    def _fit_notes(self, n_used: int, cal_scores: np.ndarray, held_out: bool) -> list[str]:
        """What fit warns about, in words."""
        cfg = self.config
        notes = []
        if n_used < cfg.d:
            notes.append(f"only {n_used} training images for d={cfg.d}: the covariance rests "
                         f"on the eps={cfg.eps} regularization; more normal images give better "
                         "maps")
        if not held_out:
            notes.append("thresholds were set on training images (too few to hold any out) "
                         "and are likely too low")
        if (cal_scores.size > 1 and np.ptp(cal_scores) == 0) or cal_scores.max() < MIN_THRESHOLD:
            notes.append("calibration images all score the same (identical images?): any "
                         "difference from them will be flagged")
        return notes

    # ------------------------------------------------------------------ predict
    def iter_predict(self, images: Iterable[Any], progress: Progress | None = None,
                     names: Sequence[str] | None = None) -> Iterator[PredictResult]:
        """Predict batch by batch, so huge sets never sit in memory at once."""
        state = self._state()
        images = _checked_inputs(images, names)
        yield from self._iter_predict(state.gaussian, state.grid, self._embedder(state), images,
                                      names, progress, state.image_threshold,
                                      state.pixel_threshold, state.region)

    def predict(self, images: Iterable[Any], progress: Progress | None = None,
                names: Sequence[str] | None = None) -> PredictResult:
        """Anomaly maps (N, crop, crop) and image scores (``scoring.image_scores``)."""
        state = self._state()
        return PredictResult.concat(list(self.iter_predict(images, progress, names)),
                                    state.image_threshold, state.pixel_threshold,
                                    self.config.crop)

    def _iter_predict(self, gaussian: PatchGaussian, grid: tuple[int, int], embedder: Embedder,
                      images: list[Any], names: Sequence[str] | None,
                      progress: Progress | None = None, image_threshold: float = nan,
                      pixel_threshold: float = nan, region: np.ndarray | None = None,
                      ) -> Iterator[PredictResult]:
        """Score ``images`` under ``gaussian`` batch by batch (the fitted state's, or fit's
        own before there is one).

        On a GPU the next batch is queued on the device before the current one's maps are
        fetched, so the device keeps working while the host copies and wraps results
        (``results.predict_lookahead``); elsewhere each batch is finished before the next is read.
        """
        gaussian = self._on_scoring_device(gaussian)
        fetch = ResultFetcher(self.device)
        pending: deque[tuple[DecodedBatch, QueuedResult | None]] = deque()
        done = 0

        def finished(batch: DecodedBatch, queued: QueuedResult | None) -> PredictResult:
            nonlocal done
            if queued is None:
                maps_np = np.zeros((0, self.config.crop, self.config.crop), np.float32)
                scores_np = np.zeros(0)
            else:
                maps_np, scores_np = fetch(queued)
            done = batch.indices[-1] + 1 if batch.indices else done + len(batch.skipped)
            if progress:
                progress(min(done, len(images)), len(images), "predict")
            return PredictResult(batch.names, scores_np, maps_np, batch.crops, image_threshold,
                                 pixel_threshold, batch.skipped, region,
                                 self.config.min_defect_area, self.config.verdict_rule)

        for batch in self._decoded_batches(images, names):
            queued = None
            if len(batch.crops):
                emb = self._embed(batch.pixels, embedder)
                with torch.inference_mode():
                    maps = self._render(mahalanobis(emb, gaussian), grid)
                    queued = fetch.queue(maps, masked_scores(maps, region,
                                                             self.config.score_top_percent))
            pending.append((batch, queued))
            if len(pending) > predict_lookahead(self.device):
                yield finished(*pending.popleft())
        while pending:
            yield finished(*pending.popleft())

    def _on_scoring_device(self, gaussian: PatchGaussian) -> PatchGaussian:
        """``gaussian`` where scoring runs, kept in a private cache so that predict leaves
        the fitted state as it is (a model loaded from a file or fitted on another device
        is copied once, not at every call)."""
        device = self.extractor.device
        cached = self._placement
        if cached is None or cached[0] is not gaussian or cached[1] != device:
            cached = self._placement = (gaussian, device, _placed(gaussian, device))
        return cached[2]

    # ------------------------------------------------------------------ fitted attributes
    grid_ = _fitted("grid", "(H, W) patch grid.")
    channel_index_ = _fitted("channel_index", "(d,) channels kept, or None.")
    projection_ = _fitted("projection", "(C, d) channel projection, or None.")

    @property
    def mean_(self) -> Array:
        """(P, d) mean embedding per patch."""
        return self._state().gaussian.mean

    @property
    def whitener_(self) -> Array:
        """(P, d, d) upper-triangular whitener per patch: M Mᵀ = (Σ + eps·I)⁻¹."""
        return self._state().gaussian.whitener

    image_threshold_ = _fitted("image_threshold", "Image score at or above which a part is NG.")
    pixel_threshold_ = _fitted("pixel_threshold", "Map value at or above which a pixel is "
                                                  "drawn as defect.")
    calibration_scores_ = _fitted("calibration_scores",
                                  "Leave-one-out scores of the calibration images.")
    n_train_images_ = _fitted("n_train_images", "Images the Gaussians were fitted on.")
    n_calibration_images_ = _fitted("n_calibration_images", "Images the thresholds came from.")
    fit_seconds_ = _fitted("fit_seconds", "Wall time of fit, decoding included.")
    device_ = _fitted("device", "Where fit ran, in words.")
    weights_origin_ = _fitted("weights_origin", "Where the backbone weights came from.")
    skipped_ = _fitted("skipped", "(name, reason) of every input fit could not read.")
    warnings_ = _fitted("warnings", "What fit warned about, in words.")
    region_ = _fitted("region", "(crop, crop) bool inspected pixels, or None: the whole crop.")
    mean_image_ = _fitted("mean_image", "(crop, crop, 3) uint8 mean training crop, or None "
                                        "(files from before regions, a cluster fit).")
    train_sha256_ = _fitted("train_sha256", "SHA-256 (hex) of the image files fit learned, "
                                            "in input order (arrays have none; empty in "
                                            "files from before this record).")

    @property
    def is_fitted(self) -> bool:
        return self.state_ is not None

    def card(self) -> dict[str, Any]:
        """A JSON-safe summary for model cards, CLIs and reports."""
        s = self._state()
        cal = s.calibration_scores
        return {
            "backbone": self.config.backbone, "d": self.config.d,
            "reduction": self.config.reduction, "image_size": self.config.image_size,
            "crop": self.config.crop, "resize": self.config.resize,
            "upsample": self.config.upsample, "grid": list(s.grid),
            "eps": self.config.eps,
            "sigma": self.config.sigma, "score_top_percent": self.config.score_top_percent,
            "n_train_images": s.n_train_images, "n_calibration_images": s.n_calibration_images,
            "calibrated_on": s.calibrated_on, "fit_seconds": round(s.fit_seconds, 3),
            "device": s.device, "weights_origin": s.weights_origin,
            "image_threshold": s.image_threshold, "pixel_threshold": s.pixel_threshold,
            "image_fpr": self.config.image_fpr, "pixel_fpr": self.config.pixel_fpr,
            "calibration_score_min": float(cal.min()) if cal.size else None,
            "calibration_score_median": float(np.median(cal)) if cal.size else None,
            "calibration_score_max": float(cal.max()) if cal.size else None,
            "created": s.created, "skipped": [list(x) for x in s.skipped],
            "warnings": list(s.warnings), "version": __version__,
            "updatable": s.update_data is not None,
            "update_data_mb": round(s.update_data.nbytes / MB, 1) if s.update_data else 0.0,
            "updates": [dict(u) for u in s.updates],
            "region": region_words(s.region),
            "min_defect_area": self.config.min_defect_area,
            "verdict_rule": self.config.verdict_rule,
        }

    # ------------------------------------------------------------------ files
    def _tensors_and_meta(self, updatable: bool = True,
                          ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        s = self._state()
        g = s.gaussian
        mean = g.mean if isinstance(g.mean, np.ndarray) else g.mean.cpu().numpy()
        whit = g.whitener if isinstance(g.whitener, np.ndarray) else g.whitener.cpu().numpy()
        tensors = {"mean": np.ascontiguousarray(mean, np.float32),
                   "whitener_triu": model_files.pack_upper(whit).astype(np.float32, copy=False),
                   "calibration_scores": np.asarray(s.calibration_scores, np.float64)}
        if s.region is not None:
            tensors["region"] = s.region.astype(np.uint8)
        if s.mean_image is not None:
            tensors["mean_image"] = s.mean_image
        if s.calibration_distances is not None:
            tensors["calibration_distances"] = np.asarray(s.calibration_distances, np.float32)
        if s.channel_index is not None:
            tensors["channel_index"] = s.channel_index.astype(np.int64)
        else:
            tensors["projection"] = s.projection.astype(np.float32)
        spec = SPECS[self.config.backbone]
        cfg = asdict(self.config)
        meta = {**{k: v for k, v in self.card().items() if k not in {"grid"}},
                "config": cfg, "grid": list(s.grid), "channels": list(spec.channels),
                "layers": list(spec.layers), "normalization": {"mean": list(spec.mean),
                                                                "std": list(spec.std)},
                "warnings": list(s.warnings), "has_region": s.region is not None}
        if updatable and s.update_data is not None:
            tensors.update(model_files.update_tensors(s.update_data))
            meta["sums_n"] = s.update_data.n
            meta["train_sha256"] = list(s.train_sha256)
        else:
            meta.update(updatable=False, update_data_mb=0.0)
        return tensors, meta

    def save(self, path: str | os.PathLike, updatable: bool = True) -> None:
        """Write the fitted model as .safetensors (atomic).

        ``updatable=False`` leaves out what ``partial_fit`` needs (the float64 sums and the
        calibration embeddings): a compact file, several times smaller, that can only be
        refitted (``card()["update_data_mb"]`` is what it saves).
        """
        model_files.write(path, *self._tensors_and_meta(updatable))

    def to_bytes(self, updatable: bool = True) -> bytes:
        """The model file as bytes (for downloads); ``updatable`` as in ``save``."""
        return model_files.encode(*self._tensors_and_meta(updatable))

    def stream_file(self, write: Callable[[memoryview], object], updatable: bool = True,
                    ) -> int:
        """The bytes of ``to_bytes`` handed to ``write`` piece by piece, without building
        them in memory (the model library writes and hashes them this way); returns the
        file size."""
        return model_files.stream(*self._tensors_and_meta(updatable), write)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto",
             extractor: FeatureExtractor | None = None) -> PadimModel:
        """Read a model file written by ``save``; validates before using anything.

        A weights path recorded in the file is used again (a local file the user chose).
        """
        return cls._from_parts(*model_files.read(path), device, extractor, str(path),
                               trust_paths=True)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "model.safetensors", device: str = "auto",
                   extractor: FeatureExtractor | None = None) -> PadimModel:
        """Like ``load`` for a file held in memory (an upload); errors name ``name``.

        An uploaded file never chooses a path on this machine: a recorded weights path is
        replaced by the backbone's default location.
        """
        return cls._from_parts(*model_files.decode(data, name), device, extractor, name,
                               trust_paths=False)

    @classmethod
    def _from_parts(cls, tensors: dict[str, np.ndarray], meta: dict[str, Any], device: str,
                    extractor: FeatureExtractor | None, name: str, trust_paths: bool,
                    ) -> PadimModel:
        known = {f.name for f in fields(PadimConfig)}
        try:
            cfg = {k: v for k, v in meta["config"].items() if k in known}
            cfg = {**FIELDS_ADDED_LATER, **cfg}   # an older file: its own behaviour
            cfg["device"] = device
            if not trust_paths and cfg.get("weights") not in (None, RANDOM_WEIGHTS):
                cfg["weights"] = None
            model = cls(**cfg)
            state = FittedState(
                gaussian=PatchGaussian(tensors["mean"], model_files.unpack_upper(
                    tensors["whitener_triu"], model.config.d)),
                channel_index=tensors.get("channel_index"), projection=tensors.get("projection"),
                grid=(int(meta["grid"][0]), int(meta["grid"][1])),
                image_threshold=float(meta["image_threshold"]),
                pixel_threshold=float(meta["pixel_threshold"]),
                calibration_scores=tensors["calibration_scores"],
                calibrated_on=str(meta.get("calibrated_on", "")),
                n_train_images=int(meta.get("n_train_images", 0)),
                n_calibration_images=int(meta.get("n_calibration_images", 0)),
                fit_seconds=float(meta.get("fit_seconds", 0.0)),
                device=str(meta.get("device", "")),
                weights_origin=str(meta.get("weights_origin", "")),
                created=str(meta.get("created", "")),
                skipped=[(str(a), str(b)) for a, b in meta.get("skipped", [])],
                warnings=[str(w) for w in meta.get("warnings", [])],
                update_data=model_files.update_data(tensors, meta),
                updates=[dict(u) for u in meta.get("updates", [])],
                region=tensors["region"].astype(bool) if "region" in tensors else None,
                calibration_distances=tensors.get("calibration_distances"),
                mean_image=tensors.get("mean_image"),
                train_sha256=model_files.train_digests(meta, name))
        except ModelFileError:
            raise
        except (InvalidInputError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise ModelFileError(name, f"invalid model metadata ({err})") from None
        if extractor is not None and extractor.spec.name != model.config.backbone:
            raise ModelFileError(name, f"is a {model.config.backbone} model, but the selected "
                                       f"backbone is {extractor.spec.name}")
        model._extractor = extractor
        model.region = state.region
        model.state_ = state     # moved to the backbone's device at the first predict
        return model
