"""Model files: safetensors tensors + JSON metadata, validated on load, never unpickled.

Layout (format version 1):
  tensors  mean (P, d) f32, whitener_triu (P, d(d+1)/2) f32 (the upper triangle of the
           whitener, half the bytes of the full matrix), channel_index (d,) i64 or
           projection (C, d) f32, calibration_scores (H,) f64
  metadata "format" = "padim-inspector-model", "format_version" = "1", "padim" = JSON with
           the configuration, backbone description, grid, thresholds and provenance.
Format version 2 adds what ``PadimModel.partial_fit`` needs (``updates.UpdateData``):
  tensors  sum_x (P, d) f64, sum_xx_triu (P, d(d+1)/2) f64 (upper triangles of Σxxᵀ),
           calibration_embeddings (P, H, d) f32; metadata "sums_n" (images summed),
           "updates" (the update log) and "train_sha256" (the SHA-256 of the image files fit
           learned, so an update does not count them twice; absent in older files).
Format version 3 adds the inspection region and defect rule (docs/regions.md):
  tensors  region (crop, crop) u8, 1 = inspect, 0 = ignore (absent: the whole image);
           mean_image (crop, crop, 3) u8, the mean training crop a region is drawn on;
  metadata config.min_defect_area, config.verdict_rule.
Format version 4 adds config.upsample = "bilinear" (docs/quality.md); a file with the
paper's nearest-neighbour upsampling is written as before, so older readers, which would score
a bilinear model with nearest upsampling, refuse only the files they would misread.
Every file written now also holds calibration_distances (H, h, w) f32, the calibration
images' patch distances, so the thresholds can be recomputed for another region.
The version written is the lowest that describes the file: 3 when it has a region, a
minimum defect area or the area verdict rule (an older reader would silently score the
whole image); else 2 with update data, else 1. So files without a region stay readable by
older versions of this program (they ignore tensors they do not know), and files of
versions 1 and 2 load as "whole image, no minimum area". A file from another version,
another program, or with shapes that do not agree with its metadata is rejected with a
message that names the file.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from . import limits
from .backbones import SPECS
from .errors import ModelFileError
from .updates import UpdateData

FORMAT = "padim-inspector-model"
FORMAT_VERSION = 4
READABLE_VERSIONS = ("1", "2", "3", "4")
UPDATE_TENSORS = ("sum_x", "sum_xx_triu", "calibration_embeddings")
MAX_HEADER_BYTES = 16 << 20


def pack_upper(whitener: np.ndarray) -> np.ndarray:
    """(P, d, d) upper-triangular → (P, d(d+1)/2), row by row (``np.triu_indices`` order).

    One slice copy per matrix row: a gather through index arrays took 1 s for the d = 192
    whitener (231 MB), this 0.1 s.
    """
    p, d = whitener.shape[0], whitener.shape[-1]
    packed = np.empty((p, d * (d + 1) // 2), whitener.dtype)
    for row, start in enumerate(_row_starts(d)):
        packed[:, start:start + d - row] = whitener[:, row, row:]
    return packed


def unpack_upper(packed: np.ndarray, d: int) -> np.ndarray:
    """(P, d(d+1)/2) → (P, d, d) with zeros below the diagonal."""
    out = np.zeros((packed.shape[0], d, d), dtype=packed.dtype)
    for row, start in enumerate(_row_starts(d)):
        out[:, row, row:] = packed[:, start:start + d - row]
    return out


def _row_starts(d: int) -> list[int]:
    """Where each row of the upper triangle starts in its packed form."""
    return [row * d - row * (row - 1) // 2 for row in range(d)]


def update_tensors(data: UpdateData) -> dict[str, np.ndarray]:
    """The tensors of format version 2 that hold ``data``."""
    return {"sum_x": data.total, "sum_xx_triu": data.second,
            "calibration_embeddings": data.calibration}


def update_data(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> UpdateData | None:
    """The update data of a validated file, or None for a file without it."""
    if "sum_x" not in tensors:
        return None
    return UpdateData(int(meta["sums_n"]), tensors["sum_x"], tensors["sum_xx_triu"],
                      tensors["calibration_embeddings"])


def train_digests(meta: dict[str, Any], name: str) -> tuple[str, ...]:
    """The SHA-256 (hex) of the files fit learned, as the metadata lists them (none in files
    from before this record); a malformed list is refused with a message naming the file."""
    digests = meta.get("train_sha256", [])
    if not isinstance(digests, list) or not all(
            isinstance(d, str) and _SHA256.fullmatch(d) for d in digests):
        raise ModelFileError(name, "train_sha256 must be a list of SHA-256 hex digests")
    return tuple(digests)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def encode(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """Serialize to safetensors bytes (those of ``stream``: the same model, the same bytes)."""
    out = io.BytesIO()
    stream(tensors, meta, out.write)
    return out.getvalue()


#: safetensors' dtype names, in the order its serializer lays tensors out (widest first,
#: so every tensor stays aligned; ties by name).
_DTYPE_NAMES = {np.dtype(t): name for t, name in (
    (np.uint64, "U64"), (np.int64, "I64"), (np.float64, "F64"), (np.float32, "F32"),
    (np.uint32, "U32"), (np.int32, "I32"), (np.float16, "F16"), (np.uint16, "U16"),
    (np.int16, "I16"), (np.int8, "I8"), (np.uint8, "U8"), (np.bool_, "BOOL"))}
_DTYPE_RANK = {name: rank for rank, name in enumerate(_DTYPE_NAMES.values())}


def stream(tensors: dict[str, np.ndarray], meta: dict[str, Any],
           write: Callable[[memoryview], object]) -> int:
    """Hand the safetensors bytes of a model file to ``write`` piece by piece (header,
    then each tensor's own buffer), so a file of hundreds of MB never exists as one more
    copy in memory; returns the number of bytes. The layout is safetensors' own; unlike
    its serializer (which orders the metadata keys at random) the same model always gives
    the same bytes, so the model library stores it once."""
    arrays = _c_order(tensors)
    names = sorted(arrays, key=lambda k: (_DTYPE_RANK[_DTYPE_NAMES[arrays[k].dtype]], k))
    header: dict[str, Any] = {"__metadata__": dict(sorted(_metadata(meta).items()))}
    end = 0
    for name in names:
        a = arrays[name]
        header[name] = {"dtype": _DTYPE_NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [end, end + a.nbytes]}
        end += a.nbytes
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    head += b" " * (-len(head) % 8)
    write(memoryview(struct.pack("<Q", len(head)) + head))
    for name in names:
        write(memoryview(arrays[name].reshape(-1).view(np.uint8)))
    return 8 + len(head) + end


def write(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write atomically (temp file then rename) so a crash never leaves half a model."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        stream(tensors, meta, fh.write)
    os.replace(tmp, path)


def _c_order(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # safetensors writes the raw buffer: a non-C-ordered array would be saved scrambled.
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def _metadata(meta: dict[str, Any]) -> dict[str, str]:
    return {"format": FORMAT, "format_version": str(_version(meta)), "padim": json.dumps(meta)}


def _version(meta: dict[str, Any]) -> int:
    """The lowest format version that describes a file with this metadata."""
    cfg = meta.get("config", {})
    if cfg.get("upsample", "nearest") != "nearest":
        return 4
    if meta.get("has_region") or cfg.get("min_defect_area", 0) or \
            cfg.get("verdict_rule", "score") != "score":
        return 3
    return 2 if "sums_n" in meta else 1


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a model file from disk."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ModelFileError(name, "model file not found")
    size = path.stat().st_size
    if size > limits.MAX_MODEL_FILE_MB << 20:
        raise ModelFileError(name, f"{size >> 20} MB exceeds the {limits.MAX_MODEL_FILE_MB} MB "
                                   "limit")
    with open(path, "rb") as fh:
        head = fh.read(8 + MAX_HEADER_BYTES)
    meta = _parse_header(head, size, name)
    try:
        tensors = {}
        with safetensors.safe_open(str(path), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                tensors[key] = f.get_tensor(key)
    except Exception as err:  # safetensors raises its own error types
        raise ModelFileError(name, f"damaged model file ({_short(err)})") from None
    _validate(tensors, meta, name)
    return tensors, meta


def decode(data: bytes, name: str = "model.safetensors") -> tuple[dict[str, np.ndarray], dict]:
    """Read and validate a model file held in memory (an upload)."""
    if len(data) > limits.MAX_MODEL_UPLOAD_MB << 20:
        raise ModelFileError(name, f"{len(data) >> 20} MB exceeds the "
                                   f"{limits.MAX_MODEL_UPLOAD_MB} MB upload limit")
    meta = _parse_header(bytes(data[: 8 + MAX_HEADER_BYTES]), len(data), name)
    try:
        tensors = safetensors.numpy.load(bytes(data))
    except Exception as err:
        raise ModelFileError(name, f"damaged model file ({_short(err)})") from None
    _validate(tensors, meta, name)
    return tensors, meta


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _parse_header(head: bytes, size: int, name: str) -> dict[str, Any]:
    """Read the safetensors JSON header ourselves: only JSON is parsed, never pickle."""
    not_model = "not a PaDiM Inspector model file (expected a .safetensors file saved by it)"
    if size < 8 or len(head) < 8:
        text = head.decode("latin-1").strip()
        if text and text.isprintable():         # "hello\n": a text file, not a cut model
            raise ModelFileError(name, not_model)
        raise ModelFileError(name, "file is empty or truncated" if size else "file is empty")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise ModelFileError(name, not_model)
    try:
        header = json.loads(head[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):   # deep: not ours
        raise ModelFileError(name, not_model) from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        if not isinstance(header, dict):
            raise ModelFileError(name, not_model)
        raise ModelFileError(name, "a safetensors file, but not a PaDiM Inspector model")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(name, f"model format version {version} is not supported "
                                   f"(this version reads {', '.join(READABLE_VERSIONS)}); "
                                   "re-train or re-save it")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items()
                   if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v),
                  default=0)
    except (TypeError, IndexError, KeyError, ValueError):
        raise ModelFileError(name, "damaged model file (a tensor's data_offsets are not "
                                   "two numbers)") from None
    if 8 + n + end > size:
        raise ModelFileError(name, f"file is truncated ({size} bytes, needs {8 + n + end})")
    try:
        padim = json.loads(meta["padim"])
    except (KeyError, TypeError, json.JSONDecodeError, RecursionError):
        raise ModelFileError(name, "model metadata is missing or damaged") from None
    if not isinstance(padim, dict):
        raise ModelFileError(name, "model metadata is missing or damaged")
    return padim


def _validate(tensors: dict[str, np.ndarray], meta: dict[str, Any], name: str) -> None:
    """Check that every tensor exists with the shape and type the metadata implies."""
    try:
        cfg = meta["config"]
        backbone, d = cfg["backbone"], int(cfg["d"])
        grid_h, grid_w = (int(v) for v in meta["grid"])
        channels = tuple(int(c) for c in meta["channels"])
        thresholds = float(meta["image_threshold"]), float(meta["pixel_threshold"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(name, "model metadata is incomplete") from None
    if not all(math.isfinite(t) for t in thresholds):
        raise ModelFileError(name, f"thresholds {thresholds} are not finite numbers")
    if backbone not in SPECS:
        raise ModelFileError(name, f"unknown backbone {backbone!r}")
    if channels != SPECS[backbone].channels:
        raise ModelFileError(name, f"channel counts {channels} do not match backbone {backbone}")
    p = grid_h * grid_w
    expected = {"mean": ((p, d), np.float32), "whitener_triu": ((p, d * (d + 1) // 2), np.float32),
                "calibration_scores": (None, np.float64)}
    if cfg.get("reduction", "random") == "random":
        expected["channel_index"] = ((d,), np.int64)
    else:
        expected["projection"] = ((sum(channels), d), np.float32)
    for key, (shape, dtype) in expected.items():
        if key not in tensors:
            raise ModelFileError(name, f"tensor {key!r} is missing")
        arr = tensors[key]
        if arr.dtype != dtype or (shape is not None and arr.shape != shape):
            raise ModelFileError(name, f"tensor {key!r} has shape {arr.shape} {arr.dtype}, "
                                       f"expected {shape} {np.dtype(dtype)}")
    if "channel_index" in expected:
        idx = tensors["channel_index"]
        if idx.min() < 0 or idx.max() >= sum(channels) or len(np.unique(idx)) != d:
            raise ModelFileError(name, "channel_index is out of range or repeats channels")
    for key in ("mean", "whitener_triu"):
        if not np.isfinite(tensors[key]).all():
            raise ModelFileError(name, f"tensor {key!r} contains NaN or infinity")
    _validate_update_data(tensors, meta, name, p, d)
    _validate_region(tensors, cfg, name, (grid_h, grid_w))


def _validate_region(tensors: dict[str, np.ndarray], cfg: dict[str, Any], name: str,
                     grid: tuple[int, int]) -> None:
    """Version 3's region (crop, crop) of 0/1, not all 0; the calibration distances."""
    if "region" in tensors:
        crop = cfg.get("crop")
        region = tensors["region"]
        if region.dtype != np.uint8 or region.shape != (crop, crop):
            raise ModelFileError(name, f"tensor 'region' has shape {region.shape} "
                                       f"{region.dtype}, expected ({crop}, {crop}) uint8")
        if not np.isin(region, (0, 1)).all():
            raise ModelFileError(name, "tensor 'region' holds values other than 0 and 1")
        if not region.any():
            raise ModelFileError(name, "region has nothing to inspect (all 0)")
    crop = cfg.get("crop")
    if "mean_image" in tensors and (tensors["mean_image"].dtype != np.uint8
                                    or tensors["mean_image"].shape != (crop, crop, 3)):
        raise ModelFileError(name, f"tensor 'mean_image' has shape "
                                   f"{tensors['mean_image'].shape}, expected ({crop}, {crop}, "
                                   "3) uint8")
    if "calibration_distances" in tensors:
        dist = tensors["calibration_distances"]
        shape = (tensors["calibration_scores"].shape[0], *grid)
        if dist.dtype != np.float32 or dist.shape != shape:
            raise ModelFileError(name, f"tensor 'calibration_distances' has shape {dist.shape} "
                                       f"{dist.dtype}, expected {shape} float32")
        if not np.isfinite(dist).all():
            raise ModelFileError(name, "tensor 'calibration_distances' contains NaN or "
                                       "infinity")


def _validate_update_data(tensors: dict[str, np.ndarray], meta: dict[str, Any], name: str,
                          p: int, d: int) -> None:
    """Version 2's update tensors: all or none, with the shapes the metadata implies."""
    present = [k for k in UPDATE_TENSORS if k in tensors]
    if not present:
        return
    if len(present) != len(UPDATE_TENSORS):
        missing = sorted(set(UPDATE_TENSORS) - set(present))
        raise ModelFileError(name, f"update data is incomplete ({', '.join(missing)} missing)")
    try:
        n = int(meta["sums_n"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(name, "update data without its image count (sums_n)") from None
    h = tensors["calibration_scores"].shape[0]
    expected = {"sum_x": ((p, d), np.float64), "sum_xx_triu": ((p, d * (d + 1) // 2),
                                                               np.float64),
                "calibration_embeddings": ((p, h, d), np.float32)}
    for key, (shape, dtype) in expected.items():
        arr = tensors[key]
        if arr.dtype != dtype or arr.shape != shape:
            raise ModelFileError(name, f"tensor {key!r} has shape {arr.shape} {arr.dtype}, "
                                       f"expected {shape} {np.dtype(dtype)}")
        if not np.isfinite(arr).all():
            raise ModelFileError(name, f"tensor {key!r} contains NaN or infinity")
    if n < h + 2:
        raise ModelFileError(name, f"sums_n={n} is too small for {h} calibration images")
