"""ONNX export of a fitted model, refused unless onnxruntime scores like padim_core.

One graph from the model's input crop to its outputs, the same steps as the torch path:

    images (N, crop, crop, 3) uint8 RGB
      → backbone (normalization inside)                  backbones.FeatureExtractor
      → d channels on layer 1's grid                     embedding.Embedder
      → per-patch Mahalanobis ‖(x − μ) M‖ with whitener M  scoring.mahalanobis
      → upsample + Gaussian blur as two matrices           scoring.MapRenderer
      → maps (N, crop, crop) float32, scores (N,) float32    scoring.image_scores

The crop is made outside the graph by ``images.resize_and_crop`` (docs/export.md shows the
rule in a few lines). Thresholds, sizes and versions go into ``metadata_props`` so a
runtime without padim_core can still tell OK from NG. Whiteners above ~1.5 GB (Wide-ResNet
at d = 550 is ~3.8 GB) go to ONNX external data next to the file (``<file>.data``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import FeatureExtractor
from .demo import DEFECT_TYPES, render_sample
from .errors import InvalidInputError, WeightsUnavailableError
from .images import iter_image_files
from .model import PadimModel, __version__
from .onnx_engine import INPUT_NAME, ONNX_FORMAT, ONNX_FORMAT_VERSION, OUTPUT_NAMES, OnnxModel
from .regions import region_words
from .scoring import MapRenderer, image_scores
from .visualize import encode_png

#: Parity the exported file must reach against padim_core, relative (see ``ParityReport``).
SCORE_TOLERANCE = 1e-4
MAP_TOLERANCE = 1e-3
#: Above this many bytes of weights the graph keeps them in ``<file>.data`` (protobuf's 2 GB
#: limit, with room for the backbone).
EXTERNAL_DATA_BYTES = 1536 << 20
OPSET = 18


def model_id(card: dict[str, Any]) -> str:
    """A short, stable id of a fitted model: hash of its card (thresholds, creation time,
    sizes, calibration statistics), the same for the .safetensors file and its ONNX export."""
    text = json.dumps(card, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class ScoringGraph(nn.Module):
    """The fitted model as one torch module: uint8 crops in, (scores, maps) out.

    Written with ops ONNX has (gather, nearest or bilinear resize, batched matmul), not with the
    CPU path's numpy kernels, but the same arithmetic in the same precision (float32).
    """

    def __init__(self, model: PadimModel) -> None:
        super().__init__()
        state = model.state_
        if state is None:
            raise InvalidInputError("model", "is not fitted; nothing to export")
        extractor = model.extractor
        if extractor.device.type != "cpu":
            extractor = copy.deepcopy(extractor).cpu()
        self.extractor: FeatureExtractor = extractor
        self.grid = tuple(int(v) for v in state.grid)
        self.upsample = model.config.upsample
        channels = np.cumsum((0, *extractor.channels))
        if state.channel_index is not None:
            # Per layer the selected local channels; index_select keeps their sorted order,
            # which is the order Embedder writes them in.
            index = np.asarray(state.channel_index, np.int64)
            self._selections = [
                torch.as_tensor(index[(index >= lo) & (index < hi)] - lo)
                for lo, hi in zip(channels[:-1], channels[1:], strict=True)]
            self.projection = None
        else:
            self._selections = [None] * len(extractor.channels)
            self.projection = nn.Parameter(torch.as_tensor(np.asarray(state.projection,
                                                                      np.float32)),
                                           requires_grad=False)
        for i, sel in enumerate(self._selections):
            if sel is not None:
                self.register_buffer(f"select{i}", sel)
        g = state.gaussian
        self.register_buffer("mean", _cpu_f32(g.mean))             # (P, d)
        self.register_buffer("whitener", _cpu_f32(g.whitener))     # (P, d, d)
        renderer = MapRenderer(self.grid, model.config.crop, model.config.sigma, "cpu")
        self.register_buffer("rows", renderer.rows.clone())        # (crop, h)
        self.register_buffer("cols_t", renderer.cols_t.clone())    # (w, crop)
        self.top_percent = float(model.config.score_top_percent)
        # the region is applied in the graph: scores over the inspected pixels only
        self.region = state.region is not None
        if self.region:
            self.register_buffer("inspected", torch.as_tensor(
                np.flatnonzero(state.region.reshape(-1)), dtype=torch.int64))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.extractor(images)
        h, w = self.grid
        parts = []
        for i, feat in enumerate(feats):
            if self._selections[i] is not None:
                if len(self._selections[i]) == 0:
                    continue
                feat = feat.index_select(1, getattr(self, f"select{i}"))
            if tuple(feat.shape[-2:]) != (h, w):
                feat = (F.interpolate(feat, size=(h, w), mode="bilinear", align_corners=False)
                        if self.upsample == "bilinear"
                        else F.interpolate(feat, size=(h, w), mode="nearest"))
            parts.append(feat)
        emb = torch.cat(parts, 1)                                   # (N, C, h, w)
        n = emb.shape[0]
        x = emb.permute(2, 3, 0, 1).reshape(h * w, n, emb.shape[1])  # (P, N, C)
        if self.projection is not None:
            x = x @ self.projection
        z = torch.matmul(x - self.mean[:, None, :], self.whitener)  # (P, N, d)
        dist = (z * z).sum(-1).sqrt().transpose(0, 1).reshape(n, h, w)
        tmp = (dist.reshape(n * h, w) @ self.cols_t).reshape(n, h, -1)
        maps = torch.matmul(self.rows, tmp)                          # (N, crop, crop)
        flat = maps.flatten(1)
        if self.region:
            flat = flat.index_select(1, self.inspected)
        return image_scores(flat, self.top_percent), maps


def _cpu_f32(x: Any) -> torch.Tensor:
    return torch.as_tensor(x.cpu().numpy() if isinstance(x, torch.Tensor) else x,
                           dtype=torch.float32).contiguous()


@dataclass
class ParityReport:
    """How far onnxruntime is from padim_core on the check images.

    Scores: the largest |onnx − torch| / |torch|. Maps: the largest |onnx − torch| of each
    image divided by that image's largest torch value (maps are distances ≥ 0; a per-pixel
    ratio would divide by the blur's near-zero tails of nothing).
    """

    n_images: int
    source: str
    score_rel: float
    map_rel: float
    score_tolerance: float = SCORE_TOLERANCE
    map_tolerance: float = MAP_TOLERANCE

    @property
    def ok(self) -> bool:
        return self.score_rel <= self.score_tolerance and self.map_rel <= self.map_tolerance

    def summary(self) -> str:
        return (f"parity on {self.n_images} image(s) ({self.source}): scores max rel diff "
                f"{self.score_rel:.2e} (limit {self.score_tolerance:g}), maps max rel diff "
                f"{self.map_rel:.2e} (limit {self.map_tolerance:g})")


def relative_differences(scores: np.ndarray, maps: np.ndarray, ref_scores: np.ndarray,
                         ref_maps: np.ndarray) -> tuple[float, float]:
    """(score, map) relative differences as defined in ``ParityReport``."""
    ref_scores = np.asarray(ref_scores, np.float64)
    ref_maps = np.asarray(ref_maps, np.float64)
    if not len(ref_scores):
        return 0.0, 0.0
    s = np.abs(np.asarray(scores, np.float64) - ref_scores) / np.maximum(np.abs(ref_scores),
                                                                         1e-12)
    scale = np.maximum(np.abs(ref_maps).reshape(len(ref_maps), -1).max(1), 1e-12)
    m = np.abs(np.asarray(maps, np.float64) - ref_maps).reshape(len(ref_maps), -1).max(1)
    return float(np.nan_to_num(s, nan=np.inf).max()), float(np.nan_to_num(m / scale,
                                                                          nan=np.inf).max())


def demo_check_images(image_size: int, n: int = 8, seed: int = 7) -> list[np.ndarray]:
    """Synthetic demo plates (half good, half with each defect type) at ``image_size``."""
    size = max(128, int(image_size))
    kinds = ["good", *DEFECT_TYPES]
    return [render_sample(seed, "test", kinds[i % len(kinds)], i, size)[1] for i in range(n)]


def _check_images(check_dir: str | os.PathLike | None, image_size: int,
                  limit: int) -> tuple[list[Any], str]:
    if check_dir is None:
        return demo_check_images(image_size), "synthetic demo images"
    folder = Path(check_dir).expanduser()
    if not folder.is_dir():
        raise InvalidInputError(str(folder), "is a file, not a folder of check images"
                                if folder.exists() else "check-images folder not found")
    files = iter_image_files(folder)[:limit]
    if not files:
        raise InvalidInputError(str(folder), "no images to check the export on")
    return files, f"{len(files)} image(s) from {folder}"


def _metadata(model: PadimModel) -> dict[str, str]:
    card = model.card()
    cfg = model.config
    return {
        "padim.format": ONNX_FORMAT,
        "padim.format_version": str(ONNX_FORMAT_VERSION),
        "padim.package_version": __version__,
        "padim.model_id": model_id(card),
        "padim.backbone": cfg.backbone,
        "padim.d": str(cfg.d),
        "padim.reduction": cfg.reduction,
        "padim.image_size": str(cfg.image_size),
        "padim.crop": str(cfg.crop),
        "padim.resize": cfg.resize,
        "padim.grid": json.dumps(list(model.state_.grid)),
        "padim.sigma": repr(float(cfg.sigma)),
        "padim.score_top_percent": repr(float(cfg.score_top_percent)),
        "padim.image_threshold": repr(float(card["image_threshold"])),
        "padim.pixel_threshold": repr(float(card["pixel_threshold"])),
        "padim.input": (f"{INPUT_NAME}: (N, {cfg.crop}, {cfg.crop}, 3) uint8 RGB; "
                        + {"stretch": "square resize",
                           "pad": "aspect-preserving resize of the long side, centred on "
                                  "black,",
                           "pad-reflect": "aspect-preserving resize of the long side, "
                                          "centred, the bands filled with the image's mirror "
                                          "image (OpenCV BORDER_REFLECT_101),"}[cfg.resize]
                        + f" to {cfg.image_size} (OpenCV INTER_AREA shrinking, INTER_LINEAR "
                        f"growing), centre crop {cfg.crop}"),
        "padim.outputs": ("scores: (N,) float32, each map's image score over the region's "
                          "inspected pixels: " + (
                              "the maximum" if cfg.score_top_percent == 0 else
                              f"the mean of its top {cfg.score_top_percent:g} % of pixels")
                          + " (padim.score_top_percent); maps: (N, crop, crop) float32, every "
                          "pixel"),
        "padim.verdict": ("NG when score >= image_threshold or score is not a number"
                          if cfg.verdict_rule == "score" else
                          "NG when a connected region of map >= pixel_threshold inside the "
                          "region has at least padim.min_defect_area pixels, or score is not "
                          "a number"),
        "padim.region": region_words(model.state_.region),
        "padim.region_png": ("" if model.state_.region is None else base64.b64encode(
            encode_png(model.state_.region.astype(np.uint8) * 255)).decode("ascii")),
        "padim.min_defect_area": str(cfg.min_defect_area),
        "padim.verdict_rule": cfg.verdict_rule,
        "padim.card": json.dumps(card, sort_keys=True, default=str),
    }


def export_program(model: PadimModel) -> Any:
    """The fitted model as a ``torch.onnx.ONNXProgram`` with its metadata (not yet saved)."""
    graph = ScoringGraph(model).eval()
    crop = model.config.crop
    sample = torch.zeros((2, crop, crop, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the exporter's notes on its own internals
        program = torch.onnx.export(
            graph, (sample,), dynamo=True, input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), dynamic_shapes={"images": {0: batch}},
            opset_version=OPSET, optimize=True, verbose=False)
    program.model.metadata_props.update(_metadata(model))
    program.model.doc_string = (f"PaDiM Inspector {__version__}: {model.config.backbone} "
                                f"d={model.config.d}; see padim.* metadata")
    return program


def parity_check(model: PadimModel, onnx_path: str | os.PathLike,
                 images: Sequence[Any], source: str) -> ParityReport:
    """Score ``images`` with padim_core and with onnxruntime on ``onnx_path``; compare."""
    ref = model.predict(images)
    if not len(ref.names):
        raise InvalidInputError(source, "no readable image to check the export on")
    onnx = OnnxModel(onnx_path)
    scores, maps = onnx.score_crops(ref.images)
    s, m = relative_differences(scores, maps, ref.scores, ref.maps)
    return ParityReport(len(ref.names), source, s, m)


def export_onnx(model: PadimModel, path: str | os.PathLike,
                check_images: str | os.PathLike | None = None,
                max_check_images: int = 32) -> ParityReport:
    """Write ``model`` as ONNX to ``path`` after a parity self-test with onnxruntime.

    The file is built and checked in a temporary folder next to ``path`` and moved into
    place only when scores and maps match padim_core within ``SCORE_TOLERANCE`` /
    ``MAP_TOLERANCE``; otherwise nothing is written and InvalidInputError says by how much.
    Missing backbone weights raise WeightsUnavailableError before any work.
    """
    out = Path(path).expanduser()
    if out.is_dir():
        raise InvalidInputError(str(out), "is a folder; give a file name")
    try:
        _ = model.extractor
    except WeightsUnavailableError as err:
        raise WeightsUnavailableError(f"cannot export without the backbone weights: {err}") \
            from None
    images, source = _check_images(check_images, model.config.image_size, max_check_images)
    out.parent.mkdir(parents=True, exist_ok=True)
    program = export_program(model)
    weights = sum(int(np.prod(v.shape)) * 4 for v in program.model.graph.initializers.values())
    external = weights > EXTERNAL_DATA_BYTES
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staged = tmp / out.name
        program.save(str(staged), external_data=external)
        del program
        report = parity_check(model, staged, images, source)
        if not report.ok:
            raise InvalidInputError(str(out), f"not written: onnxruntime differs from "
                                              f"padim_core ({report.summary()})")
        data = staged.with_name(staged.name + ".data")
        if data.exists():
            os.replace(data, out.with_name(out.name + ".data"))
        os.replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def export_onnx_bytes(model: PadimModel, check_images: str | os.PathLike | None = None,
                      ) -> tuple[bytes, ParityReport]:
    """The checked ONNX file as bytes (for a download button), with its parity report.

    Only for models whose weights fit one file (``EXTERNAL_DATA_BYTES``); larger ones
    need ``export_onnx`` to a folder (the file plus its ``.data``).
    """
    with tempfile.TemporaryDirectory(prefix="padim-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        report = export_onnx(model, path, check_images)
        if path.with_name(path.name + ".data").exists():
            raise InvalidInputError("model", "too large for a single-file ONNX download; "
                                             "use 'padim export' (writes FILE and FILE.data)")
        return path.read_bytes(), report
