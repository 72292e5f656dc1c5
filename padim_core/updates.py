"""What a fitted model keeps so that normal images can be added later, exactly.

PaDiM's per-patch statistics n, Σx and Σxxᵀ are sums: the sums of the old images plus those
of the new ones are the sums of the union, so ``PadimModel.partial_fit`` gives the model that
``fit`` on the union would give, without the old images. The thresholds come from the
calibration images' leave-one-out scores, which depend on n and on the Gaussians: their
embeddings are kept too and scored again under the new Gaussians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

MB = 1 << 20


@dataclass(frozen=True)
class UpdateData:
    """The exact float64 sums of the training images and the calibration embeddings.

    n : images summed; total : Σx (P, d) float64; second : Σxxᵀ upper triangles
    (P, d(d+1)/2) float64 in ``np.triu_indices`` order; calibration : the calibration
    images' embeddings (P, H, d) float32, in the order of ``calibration_scores_``.
    Never changed in place: an update builds a new one.
    """

    n: int
    total: np.ndarray
    second: np.ndarray
    calibration: np.ndarray

    @property
    def nbytes(self) -> int:
        """Memory (and model file bytes) this data takes."""
        return self.total.nbytes + self.second.nbytes + self.calibration.nbytes


#: Why ``partial_fit`` leaves out an image: the model learned these very bytes before.
LEARNED_BEFORE = ("already learned by this model (one of its training images, added by an "
                  "earlier update, or given twice): adding it again would count it twice")


#: Why ``partial_fit`` leaves out an image whose pixels are those of a calibration image.
SAME_AS_CALIBRATION = ("the same picture as one of the model's training images (one that sets "
                       "its thresholds): adding it again would count it twice")

#: In the reason of an image ``partial_fit(max_score=...)`` left out (``scored_ng``).
NG_UNDER_MODEL = "NG under this model"


def scored_ng(score: float, max_score: float) -> str:
    """Why ``partial_fit`` left out an image that scored ``max_score`` or more."""
    return (f"scored {score:.4g}, at or above {max_score:.4g} ({NG_UNDER_MODEL}): not learned "
            "as normal")


#: Embeddings nearer a calibration image's than this share of the calibration images' spread
#: are the same picture: equal pixels in other bytes (a re-saved PNG) give about 1e-12, two
#: photos of one part about 1e-2 and more.
COPY_TOLERANCE = 1e-4


class CalibrationCopies:
    """Recognises new images that are copies of a calibration image, whatever their bytes.

    A calibration image added a second time ruins the thresholds: its leave-one-out score
    removes one copy, the other stays in the Gaussians, so its "held-out" distance drops to
    about zero (an update with the 12 calibration images re-saved took a threshold from 31.8
    to 8.5, every good part NG). The file digests catch byte-equal copies; this compares
    embeddings at a few dozen patch positions with the kept calibration embeddings.
    """

    def __init__(self, calibration: np.ndarray, patches: int = 32) -> None:
        n_patches, n_images, _ = calibration.shape
        self.index = np.unique(np.linspace(0, n_patches - 1, min(n_patches, patches)).round()
                               .astype(np.int64))
        cal = np.asarray(calibration[self.index], np.float64)             # (p, H, d)
        self.cal_t = np.ascontiguousarray(cal.transpose(0, 2, 1))         # (p, d, H)
        self.cal_sq = np.einsum("phd,phd->ph", cal, cal)                  # (p, H)
        spread = (cal.var(axis=1).sum(axis=1) if n_images > 1
                  else np.einsum("phd,phd->p", cal, cal))
        self.limit = COPY_TOLERANCE * float(spread.sum())

    def find(self, embeddings: np.ndarray | Any) -> np.ndarray:
        """(b,) bool: which of the images with patch embeddings (P, b, d) are copies."""
        x = embeddings[self.index]
        x = np.asarray(x.cpu() if hasattr(x, "cpu") else x, np.float64)    # (p, b, d)
        d2 = (np.einsum("pbd,pbd->pb", x, x)[:, :, None] + self.cal_sq[:, None, :]
              - 2 * (x @ self.cal_t))                                      # (p, b, H)
        return d2.sum(axis=0).min(axis=1) < self.limit


def update_entry(added: int, n_before: int, image_threshold: float, pixel_threshold: float,
                 skipped: list[tuple[str, str]], seconds: float,
                 added_sha256: list[str] | None = None) -> dict[str, Any]:
    """One line of the card's update log: what was added (and the SHA-256 of each added
    image file), when, the thresholds before, and how long it took (decoding included)."""
    return {"added_images": int(added), "n_train_images_before": int(n_before),
            "seconds": round(float(seconds), 3),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "image_threshold_before": float(image_threshold),
            "pixel_threshold_before": float(pixel_threshold),
            "skipped": [list(s) for s in skipped],
            "added_sha256": list(added_sha256 or [])}


def learned_sha256(updates: list[dict[str, Any]]) -> set[str]:
    """SHA-256 of every image file an update log says was added."""
    return {d for entry in updates for d in entry.get("added_sha256", [])}


def split_learned(digests: Sequence[str | None], learned: set[str],
                  ) -> tuple[list[int], list[int]]:
    """(indices to add, indices already learned) of inputs with these file digests: a file
    in ``learned`` (``FittedState.learned_sha256``), or one given earlier in the same list,
    is learned. An input without file bytes (digest None: an array) is always added."""
    known, fresh, repeats = set(learned), [], []
    for i, digest in enumerate(digests):
        if digest is not None and digest in known:
            repeats.append(i)
        else:
            fresh.append(i)
            known.add(digest)
    return fresh, repeats
