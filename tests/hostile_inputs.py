"""Every broken or hostile input the hostile-input suites feed to PaDiM Inspector, in one table.

Shared by ``test_hostile_api.py`` (Python API), ``test_hostile_cli.py`` (``python -m
padim_core``) and ``test_hostile_app.py`` (Streamlit AppTest), so all three entry points are
checked against the *same* bytes and the *same* expected outcome.

Each case is a :class:`Case`: the file name a user would hand over, its bytes, and either

* ``"accepted"``: the input is usable (odd formats are converted: 16-bit, RGBA, palette,
  CMYK, animated GIF / multi-page TIFF -> first frame, EXIF rotation applied), or
* ``"rejected"``: the input is refused with a one-line message that names the file and
  contains ``fragment`` (lower case).

Archive cases may be accepted while some members are skipped: ``skipped`` lists
``(member, fragment)`` for each one. Everything is generated in memory, deterministically
and quickly (no case is larger than a few MB; limits are exercised by monkeypatching them
small, never by writing gigabytes).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

Outcome = Literal["accepted", "rejected"]

#: Side of the accepted test images (the suites fit with image_size = crop = 64).
SIDE = 48


@dataclass(frozen=True)
class Case:
    """One input: what the user hands over and what they must get back."""

    id: str
    name: str
    data: bytes
    outcome: Outcome
    fragment: str = ""
    note: str = ""
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.outcome == "rejected" and not self.fragment:
            raise ValueError(f"{self.id}: a rejected case needs a message fragment")

    @property
    def pair(self) -> tuple[str, bytes]:
        """``(name, bytes)``, the shape uploads and folders are built from."""
        return self.name, self.data


# --------------------------------------------------------------------------- helpers


def texture(seed: int = 0, side: int = SIDE, channels: int = 3) -> np.ndarray:
    """A smooth random texture (uint8), different per seed; not flat, so features vary."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (side // 8 + 2, side // 8 + 2, channels)).astype(np.float32)
    big = np.kron(base, np.ones((8, 8, 1), np.float32))[:side, :side]
    noise = rng.normal(0, 12, big.shape)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    """Encode a PIL image with Pillow."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png(seed: int = 0, side: int = SIDE) -> bytes:
    """A good RGB PNG."""
    return encode(Image.fromarray(texture(seed, side)), "PNG")


def jpeg(seed: int = 0, side: int = SIDE) -> bytes:
    """A good RGB JPEG."""
    return encode(Image.fromarray(texture(seed, side)), "JPEG", quality=90)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but which holds a few bytes of pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def zip_of(members: list[tuple[str | zipfile.ZipInfo, bytes]],
           compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip with members written verbatim (names like ``../x`` are kept as given)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


# --------------------------------------------------------------------------- images


def empty_file() -> tuple[str, bytes]:
    """Zero bytes named like a PNG."""
    return "empty.png", b""


def text_renamed_png() -> tuple[str, bytes]:
    """A text file renamed ``.png``."""
    return "notes.png", b"Shift report: line 3 stopped at 14:02.\nNothing else to say.\n" * 4


def eps_renamed_png() -> tuple[str, bytes]:
    """PostScript renamed ``.png``: Pillow's EPS plugin (Ghostscript) must never run."""
    return "drawing.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"


def html_renamed_jpg() -> tuple[str, bytes]:
    """An HTML page saved as ``.jpg`` (a broken download)."""
    return "download.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n"


def truncated_png() -> tuple[str, bytes]:
    """A PNG cut in the middle of its pixel data."""
    data = png(1)
    return "cut.png", data[: len(data) // 2]


def png_signature_only() -> tuple[str, bytes]:
    """Only the 8-byte PNG signature."""
    return "header_only.png", b"\x89PNG\r\n\x1a\n"


def truncated_jpeg() -> tuple[str, bytes]:
    """A JPEG cut in the middle of its scan data."""
    data = jpeg(2)
    return "cut.jpg", data[: len(data) // 2]


def png_zero_width() -> tuple[str, bytes]:
    """A PNG whose header says 0 x 64 pixels."""
    return "zero_width.png", png_with_header(0, 64)


def gray16_png() -> tuple[str, bytes]:
    """16-bit grayscale PNG (Pillow mode I;16), values over the whole 0..65535 range."""
    values = (texture(3)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    return "gray16.png", encode(Image.fromarray(values), "PNG")


def rgba_png() -> tuple[str, bytes]:
    """RGBA PNG with a partly transparent alpha channel."""
    rgba = np.concatenate([texture(4), np.full((SIDE, SIDE, 1), 200, np.uint8)], axis=2)
    rgba[: SIDE // 4, :, 3] = 0
    return "rgba.png", encode(Image.fromarray(rgba, "RGBA"), "PNG")


def palette_png() -> tuple[str, bytes]:
    """Palette (P mode) PNG."""
    image = Image.fromarray(texture(5)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return "palette.png", encode(image, "PNG")


def cmyk_jpeg() -> tuple[str, bytes]:
    """CMYK JPEG (as written by print workflows)."""
    return "cmyk.jpg", encode(Image.fromarray(texture(6)).convert("CMYK"), "JPEG", quality=90)


def one_pixel_png() -> tuple[str, bytes]:
    """A 1x1 image."""
    return "one_pixel.png", encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG")


def smaller_than_crop_png() -> tuple[str, bytes]:
    """16x16: smaller than the 64 px crop, but above the 8 px minimum: enlarged."""
    return "small16.png", png(7, side=16)


def decompression_bomb_png() -> tuple[str, bytes]:
    """A 60 kB-ish file whose header claims 30000 x 30000 (900 megapixels)."""
    return "bomb.png", png_with_header(30_000, 30_000)


def over_limit_png() -> tuple[str, bytes]:
    """Header says 10000 x 10000 (100 MP): above our 64 MP cap, below Pillow's own error."""
    return "huge.png", png_with_header(10_000, 10_000)


def animated_gif() -> tuple[str, bytes]:
    """A 3-frame animated GIF; the first frame is used."""
    frames = [Image.fromarray(texture(8 + i)).convert("P") for i in range(3)]
    return "animated.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:],
                                  duration=100, loop=0)


def multipage_tiff() -> tuple[str, bytes]:
    """A 3-page TIFF; the first page is used."""
    pages = [Image.fromarray(texture(11 + i)) for i in range(3)]
    return "pages.tiff", encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def exif_rotated_jpeg() -> tuple[str, bytes]:
    """A 64 wide x 32 high JPEG, left half dark, right half bright, with EXIF Orientation 6.

    Orientation 6 means "rotate 90 degrees clockwise to display". padim_core applies it, so
    the loaded image is 32 wide x 64 high with the dark half on *top*.
    """
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, 32:] = 230
    pixels[:, :32] = 20
    exif = Image.Exif()
    exif[0x0112] = 6
    return "rotated.jpg", encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())


def jpeg_named_png() -> tuple[str, bytes]:
    """JPEG bytes under a ``.png`` name: the content decides, not the suffix."""
    return "really_a_jpeg.png", jpeg(14)


def float_tiff() -> tuple[str, bytes]:
    """A 32-bit float TIFF (Pillow mode F) with values in [0, 1]."""
    values = texture(15)[..., 0].astype(np.float32) / 255.0
    return "float.tiff", encode(Image.fromarray(values, "F"), "TIFF")


def gray_alpha_png() -> tuple[str, bytes]:
    """Grayscale + alpha (LA) PNG."""
    la = np.stack([texture(16)[..., 0], np.full((SIDE, SIDE), 255, np.uint8)], axis=2)
    return "gray_alpha.png", encode(Image.fromarray(la, "LA"), "PNG")


def long_strip_png() -> tuple[str, bytes]:
    """2000 x 8 pixels: an extreme aspect ratio, still a valid image (squashed to square)."""
    strip = np.tile(texture(17, side=8), (1, 250, 1))
    return "strip.png", encode(Image.fromarray(strip), "PNG")


def thin_png() -> tuple[str, bytes]:
    """100 x 7 pixels: one side below the 8 px minimum."""
    return "thin.png", encode(Image.fromarray(np.full((7, 100, 3), 90, np.uint8)), "PNG")


def webp_image() -> tuple[str, bytes]:
    """A lossless WebP."""
    return "part.webp", encode(Image.fromarray(texture(18)), "WEBP", lossless=True)


def bmp_image() -> tuple[str, bytes]:
    """A BMP."""
    return "part.bmp", encode(Image.fromarray(texture(19)), "BMP")


_IMAGE_TABLE: list[tuple[str, Callable[[], tuple[str, bytes]], Outcome, str, str]] = [
    # id, builder, outcome, fragment, note (what the user gets)
    ("empty", empty_file, "rejected", "empty", "skipped: empty file"),
    ("text_as_png", text_renamed_png, "rejected", "not an image file",
     "skipped: not an image file"),
    ("eps_as_png", eps_renamed_png, "rejected", "not an image file",
     "skipped: not an image file (EPS/PSD/... decoders never run)"),
    ("html_as_jpg", html_renamed_jpg, "rejected", "not an image file",
     "skipped: not an image file"),
    ("truncated_png", truncated_png, "rejected", "truncated", "skipped: image data is truncated"),
    ("png_signature_only", png_signature_only, "rejected", "truncated",
     "skipped: damaged or truncated"),
    ("truncated_jpeg", truncated_jpeg, "rejected", "truncated",
     "skipped: image data is truncated"),
    ("zero_width", png_zero_width, "rejected", "damaged or truncated",
     "skipped: damaged or truncated"),
    ("gray16", gray16_png, "accepted", "", "accepted: scaled to 8 bit (value / 257)"),
    ("rgba", rgba_png, "accepted", "", "accepted: composited on black"),
    ("palette", palette_png, "accepted", "", "accepted: converted to RGB"),
    ("cmyk_jpeg", cmyk_jpeg, "accepted", "", "accepted: converted to RGB"),
    ("one_pixel", one_pixel_png, "rejected", "too small",
     "skipped: too small (each side must be at least 8 px)"),
    ("thin", thin_png, "rejected", "too small", "skipped: too small"),
    ("smaller_than_crop", smaller_than_crop_png, "accepted", "",
     "accepted: enlarged to the model size"),
    ("bomb_900mp", decompression_bomb_png, "rejected", "megapixels",
     "skipped before decoding: exceeds the 64 megapixel limit"),
    ("over_limit_100mp", over_limit_png, "rejected", "megapixels",
     "skipped before decoding: exceeds the 64 megapixel limit"),
    ("animated_gif", animated_gif, "accepted", "", "accepted: first frame"),
    ("multipage_tiff", multipage_tiff, "accepted", "", "accepted: first page"),
    ("exif_rotated", exif_rotated_jpeg, "accepted", "",
     "accepted: EXIF orientation applied (as the camera operator saw it)"),
    ("jpeg_named_png", jpeg_named_png, "accepted", "", "accepted: content decides, not suffix"),
    ("float_tiff", float_tiff, "accepted", "", "accepted: [0, 1] floats scaled to 0..255"),
    ("gray_alpha", gray_alpha_png, "accepted", "", "accepted"),
    ("long_strip", long_strip_png, "accepted", "", "accepted: squashed to a square"),
    ("webp", webp_image, "accepted", "", "accepted"),
    ("bmp", bmp_image, "accepted", "", "accepted"),
]


@cache
def image_cases() -> tuple[Case, ...]:
    """Every image case, good odd formats and bad files alike."""
    cases = []
    for case_id, build, outcome, fragment, note in _IMAGE_TABLE:
        name, data = build()
        cases.append(Case(case_id, name, data, outcome, fragment, note))
    return tuple(cases)


def accepted_images() -> list[Case]:
    """The image cases that must be converted and used."""
    return [c for c in image_cases() if c.outcome == "accepted"]


def rejected_images() -> list[Case]:
    """The image cases that must be skipped with a message."""
    return [c for c in image_cases() if c.outcome == "rejected"]


def image_case(case_id: str) -> Case:
    """One image case by id."""
    return next(c for c in image_cases() if c.id == case_id)


def good_images(n: int, start: int = 100, prefix: str = "good") -> list[tuple[str, bytes]]:
    """``n`` distinct good PNGs named ``{prefix}_000.png``..."""
    return [(f"{prefix}_{i:03d}.png", png(start + i)) for i in range(n)]


def write_folder(folder: Path, files: list[tuple[str, bytes]]) -> Path:
    """Write ``(name, bytes)`` pairs into ``folder`` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        (folder / name).write_bytes(data)
    return folder


#: File names a spreadsheet would run as formulas if written verbatim into a CSV cell.
FORMULA_NAMES: tuple[str, ...] = ("=HYPERLINK(1).png", "+1+1.png", "-2+3.png", "@SUM(1).png")


def is_formula_cell(cell: str) -> bool:
    """True if a CSV cell would be taken as a formula by Excel / LibreOffice."""
    return cell[:1] in ("=", "+", "-", "@", "\t", "\r")


# --------------------------------------------------------------------------- archives


def _patch_member_field(data: bytes, member: str, local_at: int, central_at: int,
                        value: int) -> bytes:
    """Overwrite one 4-byte field of ``member`` in its local and central headers."""
    patched = bytearray(data)
    encoded = member.encode()
    for signature, name_at, field_at in ((b"PK\x03\x04", 30, local_at),
                                         (b"PK\x01\x02", 46, central_at)):
        start = patched.index(signature)
        while patched[start + name_at: start + name_at + len(encoded)] != encoded:
            start = patched.index(signature, start + 4)
        patched[start + field_at: start + field_at + 4] = struct.pack("<I", value)
    return bytes(patched)


def symlink_member(name: str, target: str) -> zipfile.ZipInfo:
    """A zip entry that is a symbolic link to ``target`` when extracted naively."""
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)
    return info


@cache
def archive_cases() -> tuple[Case, ...]:
    """Zip uploads: rejected as a whole, or accepted with some members skipped."""
    good = good_images(3, start=200, prefix="ok")
    bomb = zip_of([*good, ("bomb.png", bytes(4 * 1024 * 1024))])
    liar = _patch_member_field(zip_of([*good, ("liar.png", bytes(3 * 1024 * 1024))]),
                               "liar.png", 22, 24, 1000)
    full = zip_of(good)
    return (
        Case("empty_zip", "empty.zip", zip_of([]), "rejected", "the archive is empty",
             "error: the archive is empty"),
        Case("empty_file_zip", "nothing.zip", b"", "rejected", "empty",
             "error: empty file"),
        Case("text_as_zip", "fake.zip", b"this is not an archive\n" * 10, "rejected",
             "not a zip archive", "error: not a zip archive"),
        Case("truncated_zip", "cut.zip", full[: len(full) // 2], "rejected",
             "damaged or truncated zip", "error: damaged or truncated zip archive"),
        Case("zip_bomb", "bomb.zip", bomb, "rejected", "possible zip bomb",
             "error before unpacking: compression ratio above 200:1"),
        Case("zip_lying_sizes", "liar.zip", liar, "rejected", "damaged zip",
             "error: a member larger than its header says; nothing is kept"),
        Case("path_traversal", "traversal.zip",
             zip_of([*good, ("../escape.png", png(1)), ("/abs/escape.png", png(2)),
                     ("a/../../escape2.png", png(3)), ("C:\\win\\escape.png", png(4))]),
             "accepted", note="unsafe members skipped, the rest used",
             skipped=(("../escape.png", "unsafe path"), ("/abs/escape.png", "unsafe path"),
                      ("a/../../escape2.png", "unsafe path"),
                      ("C:\\win\\escape.png", "unsafe path"))),
        Case("symlink_member", "links.zip",
             zip_of([*good, (symlink_member("link.png", "/etc/passwd"), b"/etc/passwd")]),
             "accepted", note="symbolic links skipped",
             skipped=(("link.png", "symbolic link"),)),
        Case("nested_zip", "nested.zip", zip_of([*good, ("inner.zip", zip_of(good))]),
             "accepted", note="nested archives skipped, not opened",
             skipped=(("inner.zip", "nested archives"),)),
        Case("non_image_members", "mixed.zip",
             zip_of([*good, ("readme.txt", b"hello"), ("model.pt", b"\x80\x02}q\x00.")]),
             "accepted", note="non-image members skipped",
             skipped=(("readme.txt", "not an image file"), ("model.pt", "not an image file"))),
        Case("only_nested_zip", "only_nested.zip", zip_of([("inner.zip", full)]), "rejected",
             "contains no image files", "error: contains no image files"),
        Case("bad_image_members", "bad_members.zip",
             zip_of([*good, text_renamed_png(), truncated_png()]), "accepted",
             note="unpacked; the bad images are skipped when decoded"),
    )


def archive_case(case_id: str) -> Case:
    """One archive case by id."""
    return next(c for c in archive_cases() if c.id == case_id)


# --------------------------------------------------------------------------- model files


class _OpenOnUnpickle:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if it ever runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (self.marker, "w")


def malicious_pickle(marker: Path) -> tuple[str, bytes]:
    """A pickle renamed ``.safetensors`` whose unpickling creates ``marker``.

    Building it runs nothing; only ``pickle.loads`` (or ``torch.load`` without
    ``weights_only``) would.
    """
    payload = {"mean": _OpenOnUnpickle(marker), "format": "padim-inspector-model"}
    return "model.safetensors", pickle.dumps(payload, protocol=2)


def malicious_torch_zip(marker: Path) -> tuple[str, bytes]:
    """The same payload in ``torch.save``'s zip container, renamed ``.safetensors``."""
    import torch

    buffer = io.BytesIO()
    torch.save({"mean": _OpenOnUnpickle(marker)}, buffer)
    return "torch_model.safetensors", buffer.getvalue()


def _split_safetensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(JSON header, tensor bytes) of a safetensors file."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8: 8 + n]), data[8 + n:]


def _join_safetensors(header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def with_meta(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The model file with its ``padim`` JSON metadata changed in place by ``change``."""
    header, body = _split_safetensors(data)
    meta = json.loads(header["__metadata__"]["padim"])
    change(meta)
    header["__metadata__"]["padim"] = json.dumps(meta)
    return _join_safetensors(header, body)


def _with_tensors(data: bytes, change: Callable[[dict[str, np.ndarray]], None]) -> bytes:
    """The model file with its tensors changed by ``change`` (metadata kept as is)."""
    import safetensors.numpy

    header, _ = _split_safetensors(data)
    tensors = safetensors.numpy.load(data)
    change(tensors)
    return safetensors.numpy.save(tensors, metadata=header["__metadata__"])


def other_version_model(data: bytes) -> bytes:
    """The model file claiming format version 99."""
    header, body = _split_safetensors(data)
    header["__metadata__"]["format_version"] = "99"
    return _join_safetensors(header, body)


def _shrink_mean(t: dict[str, np.ndarray]) -> None:
    t["mean"] = np.ascontiguousarray(t["mean"][:, :-1])


def _nan_mean(t: dict[str, np.ndarray]) -> None:
    t["mean"] = t["mean"].copy()
    t["mean"][0, 0] = np.nan


def _bad_channels(t: dict[str, np.ndarray]) -> None:
    t["channel_index"] = np.full_like(t["channel_index"], 10_000)


def _float_index(t: dict[str, np.ndarray]) -> None:
    t["channel_index"] = t["channel_index"].astype(np.float32)


def _drop_whitener(t: dict[str, np.ndarray]) -> None:
    del t["whitener_triu"]


def _lying_offsets(data: bytes) -> bytes:
    """Header says the mean tensor ends 1 GB into the file."""
    header, body = _split_safetensors(data)
    header["mean"]["data_offsets"][1] = 1 << 30
    return _join_safetensors(header, body)


def _huge_header_length(data: bytes) -> bytes:
    return struct.pack("<Q", 1 << 60) + data[8:]


def model_file_cases(good: bytes) -> tuple[Case, ...]:
    """Damaged, foreign and tampered variants of a good model file's bytes ``good``.

    (The pickle cases need a marker path: see :func:`malicious_pickle`.)
    """
    import safetensors.numpy

    def meta_case(change: Callable[[dict[str, Any]], None]) -> bytes:
        return with_meta(good, change)

    other_program = safetensors.numpy.save({"weight": np.zeros((4, 4), np.float32)},
                                           metadata={"format": "pt"})

    def grid_change(m: dict[str, Any]) -> None:
        m["grid"] = [m["grid"][0] + 1, m["grid"][1]]

    def unknown_backbone(m: dict[str, Any]) -> None:
        m["config"]["backbone"] = "vgg_unknown"

    def drop_config(m: dict[str, Any]) -> None:
        del m["config"]

    def d_change(m: dict[str, Any]) -> None:
        m["config"]["d"] = m["config"]["d"] + 1

    header, body = _split_safetensors(good)
    header["__metadata__"]["padim"] = "{not json"
    broken_json = _join_safetensors(header, body)
    return (
        Case("empty_model", "empty.safetensors", b"", "rejected", "empty",
             "error: file is empty"),
        Case("tiny_model", "tiny.safetensors", good[:5], "rejected", "truncated",
             "error: file is empty or truncated"),
        Case("short_text_as_model", "a.txt", b"hello\n", "rejected",
             "not a padim inspector model", "error: not a model file"),
        Case("truncated_model", "cut.safetensors", good[: len(good) // 2], "rejected",
             "truncated", "error: file is truncated"),
        Case("text_as_model", "notes.safetensors", b"just some text, not a model\n" * 8,
             "rejected", "not a padim inspector model", "error: not a model file"),
        Case("huge_header_length", "header.safetensors", _huge_header_length(good), "rejected",
             "not a padim inspector model", "error: not a model file"),
        Case("lying_offsets", "offsets.safetensors", _lying_offsets(good), "rejected",
             "truncated", "error: file is truncated"),
        Case("other_program", "other.safetensors", other_program, "rejected",
             "not a padim inspector model", "error: a safetensors file, but not ours"),
        Case("other_version", "future.safetensors", other_version_model(good), "rejected",
             "format version 99", "error: format version not supported"),
        Case("broken_metadata", "meta.safetensors", broken_json, "rejected",
             "metadata is missing or damaged", "error: metadata damaged"),
        Case("missing_config", "noconfig.safetensors", meta_case(drop_config), "rejected",
             "metadata is incomplete", "error: metadata incomplete"),
        Case("unknown_backbone", "vgg.safetensors", meta_case(unknown_backbone), "rejected",
             "unknown backbone", "error: unknown backbone"),
        Case("grid_mismatch", "grid.safetensors", meta_case(grid_change), "rejected",
             "has shape", "error: tensor shapes do not match the metadata"),
        Case("d_mismatch", "d.safetensors", meta_case(d_change), "rejected", "has shape",
             "error: tensor shapes do not match the metadata"),
        Case("tampered_shape", "shape.safetensors", _with_tensors(good, _shrink_mean),
             "rejected", "has shape", "error: tensor 'mean' has the wrong shape"),
        Case("tampered_dtype", "dtype.safetensors", _with_tensors(good, _float_index),
             "rejected", "channel_index", "error: tensor has the wrong type"),
        Case("missing_tensor", "nowhite.safetensors", _with_tensors(good, _drop_whitener),
             "rejected", "missing", "error: tensor missing"),
        Case("nan_tensor", "nan.safetensors", _with_tensors(good, _nan_mean), "rejected",
             "nan", "error: tensor contains NaN"),
        Case("bad_channel_index", "channels.safetensors", _with_tensors(good, _bad_channels),
             "rejected", "channel_index", "error: channel_index out of range"),
    )
