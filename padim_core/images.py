"""Safe image decoding, resizing and folder listing.

Every image that enters padim_core goes through :func:`load_image` (or :func:`load_mask`),
so the rules below hold everywhere:

* The header size is checked against ``limits.MAX_IMAGE_PIXELS`` and
  ``limits.MIN_IMAGE_SIDE`` *before* any pixel data is decoded.
* The image is fully decoded (``Image.load()``) inside the error handling, so truncated or
  corrupt files fail here with a one-line message instead of later in the pipeline.
  padim_core never sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``; with its default (False)
  Pillow reports truncation.
* Only the formats in ``limits.DECODABLE_FORMATS`` are opened (no EPS/PSD/... plugins).
* Multi-frame files (animated GIF, multi-page TIFF) yield their first frame.
* The EXIF orientation is applied, so the part is shown as the camera operator saw it.
* Transparent images are composited on black (alpha 0 -> black, alpha 255 -> unchanged),
  so hidden colour values under transparent pixels never reach the model.
* 16-bit images are scaled to 8 bit (value / 257, rounded), never clipped.
* CMYK and other colour modes are converted with Pillow's conversion (ICC profiles ignored).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from padim_core.errors import InvalidInputError
from padim_core.limits import (
    DECODABLE_FORMATS,
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIDE,
)

ImageSource = (
    str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray
)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Leading bytes of the formats we decode: an unidentifiable file that starts like one of
# these is a damaged image, not some other kind of file.
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
)
_FLOAT_TOLERANCE = 1e-6


# --------------------------------------------------------------------------- names


def image_list(images: Any) -> list[Any]:
    """``images`` (any iterable of image sources) as a list; one image given on its own, or a
    folder, is refused with a message saying what to give: iterating it would yield its
    characters, bytes or rows, each "unreadable", and no result."""
    one = (isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image))
           or hasattr(images, "read")
           or (isinstance(images, np.ndarray) and (images.ndim == 2 or (
               images.ndim == 3 and images.shape[-1] in (1, 3, 4)))))
    if not one:
        return list(images)
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        raise InvalidInputError(str(images), "is a folder: give a list of its image files, "
                                             "e.g. sorted(Path(folder).glob('*.png'))")
    kind = "array" if isinstance(images, np.ndarray) else type(images).__name__
    raise InvalidInputError("images", f"must be a list of images, got one {kind}: wrap a "
                                      "single image in a list, [image]")


def input_name(source: object, index: int = 0) -> str:
    """A short display name for any image source: the file name where there is one.

    Paths give their file name, PIL images and file-like objects (e.g. Streamlit uploads)
    their ``filename``/``name`` if set; arrays, bytes and nameless objects give
    ``image_{index}``.
    """
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name or str(source)
    name = None
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", None)
    elif not isinstance(source, (bytes, bytearray, memoryview, np.ndarray)):
        name = getattr(source, "name", None)
    if isinstance(name, (str, os.PathLike)) and str(name):
        return Path(name).name or str(name)
    return f"image_{index}"


def _error_source(source: object, name: str | None) -> str:
    """Name used in error messages: the caller's name, else the full path, else a label."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return input_name(source, 0)


# --------------------------------------------------------------------------- checks


def _check_size(width: int, height: int, where: str) -> None:
    """Reject images above MAX_IMAGE_PIXELS or with a side below MIN_IMAGE_SIDE."""
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidInputError(
            where,
            f"{width}x{height} pixels exceeds the limit of "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels",
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidInputError(
            where,
            f"{width}x{height} pixels is too small "
            f"(each side must be at least {MIN_IMAGE_SIDE} pixels)",
        )


def _one_line(exc: BaseException) -> str:
    """The exception's message squeezed onto one line (type name if it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --------------------------------------------------------------------------- decoding


def _open_stream(source: Any, where: str) -> BinaryIO:
    """A binary stream over a path, bytes-like or file-like source, positioned at 0.

    Paths are opened, not read, so a huge non-image file costs only its header.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InvalidInputError(where, "file not found")
        if path.is_dir():
            raise InvalidInputError(where, "is a folder, not an image file")
        try:
            return open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block
        except OSError as exc:
            raise InvalidInputError(where, f"cannot be read ({exc.strerror or exc})") from exc
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if hasattr(source, "getvalue"):  # BytesIO, Streamlit UploadedFile: whole buffer
        data = source.getvalue()
    elif hasattr(source, "read"):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            source.seek(0)  # Image.open would also read from the start
        data = source.read()
    else:
        raise TypeError(f"{where + ': ' if where else ''}unsupported image source type: "
                        f"{type(source).__name__} (give paths, bytes, file objects, PIL images "
                        "or arrays)")
    if isinstance(data, str):
        raise InvalidInputError(where, "was opened in text mode; open it in binary mode")
    return io.BytesIO(bytes(data))


def _open_error(head: bytes, exc: BaseException) -> str:
    """Human problem text for a failure of Image.open (header stage)."""
    if isinstance(exc, UnidentifiedImageError):
        if head.startswith(_SIGNATURES):
            return "image file is damaged or truncated (cannot read its header)"
        return "not an image file (cannot identify image format)"
    return _decode_error(exc)


def _decode_error(exc: BaseException) -> str:
    """Human problem text for a failure while decoding pixel data."""
    text = _one_line(exc)
    lowered = text.lower()
    if isinstance(exc, EOFError) or "truncated" in lowered or "incomplete" in lowered:
        return "image data is truncated"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode this image"
    return f"image data is corrupt ({text})"


def _decode_pil(
    image: Image.Image, where: str, convert: Callable[[Image.Image], np.ndarray], owned: bool
) -> np.ndarray:
    """Size-check, fully decode, EXIF-rotate and convert an opened PIL image."""
    _check_size(image.width, image.height, where)
    try:
        image.load()
    except Exception as exc:  # untrusted data: any decoder failure is bad input
        raise InvalidInputError(where, _decode_error(exc)) from exc
    with contextlib.suppress(Exception):  # a broken EXIF block only loses the rotation
        if owned:
            ImageOps.exif_transpose(image, in_place=True)
        else:
            image = ImageOps.exif_transpose(image) or image
    try:
        return convert(image)
    except InvalidInputError:
        raise
    except ValueError as exc:  # e.g. a colour mode Pillow cannot convert
        raise InvalidInputError(where, f"unsupported image mode {image.mode} ({exc})") from exc


def _bomb_problem(exc: BaseException) -> str:
    """Problem text when Pillow's own decompression-bomb guard fired before our check."""
    limit = f"the limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
    found = re.search(r"\((\d+) pixels\)", str(exc))
    if found:
        return f"{int(found.group(1)) / 1e6:,.0f} megapixels exceeds {limit}"
    return f"image exceeds {limit}"


def _decode_stream(
    stream: BinaryIO, where: str, convert: Callable[[Image.Image], np.ndarray]
) -> np.ndarray:
    """Open an encoded image with the allowed formats only and decode it."""
    with stream:
        try:
            head = stream.read(16)
            stream.seek(0)
        except OSError as exc:
            raise InvalidInputError(where, f"cannot be read ({exc.strerror or exc})") from exc
        if not head:
            raise InvalidInputError(where, "empty file")
        try:
            # Pillow warns (instead of failing) for 89-179 MP headers; every such image is
            # over our own limit, which rejects it right after with its size in the message.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                opened = Image.open(stream, formats=tuple(sorted(DECODABLE_FORMATS)))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidInputError(where, _bomb_problem(exc)) from exc
        except Exception as exc:  # untrusted data: any parser failure is bad input
            raise InvalidInputError(where, _open_error(head, exc)) from exc
        with opened:
            return _decode_pil(opened, where, convert, owned=True)


def _decode(
    source: Any,
    name: str | None,
    convert: Callable[[Image.Image], np.ndarray],
    array_convert: Callable[[np.ndarray, str], np.ndarray],
) -> np.ndarray:
    """Dispatch on the source type; arrays use array_convert, all else convert."""
    where = _error_source(source, name)
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 3, 4)):
            raise InvalidInputError(
                where,
                f"array of shape {source.shape} is not an image (expected HxW, HxWx3 or HxWx4)",
            )
        _check_size(source.shape[1], source.shape[0], where)
        return array_convert(source, where)
    if isinstance(source, Image.Image):
        return _decode_pil(source, where, convert, owned=False)
    return _decode_stream(_open_stream(source, where), where, convert)


# --------------------------------------------------------------------------- conversions


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 with rounding (65535 -> 255, 32896 -> 128)."""
    wide = np.clip(values, 0, 65535).astype(np.uint32)
    return ((wide + 128) // 257).astype(np.uint8)


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 -> HxWx3 uint8 with colour scaled by alpha (transparent -> black)."""
    alpha = rgba[..., 3:4].astype(np.uint16)
    return ((rgba[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any decoded PIL image -> contiguous HxWx3 uint8 RGB (see module docstring)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _gray_to_rgb(_sixteen_to_eight(np.asarray(image)))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        finite = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            finite = finite * 255.0
        return _gray_to_rgb(np.rint(np.clip(finite, 0, 255)).astype(np.uint8))
    has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
    if has_alpha:
        return np.ascontiguousarray(_composite_on_black(np.asarray(image.convert("RGBA"))))
    rgb = image if mode == "RGB" else image.convert("RGB")
    return np.array(rgb, dtype=np.uint8, order="C")


def _array_to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    """uint8 as is, uint16 / 257, float in [0, 1] * 255, bool 0/255, small ints as is."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return _sixteen_to_eight(array)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InvalidInputError(where, "float image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -_FLOAT_TOLERANCE or high > 1.0 + _FLOAT_TOLERANCE:
            raise InvalidInputError(
                where,
                f"float image values must be in [0, 1] (found {low:.3g} to {high:.3g})",
            )
        return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InvalidInputError(
                where,
                f"{array.dtype} image values must be in 0..255 (found {low} to {high}); "
                "use uint8, uint16 or float in [0, 1]",
            )
        return array.astype(np.uint8)
    raise InvalidInputError(
        where, f"unsupported pixel type {array.dtype} (use uint8, uint16 or float in [0, 1])"
    )


def _array_to_rgb(array: np.ndarray, where: str) -> np.ndarray:
    """HxW / HxWx1 / HxWx3 / HxWx4 array -> contiguous HxWx3 uint8 RGB (a copy)."""
    values = _array_to_uint8(array, where)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    if values.ndim == 2:
        return _gray_to_rgb(values)
    if values.shape[2] == 4:
        return np.ascontiguousarray(_composite_on_black(values))
    return np.array(values, dtype=np.uint8, order="C", copy=True)


def _array_to_mask(array: np.ndarray, where: str = "") -> np.ndarray:
    """Raw values -> bool HxW: any nonzero colour channel where alpha is nonzero."""
    if array.ndim == 2:
        return np.ascontiguousarray(array != 0)
    if array.shape[2] == 4:
        return np.ascontiguousarray((array[..., :3] != 0).any(axis=2) & (array[..., 3] != 0))
    return np.ascontiguousarray((array != 0).any(axis=2))


def _pil_to_mask(image: Image.Image) -> np.ndarray:
    """Decoded PIL mask -> bool HxW from its raw values (label 1 in 16 bit stays 1)."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("1", "L", "F", "RGB", "RGBA"):
        return _array_to_mask(np.asarray(image))
    return _array_to_mask(np.asarray(image.convert("RGBA")))


# --------------------------------------------------------------------------- public API


def file_sha256(source: Any) -> str | None:
    """SHA-256 (hex) of an encoded image's bytes (a path, bytes or a file-like object); None
    for arrays and PIL images, which have no file bytes, and for a file that cannot be read.
    The history records uploads by this digest, and "accept as normal" knows by it which
    images a model has already learned."""
    if isinstance(source, (np.ndarray, Image.Image)):
        return None
    try:
        stream = _open_stream(source, "")
    except (InvalidInputError, TypeError):
        return None
    digest = hashlib.sha256()
    with stream:
        try:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        except OSError:
            return None
    return digest.hexdigest()


def header_size(source: Any) -> tuple[int, int] | None:
    """(width, height) of an image from its header (arrays and PIL images: their shape),
    None when it does not open. No pixel data is decoded."""
    return _probe(source, whole=False)


def seems_readable(source: Any) -> bool:
    """Whether ``source`` will most likely decode: an array, a PIL image, or an encoded image
    whose header opens within the size limits and whose file is whole (a PNG's chunks and
    their checksums all there, a JPEG's end marker at its end). No pixel data is decoded.

    fit draws its calibration share over these inputs, so that unreadable files beside the
    images (a notes.txt in a zip, a half-copied PNG) do not change which images calibrate,
    nor the model.
    """
    return isinstance(source, (np.ndarray, Image.Image)) or \
        _probe(source, whole=True) is not None


def _probe(source: Any, whole: bool) -> tuple[int, int] | None:
    """The image's size from its header, None when it does not open (or, with ``whole``,
    is over the limits or cut short)."""
    if isinstance(source, np.ndarray):
        return (int(source.shape[1]), int(source.shape[0])) if source.ndim >= 2 else None
    if isinstance(source, Image.Image):
        return source.size
    try:
        stream = _open_stream(source, "")
    except (InvalidInputError, TypeError):
        return None
    with stream, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(stream, formats=tuple(sorted(DECODABLE_FORMATS))) as opened:
                size, kind = opened.size, opened.format
                if whole:
                    _check_size(*size, "")
                    opened.verify()        # PNG: every chunk and its CRC; a cut file fails
            if whole and kind == "JPEG" and not _ends_with_jpeg_marker(stream):
                return None
            return size
        except Exception:  # untrusted data: any parser failure means "does not open"
            return None


def _ends_with_jpeg_marker(stream: BinaryIO) -> bool:
    """A whole JPEG ends with its EOI marker (a few kB of trailer after it are allowed)."""
    stream.seek(0, io.SEEK_END)
    stream.seek(max(0, stream.tell() - 4096))
    return b"\xff\xd9" in stream.read()


def load_image(source: ImageSource, name: str | None = None) -> np.ndarray:
    """Decode any supported image source into a contiguous HxWx3 uint8 RGB array.

    ``source`` is a path, bytes, a binary file-like object (e.g. a Streamlit upload), a
    PIL image, or an HxW / HxWx3 / HxWx4 array (uint8, uint16, or float in [0, 1]).
    ``name`` is used in error messages (default: the path, or the object's name).
    Raises InvalidInputError for empty, non-image, truncated, too large or too small input.
    """
    return _decode(source, name, _pil_to_rgb, _array_to_rgb)


def load_mask(source: ImageSource, name: str | None = None) -> np.ndarray:
    """Decode a ground-truth mask into a bool HxW array (nonzero = defect).

    Accepts the same sources and applies the same checks as :func:`load_image`; values
    are read before any 8-bit scaling, so a 16-bit label mask with value 1 counts.
    """
    return _decode(source, name, _pil_to_mask, _array_to_mask)


def _check_geometry(image_size: int, crop: int) -> None:
    """Validate resize/crop options (both user options in the CLI and app)."""
    for label, value in (("image_size", image_size), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidInputError(label, f"must be a positive whole number, got {value!r}")
    if crop > image_size:
        raise InvalidInputError("crop", f"{crop} is larger than image_size {image_size}")


def _resize(image: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """cv2.resize choosing INTER_AREA per shrinking axis and INTER_LINEAR per growing one."""
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image
    if nearest:    # pixel-centre aligned, as INTER_AREA / LINEAR are (INTER_NEAREST is not:
        # it shifted ground-truth masks ~0.45 px down and right of their images)
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    shrink_x, shrink_y = width <= src_w, height <= src_h
    if shrink_x == shrink_y:
        mode = cv2.INTER_AREA if shrink_x else cv2.INTER_LINEAR
        return cv2.resize(image, (width, height), interpolation=mode)
    # One axis shrinks, the other grows: resize each axis with its own interpolation.
    image = cv2.resize(
        image, (width, src_h), interpolation=cv2.INTER_AREA if shrink_x else cv2.INTER_LINEAR
    )
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink_y else cv2.INTER_LINEAR
    )


def _center_crop(image: np.ndarray, crop: int) -> np.ndarray:
    """Centre crop of a square image, offsets rounded like torchvision's CenterCrop."""
    size = image.shape[0]
    top = round((size - crop) / 2.0)
    return np.ascontiguousarray(image[top : top + crop, top : top + crop])


RESIZE_MODES = ("stretch", "pad", "pad-reflect")
"""``stretch``: square resize, as in the PaDiM reference; ``pad``: the long side to the size,
the short side in proportion, centred on black (aspect-preserving letterbox); ``pad-reflect``:
the same, the bands filled with the part's own mirror image instead of black."""


def _check_resize(resize: str) -> None:
    if resize not in RESIZE_MODES:
        raise InvalidInputError("resize", f"must be one of {RESIZE_MODES}, got {resize!r}")


def letterbox_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a width x height image inside its size x size letterbox."""
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return (size - h) // 2, (size - w) // 2, h, w


def _square(image: np.ndarray, size: int, resize: str, nearest: bool = False) -> np.ndarray:
    """image → size x size by ``resize`` (see RESIZE_MODES); masks (``nearest``) pad with 0."""
    if resize == "stretch":
        return _resize(image, size, size, nearest=nearest)
    top, left, h, w = letterbox_box(image.shape[1], image.shape[0], size)
    border = cv2.BORDER_REFLECT_101 if resize == "pad-reflect" and not nearest \
        else cv2.BORDER_CONSTANT
    return cv2.copyMakeBorder(_resize(image, w, h, nearest=nearest), top, size - h - top,
                              left, size - w - left, border, value=0)


def resize_and_crop(image: np.ndarray, image_size: int, crop: int,
                    resize: str = "stretch") -> np.ndarray:
    """Resize to image_size x image_size (square, or letterboxed with ``resize="pad"``),
    then centre-crop to crop x crop.

    The default matches the PaDiM reference (``Resize((size, size))`` then
    ``CenterCrop(crop)``); images smaller than the crop are enlarged. HxWx3 (or HxW) uint8
    in, uint8 out.
    """
    _check_geometry(image_size, crop)
    _check_resize(resize)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InvalidInputError(
            "image", f"expected an HxWx3 uint8 array, got {image.dtype} {image.shape}"
        )
    return _center_crop(_square(image, int(image_size), resize), int(crop))


def resize_and_crop_mask(mask: np.ndarray, image_size: int, crop: int,
                         resize: str = "stretch") -> np.ndarray:
    """Same geometry as :func:`resize_and_crop` for a bool HxW mask (nearest neighbour)."""
    _check_geometry(image_size, crop)
    _check_resize(resize)
    if mask.ndim != 2:
        raise InvalidInputError("mask", f"expected an HxW array, got shape {mask.shape}")
    as_bytes = (np.asarray(mask) != 0).astype(np.uint8)
    resized = _square(as_bytes, int(image_size), resize, nearest=True)
    return _center_crop(resized, int(crop)).astype(bool)


def unpad_map(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """A letterboxed (size, size) map of a width x height image → the (size, size) square
    geometry of ``resize="stretch"``, so that it lines up with square-resized masks."""
    size = values.shape[0]
    top, left, h, w = letterbox_box(width, height, size)
    return cv2.resize(np.ascontiguousarray(values[top:top + h, left:left + w]), (size, size),
                      interpolation=cv2.INTER_LINEAR)


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a visible file whose suffix is in IMAGE_EXTENSIONS (case-insensitive)."""
    candidate = Path(path)
    return (
        not candidate.name.startswith(".")
        and candidate.suffix.lower() in IMAGE_EXTENSIONS
        and candidate.is_file()
    )


def is_visible_folder(name: str) -> bool:
    """False for hidden folders and macOS ``__MACOSX`` litter, which never hold parts."""
    return not name.startswith(".") and name != "__MACOSX"


def _files_below(root: Path) -> list[Path]:
    """Image files in ``root`` and every visible folder below it, sorted by relative path.

    Symbolic links to folders are not followed (no loops, no escaping the tree).
    """
    found: list[Path] = []

    def fail(exc: OSError) -> None:
        raise _unlistable(exc.filename or root, exc) from exc

    for top, folders, names in os.walk(root, onerror=fail):
        folders[:] = [f for f in folders if is_visible_folder(f)]
        found += (Path(top) / n for n in names if is_image_file(Path(top) / n))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _unlistable(folder: str | os.PathLike, exc: OSError) -> InvalidInputError:
    return InvalidInputError(str(folder), f"cannot be listed ({exc.strerror or exc})")


def subfolder_hint(root: Path) -> str:
    """``"; its subfolders (a, b) hold 40: include them with --recursive ..."`` when the
    folders right below ``root`` hold image files, else ``""``: the end of a "no image
    files" message. One level only: a typo like ``/`` must not walk the disk."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for sub in sorted(root.iterdir(), key=lambda p: p.name):
            if sub.is_dir() and is_visible_folder(sub.name):
                with contextlib.suppress(OSError):
                    if n := sum(1 for p in sub.iterdir() if is_image_file(p)):
                        counts[sub.name] = n
    if not counts:
        return ""
    shown = ", ".join(list(counts)[:4]) + (", ..." if len(counts) > 4 else "")
    return (f"; its subfolders ({shown}) hold {sum(counts.values())}: include them with "
            "--recursive (API: recursive=True)")


def iter_image_files(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files directly inside ``folder`` (``recursive``: also in every visible folder
    below it), sorted by name / relative path; hidden files and folders are skipped.

    Raises InvalidInputError if the folder does not exist, is not a folder, or has no
    image files (so a typo never silently trains on nothing); when only its subfolders
    hold images, the message says how many and where.
    """
    root = Path(folder)
    if not root.exists():
        raise InvalidInputError(str(root), "folder not found")
    if not root.is_dir():
        raise InvalidInputError(str(root), "is not a folder")
    if recursive:
        files = _files_below(root)
    else:
        try:
            files = sorted((p for p in root.iterdir() if is_image_file(p)),
                           key=lambda p: p.name)
        except OSError as exc:
            raise _unlistable(root, exc) from exc
    if not files:
        problem = "contains no image files (expected " + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")"
        if not recursive:
            problem += subfolder_hint(root)
        raise InvalidInputError(str(root), problem)
    return files
