"""Learning from the operator: the actions behind the app's feedback buttons, as pure
functions of a model and images (no Streamlit, no storage).

- ``accept_as_normal``: a false alarm (or any good part) becomes training data. Returns a
  *new* model (the given one is left as it is, so the app can keep it as the previous
  version), the images' scores before and after, and the thresholds before and after. The
  model keeps the SHA-256 of each image file it learned (fit's and each update's), so an
  image it has already learned is refused rather than counted twice (``learned_sha256``).
- ``evaluate_history``: the operator's labels (confirmed and missed defects vs accepted
  normals) as a labelled set: image AUROC, best F1, and the threshold that would have
  caught every defect with the fewest false alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .images import file_sha256, input_name
from .model import PadimModel, Progress
from .updates import LEARNED_BEFORE, split_learned


@dataclass(frozen=True)
class Accepted:
    """What ``accept_as_normal`` did: the new model and the figures to show."""

    model: PadimModel
    names: list[str]
    before_scores: np.ndarray
    after_scores: np.ndarray
    image_threshold_before: float
    image_threshold: float
    pixel_threshold_before: float
    pixel_threshold: float
    skipped: list[tuple[str, str]] = field(default_factory=list)


def copy_model(model: PadimModel) -> PadimModel:
    """A model with the same configuration, backbone and fitted state. Cheap: the fitted
    state is shared, which is safe because ``fit`` and ``partial_fit`` replace it rather
    than change it."""
    twin = PadimModel(**asdict(model.config))
    if model._extractor is not None:         # share a loaded backbone, never load one
        twin.use_extractor(model._extractor)
    twin.state_ = model.state_
    return twin


def accept_as_normal(model: PadimModel, images: Sequence[Any],
                     names: Sequence[str] | None = None,
                     before_scores: Sequence[float] | None = None,
                     progress: Progress | None = None) -> Accepted:
    """Add ``images`` (the parts the operator says are good) to a copy of ``model``.

    ``before_scores``: the images' current scores if the caller has them (saves a
    backbone pass). Raises what ``partial_fit`` raises (a model without update data:
    refit); with no readable image it raises ``InvalidInputError`` and nothing changes.
    """
    state = model._state()
    all_names = _names(images, names)
    fresh, learned = split_learned([file_sha256(im) for im in images],
                                   state.learned_sha256())
    again = [(all_names[i], LEARNED_BEFORE) for i in learned]
    if not fresh:
        name, problem = again[0]
        raise InvalidInputError(name, problem)
    images, all_names = [images[i] for i in fresh], [all_names[i] for i in fresh]
    before_given = (None if before_scores is None
                    else np.asarray(before_scores, np.float64)[fresh])
    new = copy_model(model)
    new.partial_fit(images, progress=progress, names=all_names)
    if new.state_ is state:
        raise InvalidInputError("images", "none of the images could be read: the model is "
                                          "unchanged")
    skipped = {name for name, _ in new.skipped_}
    kept = [i for i, n in enumerate(all_names) if n not in skipped]
    after = new.predict(images, names=all_names)
    before = (before_given[kept] if before_given is not None
              else model.predict([images[i] for i in kept], names=after.names).scores)
    return Accepted(new, after.names, before, after.scores, state.image_threshold,
                    new.image_threshold_, state.pixel_threshold, new.pixel_threshold_,
                    [*new.skipped_, *again])


def learned_sha256(model: PadimModel) -> set[str]:
    """SHA-256 digests of the image files ``model`` learned: by fit, and by updates
    (``accept_as_normal``, ``partial_fit``, ``padim update``); both travel with the model
    file and the library."""
    return set() if model.state_ is None else model.state_.learned_sha256()


def _names(images: Sequence[Any], names: Sequence[str] | None) -> list[str]:
    return list(names) if names is not None else [input_name(im, i)
                                                  for i, im in enumerate(images)]


def evaluate_history(defect: Sequence[bool], scores: Sequence[float]) -> dict[str, float]:
    """Figures of the operator's labelled history: ``defect`` True for confirmed and missed
    defects, False for accepted normals; ``scores`` the model's scores of those images.

    Returns image AUROC, the best F1 and its threshold, and ``catch_all_threshold``: the
    highest threshold (NG at score ≥ threshold) that flags every defect, with the normals
    it flags too (``catch_all_false_alarms``).
    """
    y = np.asarray(defect, bool)
    s = np.asarray(scores, np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise InvalidInputError("history", "needs one score per labelled image")
    if not y.any() or y.all():
        raise InvalidInputError("history", "needs both defects and accepted normals")
    from .metrics import f1_optimal_threshold, image_auroc  # scikit-learn: 0.8 s to import

    f1_threshold, f1 = f1_optimal_threshold(y, s)
    catch_all = float(s[y].min())
    return {"image_auroc": image_auroc(y, s), "f1": f1, "f1_threshold": f1_threshold,
            "catch_all_threshold": catch_all,
            "catch_all_false_alarms": int((s[~y] >= catch_all).sum()),
            "n_defects": int(y.sum()), "n_normals": int((~y).sum())}
