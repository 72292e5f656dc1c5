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
