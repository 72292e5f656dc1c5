"""Scoring with an exported ONNX file under onnxruntime: no torch model, same results.

``OnnxModel`` offers the part of ``PadimModel`` that ``padim predict`` uses (``iter_predict``
yielding ``PredictResult`` batches, the thresholds, the card), so the CLI writes the same
results.csv and overlays whichever engine scored. Files of another format or format version
are refused when opened, before any image is read.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError, ModelFileError
from .images import image_list
from .loading import decode_batches
from .model import PredictResult, Progress
from .regions import load_region

#: What ``metadata_props["padim.format"]`` says; files of other formats or versions are refused.
ONNX_FORMAT = "padim-inspector-onnx"
ONNX_FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAMES = "images", ("scores", "maps")


def _read_metadata(path: Path, session: Any) -> dict[str, str]:
    meta = dict(session.get_modelmeta().custom_metadata_map)
    fmt, version = meta.get("padim.format"), meta.get("padim.format_version")
    if fmt != ONNX_FORMAT:
        raise ModelFileError(str(path), "is not an ONNX file exported by 'padim export' "
                                        "(no padim.format metadata)")
    if version != str(ONNX_FORMAT_VERSION):
        raise ModelFileError(str(path), f"was exported in ONNX format version {version}; this "
                                        f"version reads {ONNX_FORMAT_VERSION}: export the "
                                        "model again with this version")
    return meta


def _region(png_base64: str, crop: int) -> np.ndarray | None:
    """The region recorded at export time (a base64 PNG), or None for the whole image."""
    if not png_base64:
        return None
    return load_region(base64.b64decode(png_base64), crop, "padim.region_png")[0]


class OnnxModel:
    """An exported model file opened in onnxruntime (CPU unless ``providers`` says else)."""

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 batch_size: int = 32, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ModelFileError(str(self.path), "file not found")
        with open(self.path, "rb") as fh:
            head = fh.read(9)
        if head[8:9] == b"{":      # safetensors: 8-byte header length, then JSON
            raise ModelFileError(str(self.path), "is not an ONNX file (a .safetensors model? "
                                                 "use --engine torch, or 'padim export' it)")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as err:   # onnxruntime raises its own types for unreadable files
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ModelFileError(str(self.path), f"cannot be opened as ONNX ({first})") from None
        self.metadata = _read_metadata(self.path, self.session)
        try:
            self.image_size = int(self.metadata["padim.image_size"])
            self.crop = int(self.metadata["padim.crop"])
            self.resize = self.metadata.get("padim.resize", "stretch")   # older exports
            self.image_threshold_ = float(self.metadata["padim.image_threshold"])
            self.pixel_threshold_ = float(self.metadata["padim.pixel_threshold"])
            self.region_ = _region(self.metadata.get("padim.region_png", ""), self.crop)
            self.min_defect_area = int(self.metadata.get("padim.min_defect_area", 0))
            self.verdict_rule = self.metadata.get("padim.verdict_rule", "score")
        except (KeyError, ValueError) as err:
            raise ModelFileError(str(self.path), f"invalid padim metadata ({err})") from None
        self.batch_size = int(batch_size)

    def card(self) -> dict[str, Any]:
        """The model card recorded at export time."""
        return json.loads(self.metadata.get("padim.card", "{}"))

    def score_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, crop, crop, 3) uint8 → scores (N,) float64, maps (N, crop, crop) float32."""
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if crops.ndim != 4 or crops.shape[1:] != (self.crop, self.crop, 3):
            raise InvalidInputError("images", f"expected (N, {self.crop}, {self.crop}, 3) "
                                              f"uint8, got {crops.shape}")
        if not len(crops):
            return np.zeros(0), np.zeros((0, self.crop, self.crop), np.float32)
        scores, maps = [], []
        for lo in range(0, len(crops), self.batch_size):
            s, m = self.session.run(None, {INPUT_NAME: crops[lo:lo + self.batch_size]})
            scores.append(s)
            maps.append(m)
        return np.concatenate(scores).astype(np.float64), np.concatenate(maps)

    def iter_predict(self, images: Iterable[Any], progress: Progress | None = None,
                     names: Sequence[str] | None = None) -> Iterator[PredictResult]:
        """Decode, resize-and-crop and score batch by batch, like ``PadimModel.iter_predict``."""
        images = image_list(images)
        if names is not None and len(names) != len(images):
            raise InvalidInputError("names", "must have one name per image")
        done = 0
        for batch in decode_batches(images, names, self.image_size, self.crop,
                                    self.batch_size,
                                    resize=self.resize):
            scores, maps = self.score_crops(batch.crops)
            done += len(batch.indices) + len(batch.skipped)
            if progress:
                progress(done, len(images), "predict")
            yield PredictResult(batch.names, scores, maps, batch.crops, self.image_threshold_,
                                self.pixel_threshold_, batch.skipped, self.region_,
                                self.min_defect_area, self.verdict_rule)

    def predict(self, images: Iterable[Any], progress: Progress | None = None,
                names: Sequence[str] | None = None) -> PredictResult:
        """All of ``iter_predict`` in one result."""
        return PredictResult.concat(list(self.iter_predict(images, progress, names)),
                                    self.image_threshold_, self.pixel_threshold_, self.crop)
