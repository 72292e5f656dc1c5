"""What the app's buttons do: fit into a slot, load a model file, inspect, predict, evaluate,
learn from the operator (accept as normal, decisions, evaluate on the labelled history).

Each action takes plain arguments (a slot key, an :class:`~inspector_ui.uploads.ImageBatch`,
settings, an optional ``progress(done, total, stage)`` callback), touches session state only
through :mod:`inspector_ui.state`, and returns what it made or raises a
:class:`~padim_core.errors.PadimError` whose text is the message for the user. Nothing here
draws: the widgets own the buttons, progress bars and messages and call these, and an AppTest
script can call them directly. When an action fails, the session keeps what it had.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from padim_core import PadimModel
from padim_core.config import DEFAULTS
from padim_core.errors import InvalidInputError, PadimError, WeightsUnavailableError
from padim_core.images import header_size
from padim_core.store import fitted_fingerprint

from . import access, resources, state, uploads, views
from .uploads import ImageBatch

if TYPE_CHECKING:
    from padim_core.datasets import MVTecCategory
    from padim_core.feedback import Accepted
    from padim_core.store import Inspection, ModelVersion, Store

ProgressFn = Callable[[int, int, str], None]
"""The engine's progress callback: ``progress(done, total, stage)``."""

Problems = list[tuple[str, str]]


class ActionError(PadimError):
    """An action could not be done; ``str(err)`` says why, ``problems`` lists the files it
    could not use (``(name, problem)``), for the page to show beside the message."""

    def __init__(self, message: str, problems: Problems | None = None) -> None:
        super().__init__(message)
        self.problems: Problems = list(problems or [])


@dataclass(frozen=True)
class FitSettings:
    """What the user picked on a training panel."""

    backbone: str
    d: int
    image_size: int
    crop: int
    resize: str | None = None     # None: PadimConfig's choice (a smaller crop: "stretch")
    sigma: float = DEFAULTS.sigma
    score_top_percent: float = DEFAULTS.score_top_percent
    upsample: str = DEFAULTS.upsample

    def config_fields(self) -> dict[str, Any]:
        """These settings as PadimConfig / PadimModel keyword arguments (same names)."""
        return asdict(self)


# --------------------------------------------------------------------------- demo set


DemoPart = Literal["train", "test"]


def load_demo_category() -> MVTecCategory:
    """The demo set as a labelled MVTec category; the one message when it is unavailable."""
    try:
        return uploads.demo_category()
    except PadimError as err:
        raise ActionError(f"Demo set unavailable — {err}") from err


def load_demo(part: DemoPart) -> ImageBatch:
    """The demo set's good training images (``"train"``) or its labelled test images
    (``"test"``, named ``<defect type>/<file>``), as paths: nothing is copied."""
    category = load_demo_category()
    if part == "train":
        return uploads.train_batch(category, "the demo set")
    return uploads.labelled_batch(category, "demo test set")


# --------------------------------------------------------------------------- models


def share_extractor(model: PadimModel) -> PadimModel:
    """Give a loaded model the process-wide cached backbone instead of loading its own.

    The file tells which backbone it wants only once it is read, so the cached one is
    attached afterwards; random-weight models keep their own (seeded) backbone.
    """
    cfg = model.config
    if cfg.weights != "random":
        model.use_extractor(resources.get_extractor(cfg.backbone, cfg.weights))
    return model


def fit_into_slot(slot_key: str, batch: ImageBatch, settings: FitSettings,
                  progress: ProgressFn | None = None, client: Any = None) -> state.ModelSlot:
    """Fit a new model on ``batch``; it replaces slot ``slot_key`` only when the fit succeeds.

    The new slot's ``skipped`` lists the batch's problems and the files the engine could not
    read. ``client``: a Dask client whose workers do the image work (docs/cluster.md). Needs
    the engineer role (``access.require_role``).
    """
    access.require_role("engineer", "Train a model")
    if not batch:
        raise ActionError("Nothing to train on: no usable image in the upload.")
    try:
        model = PadimModel(**settings.config_fields(),
                           extractor=resources.get_extractor(settings.backbone))
        if client is None:
            model.fit(batch.data, progress=progress, names=batch.names)
        else:
            from padim_core import distributed

            distributed.fit(model, batch.data, client, progress=progress, names=batch.names)
    except PadimError as err:
        raise ActionError(f"Training failed — {err}") from err
    where = "" if client is None else " on the Dask cluster"
    slot = state.set_slot(slot_key, model, skipped=[*batch.problems, *model.skipped_],
                          origin=f"trained on {int(model.n_train_images_)} images from "
                                 f"{batch.label}{where}")
    slot.fingerprint = fitted_fingerprint(model.train_sha256_)
    return slot


def load_model_bytes(slot_key: str, name: str, data: bytes) -> state.ModelSlot:
    """Load a model file (the bytes of upload ``name``) into slot ``slot_key``."""
    if not data:
        raise InvalidInputError(name, "the file is empty")
    return _load_into_slot(slot_key, name, lambda: PadimModel.from_bytes(data, name=name),
                           origin=f"loaded from {name}")


def load_library_version(slot_key: str, store: Store, version: ModelVersion) -> state.ModelSlot:
    """Load a library version into slot ``slot_key`` from its file on disk: the upload limit
    is for uploads (an updatable d = 192 model is about 700 MB), the file cap still holds."""
    slot = _load_into_slot(slot_key, version.ref, lambda: store.library.load(version),
                           origin=f"library: {version.ref}")
    slot.fingerprint = version.training_fingerprint
    return slot


def _load_into_slot(slot_key: str, name: str, load: Callable[[], PadimModel],
                    origin: str) -> state.ModelSlot:
    """``load()`` a model, give it the server's shared backbone and put it in the slot; a
    backbone this server lacks is a message that names ``name``."""
    model = load()
    try:
        share_extractor(model)
    except WeightsUnavailableError as err:
        cfg = model.config
        which = f"the weights file {Path(cfg.weights).name}" if cfg.weights else \
            f"the pretrained {cfg.backbone} weights"
        raise InvalidInputError(
            name, f"this model needs the {cfg.backbone} backbone, and {which} are not "
                  "installed on this server. Ask whoever runs the server to add them, or "
                  "train a model here with an available backbone.") from err
    except PadimError as err:
        raise InvalidInputError(name, str(err)) from err
    return state.set_slot(slot_key, model, origin=origin)


def _require_slot(slot_key: str) -> state.ModelSlot:
    slot = state.get_slot(slot_key)
    if slot is None:
        raise ActionError(f"{state.SLOT_NAMES[slot_key]} is empty: train or load a model "
                          "first.")
    return slot


# --------------------------------------------------------------------------- scoring


def run_inspection(slot_key: str, batch: ImageBatch,
                   progress: ProgressFn | None = None) -> state.Inspection:
    """Score ``batch`` with the model in ``slot_key`` and keep the results in the session.

    When no image of the batch can be scored, the previous results stay.
    """
    slot = _require_slot(slot_key)
    if not batch:
        raise ActionError("Nothing to inspect: no usable image in the upload. "
                          "Previous results kept.")
    start = time.perf_counter()
    try:
        result = slot.model.predict(batch.data, progress=progress, names=batch.names)
    except PadimError as err:
        raise ActionError(f"{err} — previous results kept.") from err
    if len(result.names) == 0:
        raise ActionError("None of the images could be read. Previous results kept.",
                          problems=list(result.skipped))
    sources = batch.sources()
    inspection = state.Inspection(
        model_token=slot.token, result=result,
        sources={name: sources[name] for name in result.names if name in sources},
        label=batch.label, seconds=time.perf_counter() - start,
        problems=[*batch.problems, *result.skipped],
        scale=views.shared_scale(result.maps))
    inspection.notes = tiny_images(inspection.sources, slot.model.config.crop)
    state.set_inspection(inspection)
    return inspection


def tiny_images(sources: dict[str, state.ImageData], crop: int) -> Problems:
    """A note for each image less than half the model's input on its longer side: it is
    enlarged to score it, so its score (often NG) says little about the part."""
    notes: Problems = []
    for name, data in sources.items():
        size = header_size(data)
        if size is not None and max(size) * 2 < crop:
            notes.append((name, f"{size[0]}×{size[1]} px, enlarged to the model's {crop} px "
                                "input: its score says little about the part"))
    return notes


def predict_one(slot_key: str, name: str, data: state.ImageData) -> state.Prediction:
    """Score one image under slot ``slot_key``, re-using an earlier result when there is one."""
    slot = _require_slot(slot_key)
    hit = state.cached_prediction(slot.token, name)
    if hit is not None:
        return hit
    res = slot.model.predict([data], names=[name])
    if len(res.names) == 0:
        source, problem = res.skipped[0] if len(res.skipped) else (name, "could not be read")
        raise InvalidInputError(source, problem)
    prediction = state.Prediction(name, float(res.scores[0]), res.maps[0], res.images[0])
    state.remember_prediction(slot.token, prediction)
    return prediction


# --------------------------------------------------------------------------- evaluation


def run_evaluation(slot_key: str, category: MVTecCategory, label: str,
                   progress: ProgressFn | None = None,
                   scratch: Path | None = None) -> state.Evaluation:
    """Evaluate slot ``slot_key`` on a labelled MVTec category and keep the report.

    ``scratch``: the temporary folder the category was unpacked into; its path is replaced
    by ``label`` (the archive's name) in error messages.
    """
    slot = state.get_slot(slot_key)
    if slot is None:
        raise ActionError("Train or load a model first (or tick 'train on its train/good "
                          "images').")
    from padim_core.evaluation import evaluate_model

    start = time.perf_counter()
    try:
        report = evaluate_model(slot.model, category.test, progress=progress)
    except PadimError as err:
        message = str(err).replace(str(scratch), label) if scratch is not None else str(err)
        raise ActionError(f"Evaluation failed — {message}") from err
    evaluation = state.Evaluation(
        model_token=slot.token, report=report, label=label,
        seconds=time.perf_counter() - start, n_images=len(category.test),
        labels=np.asarray(report.image_labels, dtype=bool),
        scores=np.asarray(report.image_scores, dtype=float))
    state.set_evaluation(evaluation)
    return evaluation


def open_labelled_zip(name: str, data: bytes, folder: Path) -> tuple[MVTecCategory, Problems]:
    """Unpack an uploaded MVTec-style archive into ``folder`` (a scratch folder the caller
    removes after evaluating) and read it as a category; also returns the skipped members.
    Errors name the archive, never the scratch folder."""
    from padim_core.archives import extract_zip
    from padim_core.datasets import MVTecCategory, find_dataset_root

    try:
        extracted = extract_zip(data, folder, name=name)
    except PadimError as err:
        raise ActionError(str(err).replace(str(folder), name)) from err
    skipped = [(f"{name}: {member}", reason) for member, reason in extracted.skipped]
    try:
        category = MVTecCategory.from_folder(find_dataset_root(folder))
    except PadimError as err:
        raise ActionError(str(err).replace(str(folder), name), problems=skipped) from err
    return category, skipped


# --------------------------------------------------------------------------- operator feedback

#: Decisions that make a history row a defect (True) or a normal part (False) when the
#: operator's history is used as a labelled set.
DEFECT_LABELS = {"confirmed_defect": True, "missed_defect": True, "false_alarm": False}


@dataclass(frozen=True)
class Learned:
    """What "Accept as normal" did: the engine's figures, the new library version, the one
    it was made from, and the history rows whose decision could not be saved."""

    accepted: Accepted
    version: ModelVersion
    previous_ref: str
    undecided: Problems


def accept_as_normal(store: Store, slot_key: str, names: list[str], data: list[state.ImageData],
                     history_ids: list[int | None], operator: str = "",
                     before_scores: list[float] | None = None,
                     progress: ProgressFn | None = None) -> Learned:
    """The operator says these images are good parts (false alarms): add them to the model
    of ``slot_key`` exactly (``feedback.accept_as_normal``), save the result as the next
    version of its library model, make that the slot's model, and record "false alarm" on
    their history rows. The one place where accepting is done (and may be refused).

    ``before_scores``: the images' scores under the slot's model, when the page has them.
    On any failure before the save, the slot, the library and the history are unchanged.
    """
    from padim_core.feedback import accept_as_normal as learn

    access.require_role("engineer", "Accept as normal")
    operator = access.actor(operator)
    slot = _require_slot(slot_key)
    if slot.library_ref is None:
        raise ActionError("Accept as normal saves a new version in the model library: open "
                          "a library model (or train one on the Train page) first.")
    if not data:
        raise ActionError("Nothing to accept: no image selected.")
    name, version = slot.library_ref
    previous = f"{name}@{version}"
    try:
        accepted = learn(slot.model, data, names=names, before_scores=before_scores,
                         progress=progress)
    except PadimError as err:
        raise ActionError(f"Not learned — {err}. {previous} is unchanged.") from err
    try:
        saved = store.library.save(
            accepted.model, name,
            note=f"{previous} + {len(accepted.names)} image(s) accepted as normal"
                 + (f" by {operator}" if operator else "") + ": "
                 + ", ".join(accepted.names[:5]) + (" …" if len(accepted.names) > 5 else ""),
            created_by=operator, source="update")
    except PadimError as err:
        raise ActionError(f"Learned, but not saved to the library — {err}. {previous} stays "
                          "in use.") from err
    new_slot = state.set_slot(slot_key, accepted.model, origin=f"library: {saved.ref}")
    new_slot.link(saved)
    kept = set(accepted.names)
    undecided: Problems = []
    for image_name, row_id in zip(names, history_ids, strict=True):
        if row_id is None or image_name not in kept:
            continue
        try:
            store.history.decide(row_id, "false_alarm", "accepted as normal into "
                                 f"{saved.ref}", operator)
        except PadimError as err:
            undecided.append((image_name, str(err)))
    return Learned(accepted, saved, previous, undecided)


def record_decision(store: Store, inspection_id: int, decision: str, operator: str = "",
                    ) -> Inspection:
    """Record the operator's decision on a history row, keeping its comment."""
    access.require_role("operator", "Record a decision")
    try:
        row = store.history.get(inspection_id)
        return store.history.decide(inspection_id, decision, row.comment,
                                    access.actor(operator))
    except PadimError as err:
        raise ActionError(f"Decision not saved — {err}") from err


def rescore_inspection(slot_key: str, progress: ProgressFn | None = None,
                       ) -> state.Inspection | None:
    """Score the session's inspected batch again with the slot's (new) model; its history
    rows stay attached (decisions on them are about the images). None when there is no
    batch or its images were not kept."""
    old = state.get_inspection()
    if old is None or not old.sources:
        return None
    batch = uploads.ImageBatch.from_sources(old.sources, old.label)
    new = run_inspection(slot_key, batch, progress=progress)
    new.history_ids = dict(old.history_ids)
    new.history_batch = old.history_batch        # a reload redraws the recorded batch
    return new


@dataclass(frozen=True)
class HistoryEvaluation:
    """A model version on the operator's labelled history: the rows used and the figures
    of ``feedback.evaluate_history``."""

    ref: str
    rows: list[Inspection]
    figures: dict[str, float]


def evaluate_on_history(store: Store, name: str, version: int | None) -> HistoryEvaluation:
    """Image AUROC, best F1 and the catch-every-defect threshold of ``name@version`` (all
    versions when None) on the history rows that have a decision: confirmed and missed
    defects against false alarms (normal parts). Scores are the ones recorded."""
    from padim_core.feedback import evaluate_history
    from padim_core.store import Filters

    ref = name if version is None else f"{name}@{version}"
    rows = [r for r in store.history.find(Filters(model_name=name, model_version=version))
            if r.decision in DEFECT_LABELS]
    try:
        figures = evaluate_history([DEFECT_LABELS[r.decision or ""] for r in rows],
                                   [r.score for r in rows])
    except PadimError as err:
        raise ActionError(f"{ref}: {len(rows)} image(s) with a decision; evaluating "
                          f"{err.problem if isinstance(err, InvalidInputError) else err}. Mark "
                          "images on Inspect or History first.") from err
    return HistoryEvaluation(ref, rows, figures)
