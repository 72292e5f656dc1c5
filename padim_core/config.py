"""Model configuration: every setting that defines a model before it sees data, in one place.

``PadimConfig``'s field defaults are the project's defaults; the constructor of ``PadimModel``,
the CLI and the app read them from here (``DEFAULTS``) rather than repeating them.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

from .backbones import DEFAULT_BACKBONE, RANDOM_WEIGHTS, SPECS
from .embedding import REDUCTIONS, UPSAMPLE_MODES
from .errors import InvalidInputError
from .images import RESIZE_MODES
from .regions import check_min_area, check_verdict_rule


def default_crop(image_size: int) -> int:
    """The centre crop of a square resize ("stretch") when none is given: 7/8 of the image size
    (224 for 256), as in the PaDiM paper's 256 → 224 recipe. (``crop=image_size`` keeps
    defects at a part's border in view; docs/quality.md measures both.) The padded resizes of
    the default never crop."""
    return max(1, round(int(image_size) * 7 / 8))


DEFAULT_RESIZE = "pad-reflect"


@dataclass(frozen=True)
class PadimConfig:
    """Everything that defines a model before it sees data."""

    backbone: str = DEFAULT_BACKBONE
    d: int | None = None       # None: the backbone's own default (BackboneSpec.default_d)
    image_size: int = 224
    crop: int | None = None    # None: image_size, or default_crop(image_size) for "stretch"
    device: str = "auto"
    seed: int = 1024
    weights: str | None = None
    reduction: str = "random"
    eps: float = 0.01
    calibration_fraction: float = 0.2
    image_fpr: float = 0.01
    pixel_fpr: float = 0.001
    batch_size: int = 32
    sigma: float = 4.0
    updatable: bool = True
    score_top_percent: float = 0.5
    resize: str | None = None  # images.RESIZE_MODES; None: DEFAULT_RESIZE, or "stretch"
    #                            when a crop smaller than image_size is asked for
    upsample: str = "bilinear"   # embedding.UPSAMPLE_MODES: how layers 2-3 reach layer 1's grid
    min_defect_area: int = 0     # pixels of the crop; smaller defect regions are noise
    verdict_rule: str = "score"  # or "area": NG when a defect region >= min_defect_area exists

    def __post_init__(self) -> None:
        def bad(field_name: str, problem: str) -> InvalidInputError:
            return InvalidInputError(field_name, problem)

        for name in ("d", "image_size", "crop", "batch_size", "seed", "min_defect_area"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _whole(name, getattr(self, name)))
        if self.image_size < 32:
            raise bad("image_size", f"must be at least 32, got {self.image_size}")
        if self.backbone not in SPECS:
            raise bad("backbone", f"unknown backbone {self.backbone!r}; choose from "
                                  f"{', '.join(SPECS)}")
        if self.reduction not in REDUCTIONS:
            raise bad("reduction", f"must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.d is None:
            object.__setattr__(self, "d", SPECS[self.backbone].default_d)
        if self.weights is not None and str(self.weights) != RANDOM_WEIGHTS:
            # Kept absolute: the model file then finds its weights from any folder (a
            # relative path was looked up from wherever predict, serve or export ran).
            object.__setattr__(self, "weights",
                               os.path.abspath(os.path.expanduser(str(self.weights))))
        if self.upsample not in UPSAMPLE_MODES:
            raise bad("upsample", f"must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.resize is None:     # a centre crop implies the square resize it is cut from
            object.__setattr__(self, "resize", "stretch" if self.crop not in
                               (None, self.image_size) else DEFAULT_RESIZE)
        if self.resize not in RESIZE_MODES:
            raise bad("resize", f"must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.crop is None:
            object.__setattr__(self, "crop", self.image_size if self.resize != "stretch"
                               else default_crop(self.image_size))
        if self.resize != "stretch" and self.crop != self.image_size:
            raise bad("crop", f"must equal image_size={self.image_size} with resize="
                              f"{self.resize!r} (a padded image is not centre-cropped; "
                              f"resize='stretch' crops), got {self.crop}")
        total = sum(SPECS[self.backbone].channels)
        if not 1 <= self.d <= total:
            raise bad("d", f"must be between 1 and {total} for {self.backbone}, got {self.d}")
        if not 32 <= self.crop <= self.image_size:
            raise bad("crop", f"must be between 32 and image_size={self.image_size}, "
                              f"got {self.crop}")
        if self.image_size > 2048:
            raise bad("image_size", f"must be at most 2048, got {self.image_size}")
        if not 0.0 <= self.score_top_percent <= 100.0:
            raise bad("score_top_percent", f"must be between 0 and 100, got "
                                           f"{self.score_top_percent}")
        check_min_area(self.min_defect_area, self.crop)
        check_verdict_rule(self.verdict_rule)
        if not 0 <= self.sigma <= self.crop:   # wider blurs only cost memory (1e6: 800 GB)
            raise bad("sigma", f"must be between 0 and the crop ({self.crop} px), got "
                               f"{self.sigma}")
        if self.eps <= 0:
            raise bad("eps", f"must be positive, got {self.eps}")
        if self.batch_size < 1:
            raise bad("batch_size", f"must be at least 1, got {self.batch_size}")
        for name in ("calibration_fraction", "image_fpr", "pixel_fpr"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise bad(name, f"must be in [0, 1), got {value}")


def _whole(name: str, value: object) -> int:
    """``value`` as an int when it is a whole number (numpy ints and 3.0 included), else a
    clear error: ``d=2.5`` was cut to 2 without a word, ``image_size="abc"`` was int()'s."""
    if not isinstance(value, bool) and (isinstance(value, numbers.Integral) or (
            isinstance(value, float) and value.is_integer())):
        return int(value)
    raise InvalidInputError(name, f"must be a whole number, got {value!r}")


DEFAULTS = PadimConfig()

FIELDS_ADDED_LATER: dict[str, object] = {"score_top_percent": 0.0, "resize": "stretch",
                                         "min_defect_area": 0, "verdict_rule": "score",
                                         "upsample": "nearest"}
"""Fields that model files written before them lack, with the value those files were fitted
under (the old behaviour). Loading such a file uses these, never today's default, so an old
model scores exactly as it did."""

PRESETS: dict[str, dict[str, object]] = {
    "quality": {},
    "reference": {"backbone": "efficientnet_lite0", "image_size": 256, "resize": "stretch",
                  "upsample": "nearest", "score_top_percent": 0.0},
}
"""Named starting points, as PadimConfig fields that differ from ``DEFAULTS``. ``quality`` is
the default: it meets every detection goal of issue 14 on both data sets measured, at about
1.4x the reference recipe's predict time, 3.5x its update time and 3.3x its model file size
(docs/quality.md). ``reference`` is the PaDiM paper's recipe (EfficientNet-Lite0, d = 100,
256 → 224 centre crop, nearest upsampling, map maximum): the default until issue 14, and the
quick choice when Accept as normal speed or file size matter more. Options given beside a
preset win."""
