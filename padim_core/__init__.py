"""PaDiM Inspector engine: learn what normal parts look like, map where new parts deviate.

    from padim_core import PadimModel
    model = PadimModel(backbone="efficientnet_lite0", d=100).fit(normal_images)
    result = model.predict(test_images)   # result.scores, result.maps
    model.save("part.safetensors")
"""

from .config import PadimConfig
from .errors import (
    InvalidInputError,
    ModelFileError,
    NotFittedError,
    PadimError,
    WeightsUnavailableError,
)
from .model import PadimModel, PredictResult, __version__

__all__ = [
    "InvalidInputError",
    "ModelFileError",
    "NotFittedError",
    "PadimConfig",
    "PadimError",
    "PadimModel",
    "PredictResult",
    "WeightsUnavailableError",
    "__version__",
]
