"""Exceptions raised by padim_core.

Every error a user can cause carries the offending file (or input name) and a one-line
problem, so the CLI can print ``str(err)`` and the app can show it in ``st.error``.
"""

from __future__ import annotations


class PadimError(Exception):
    """Base class for every error padim_core raises on purpose."""


class InvalidInputError(PadimError, ValueError):
    """A user-supplied input (image, archive, folder, option) cannot be used."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ModelFileError(InvalidInputError):
    """A model file is missing, damaged, of another format version or otherwise unusable."""


class WeightsUnavailableError(PadimError, FileNotFoundError):
    """Pretrained backbone weights are not on this machine (never replaced by random ones)."""


class ClusterError(PadimError, RuntimeError):
    """A Dask cluster cannot finish the work (no workers left, the scheduler gone)."""


class NotFittedError(PadimError, RuntimeError, AttributeError):
    """The model was used before ``fit`` or ``load``. An AttributeError too, as
    scikit-learn's: ``hasattr(model, "image_threshold_")`` is False before fitting."""
