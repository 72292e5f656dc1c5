"""The model a scoring service answers with, and how it follows the workspace library.

A service holds one :class:`Served` snapshot: the fitted model, the library version it came
from and the operating thresholds. Each batch is scored with the snapshot current when the
batch starts and each answer is judged with that same snapshot, so an answer never mixes two
versions. :class:`LiveModel` swaps the snapshot when ``poll`` says the library chose another
version (a new version, a new default) or saved other thresholds: the new model is loaded and
run once on a grey crop *before* the swap, so requests never wait for a load, and a version
that cannot be loaded is logged while the old one goes on serving. A snapshot that differs
only in its ``ref`` (the model was renamed in the library: ``store_commands.LibraryPoll``
follows it by id and says so) is swapped in without a line of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .export import model_id
from .model import PadimModel, __version__

#: Seconds between two looks at the library (``padim serve --follow-seconds``).
DEFAULT_FOLLOW_SECONDS = 10.0


@dataclass(frozen=True)
class Served:
    """One model as served: the model, its library version (None for a file) and the
    operating thresholds its answers use. Build with :meth:`of`."""

    model: PadimModel
    ref: str | None
    version_id: int | None
    image_threshold: float
    pixel_threshold: float
    card: dict[str, Any] = field(repr=False, compare=False)
    #: What every answer says about the model that judged it (hashed once, not per request).
    identity: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, model: PadimModel, ref: str | None = None, version_id: int | None = None,
           thresholds: tuple[float, float] | None = None) -> Served:
        """``model`` served with ``thresholds`` (default: the model's own)."""
        image, pixel = thresholds if thresholds is not None else \
            (model.image_threshold_, model.pixel_threshold_)
        card = model.card()
        identity = {"id": model_id(card), "package_version": __version__,
                    "backbone": card["backbone"], "d": card["d"], "created": card["created"],
                    "version": ref}
        return cls(model, ref, version_id, float(image), float(pixel), card, identity)

    @property
    def thresholds(self) -> dict[str, float]:
        return {"image": self.image_threshold, "pixel": self.pixel_threshold}


def warm_up(model: PadimModel) -> None:
    """One pass on a grey crop: loads the backbone and places the Gaussians on the device,
    so the first real request is not the one that pays for it."""
    crop = int(model.card()["crop"])
    model.predict([np.full((crop, crop, 3), 128, np.uint8)])


#: Given what is served now: the snapshot to serve instead, or None to keep it.
Poll = Callable[[Served], "Served | None"]


class LiveModel:
    """The current :class:`Served` snapshot; with ``poll``, a thread that looks every
    ``every`` seconds and swaps in what it returns (after a warm-up pass)."""

    def __init__(self, first: Served, poll: Poll | None = None,
                 every: float = DEFAULT_FOLLOW_SECONDS,
                 log: Callable[[str], None] = print) -> None:
        self._current = first
        self.poll, self.every, self.log = poll, max(0.01, float(every)), log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_problem = ""

    @property
    def current(self) -> Served:
        return self._current

    def start(self) -> None:
        """Start following (no-op without ``poll``)."""
        if self.poll is not None and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="padim-follow", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        close = getattr(self.poll, "close", None)
        if close is not None:
            close()

    def check_now(self) -> bool:
        """One look at the library; True if the snapshot changed. A failure is logged once
        per distinct message and the current snapshot stays."""
        if self.poll is None:
            return False
        old = self._current
        try:
            new = self.poll(old)
            if new is None:
                self._last_problem = ""
                return False
            if new.model is not old.model:
                warm_up(new.model)
        except Exception as err:   # noqa: BLE001 - the follower must outlive any failure
            problem = f"cannot follow the library ({err}); still serving {old.ref}"
            if problem != self._last_problem:
                self.log(problem)
                self._last_problem = problem
            return False
        self._last_problem = ""
        self._current = new
        same = new.model is old.model
        if same and (new.image_threshold, new.pixel_threshold) == \
                (old.image_threshold, old.pixel_threshold):
            return True     # only the name changed: the poll said it
        was = f"image {old.image_threshold:.4g}, pixel {old.pixel_threshold:.4g}"
        if not same:    # the line's thresholds move with the version: say from what
            was = f"{old.ref}: {was}"
        self.log(f"{'thresholds of' if same else 'now serving'} {new.ref}: image "
                 f"{new.image_threshold:.4g}, pixel {new.pixel_threshold:.4g} (was {was})")
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.check_now()
