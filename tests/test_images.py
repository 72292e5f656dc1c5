"""Tests for padim_core.images: safe decoding, colour conversion, resizing, folder listing.

Every fixture is generated here in tmp_path or memory.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from padim_core.errors import InvalidInputError
from padim_core.images import (
    input_name,
    iter_image_files,
    load_image,
    load_mask,
    resize_and_crop,
    resize_and_crop_mask,
)
from padim_core.limits import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(height: int = 40, width: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but whose pixel data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- basic sources


def test_png_roundtrip_from_every_source_kind(tmp_path: Path) -> None:
    pixels = noise()
    data = encode(Image.fromarray(pixels), "PNG")
    path = tmp_path / "part.png"
    path.write_bytes(data)
    consumed = io.BytesIO(data)
    consumed.read()  # position at the end, as after a previous read of an upload

    class ReadOnly:
        def read(self) -> bytes:
            return data

    sources = [
        path,
        str(path),
        data,
        bytearray(data),
        consumed,
        ReadOnly(),
        Image.open(io.BytesIO(data)),
        pixels,
    ]
    for source in sources:
        out = load_image(source)
        assert out.shape == (40, 60, 3)
        assert out.dtype == np.uint8
        assert out.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(out, pixels)


def test_array_input_is_copied_not_aliased() -> None:
    pixels = noise()
    before = pixels.copy()
    out = load_image(pixels)
    out[...] = 7
    np.testing.assert_array_equal(pixels, before)


def test_text_file_renamed_png_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_text("this is not an image\n")
    with pytest.raises(InvalidInputError) as err:
        load_image(path)
    assert str(err.value) == f"{path}: not an image file (cannot identify image format)"
    with pytest.raises(InvalidInputError) as err:
        load_image(path, name="photo.png")
    assert str(err.value) == "photo.png: not an image file (cannot identify image format)"
    assert err.value.source == "photo.png"


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InvalidInputError, match=r"empty\.jpg: empty file$"):
        load_image(path)
    with pytest.raises(InvalidInputError, match=r"^upload\.png: empty file$"):
        load_image(b"", name="upload.png")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"nope\.png: file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InvalidInputError, match="is a folder, not an image file"):
        load_image(tmp_path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_images_are_rejected(tmp_path: Path, fmt: str, keep: float) -> None:
    data = encode(Image.fromarray(noise(120, 160)), fmt)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InvalidInputError) as err:
        load_image(path, name=path.name)
    assert str(err.value) == f"{path.name}: image data is truncated"


def test_header_only_fragment_is_reported_as_damaged() -> None:
    data = encode(Image.fromarray(noise()), "PNG")
    with pytest.raises(InvalidInputError) as err:
        load_image(data[:12], name="cut.png")
    assert err.value.source == "cut.png"
    assert "truncated" in err.value.problem


def test_nothing_here_turns_on_pillow_truncated_loading() -> None:
    import padim_core.archives  # noqa: F401
    import padim_core.datasets  # noqa: F401
    import padim_core.images  # noqa: F401

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_pixel_data_is_rejected() -> None:
    data = bytearray(encode(Image.fromarray(noise(64, 64)), "PNG"))
    start = data.index(b"IDAT") + 20
    data[start : start + 200] = bytes(200)  # zero out compressed data (CRC now wrong too)
    with pytest.raises(InvalidInputError) as err:
        load_image(bytes(data), name="bad.png")
    assert err.value.source == "bad.png"
    assert err.value.problem.startswith(("image data is corrupt", "image data is truncated"))
    assert "\n" not in str(err.value)


def test_other_image_formats_are_not_opened() -> None:
    data = encode(Image.fromarray(noise()), "PCX")
    with pytest.raises(InvalidInputError, match="cannot identify image format"):
        load_image(data, name="scan.pcx")


# --------------------------------------------------------------------------- size limits


def test_decompression_bomb_header_rejected_before_decoding() -> None:
    data = png_with_header(100_000, 100_000)
    assert len(data) < 200
    started = time.perf_counter()
    with pytest.raises(InvalidInputError) as err:
        load_image(data, name="big.png")
    assert time.perf_counter() - started < 2.0
    assert err.value.source == "big.png"
    assert err.value.problem == "10,000 megapixels exceeds the limit of 64 megapixels"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("width,height", [(9000, 9000), (12000, 8000)])
def test_over_limit_header_names_its_size(width: int, height: int) -> None:
    # 81 MP is below Pillow's own warning limit; 96 MP triggers Pillow's warning.
    assert width * height > MAX_IMAGE_PIXELS
    started = time.perf_counter()
    with pytest.raises(InvalidInputError) as err:
        load_image(png_with_header(width, height), name="big.png")
    assert time.perf_counter() - started < 2.0
    assert str(err.value) == f"big.png: {width}x{height} pixels exceeds the limit of 64 megapixels"


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_raised_as_error_is_still_a_clean_message() -> None:
    with pytest.raises(InvalidInputError) as err:
        load_image(png_with_header(12000, 8000), name="big.png")
    assert str(err.value) == "big.png: 12000x8000 pixels exceeds the limit of 64 megapixels"


def test_over_limit_array_and_pil_image_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="8001x8000 pixels exceeds"):
        load_image(np.zeros((8000, 8001), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="8001x8000 pixels exceeds"):
        load_image(Image.new("L", (8001, 8000)))


def test_one_pixel_image_is_too_small() -> None:
    data = encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG")
    with pytest.raises(InvalidInputError) as err:
        load_image(data, name="dot.png")
    assert str(err.value) == (
        f"dot.png: 1x1 pixels is too small (each side must be at least {MIN_IMAGE_SIDE} pixels)"
    )
    with pytest.raises(InvalidInputError, match="100x4 pixels is too small"):
        load_image(np.zeros((4, 100, 3), dtype=np.uint8))


def test_minimum_side_is_accepted() -> None:
    side = MIN_IMAGE_SIDE
    assert load_image(np.zeros((side, side), dtype=np.uint8)).shape == (side, side, 3)


# --------------------------------------------------------------------------- colour modes


def test_sixteen_bit_grayscale_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32896, 65535, 1000, 40000, 65000, 12345]] * 8, dtype=np.uint16)
    image = Image.fromarray(values)
    data = encode(image, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = load_image(data)
    assert out.shape == (8, 8, 3)
    assert out[0, :4, 0].tolist() == [0, 1, 128, 255]
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    expected = np.rint(values.astype(float) / 257).astype(np.uint8)
    assert np.abs(out[..., 1].astype(int) - expected).max() <= 1


def test_sixteen_bit_tiff_and_mode_i() -> None:
    values = np.full((10, 10), 65535, dtype=np.uint16)
    assert load_image(encode(Image.fromarray(values), "TIFF"))[0, 0].tolist() == [255] * 3
    mode_i = Image.fromarray(np.full((10, 10), 32896, dtype=np.int32), mode="I")
    assert load_image(mode_i)[0, 0].tolist() == [128] * 3


def test_rgba_is_composited_on_black() -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[0, :, 3] = 255
    rgba[1, :, 3] = 0
    rgba[2, :, 3] = 128
    for source in (encode(Image.fromarray(rgba, "RGBA"), "PNG"), rgba):
        out = load_image(source)
        assert out[0, 0].tolist() == [200, 100, 50]
        assert out[1, 0].tolist() == [0, 0, 0]
        assert out[2, 0].tolist() == [100, 50, 25]


def test_gray_alpha_la_png() -> None:
    la = Image.fromarray(
        np.dstack([np.full((10, 10), 200, np.uint8), np.full((10, 10), 255, np.uint8)]), "LA"
    )
    assert load_image(encode(la, "PNG"))[5, 5].tolist() == [200, 200, 200]


def test_palette_png_with_and_without_transparency() -> None:
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    palette.putpixel((0, 0), 0)
    out = load_image(encode(palette, "PNG"))
    assert out[5, 5].tolist() == [10, 200, 30]
    assert out[0, 0].tolist() == [0, 0, 0]
    transparent = encode(palette, "PNG", transparency=1)
    assert load_image(transparent)[5, 5].tolist() == [0, 0, 0]


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    red = load_image(data)[8, 8].astype(int)
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_grayscale_and_one_bit() -> None:
    gray = np.tile(np.arange(0, 250, 25, dtype=np.uint8), (10, 1))
    out = load_image(encode(Image.fromarray(gray), "PNG"))
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 1], gray)
    bits = Image.new("1", (10, 10), 0)
    bits.putpixel((3, 4), 1)
    out = load_image(encode(bits, "PNG"))
    assert out[4, 3].tolist() == [255, 255, 255]
    assert int(out.sum()) == 255 * 3


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    assert load_image(data, name="anim.gif")[0, 0].tolist() == [255, 0, 0]


def test_multipage_tiff_uses_first_page() -> None:
    pages = [Image.new("RGB", (16, 12), (0, 200, 0)), Image.new("RGB", (30, 30), (9, 9, 9))]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = load_image(data)
    assert out.shape == (12, 16, 3)
    assert out[0, 0].tolist() == [0, 200, 0]


def test_exif_orientation_is_applied() -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high as stored
    stored[:5, :5] = 255  # white mark at the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(data)
    assert out.shape == (40, 20, 3)
    # After a 90-degree clockwise turn the stored top-left lands at the top-right.
    assert out[1, 18].min() > 200
    assert out[1, 1].max() < 50


def test_float_and_uint16_arrays() -> None:
    floats = np.tile(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), (8, 3))
    out = load_image(floats)
    assert out[0, :3, 0].tolist() == [0, 128, 255]
    wide = np.full((8, 8, 3), 65535, dtype=np.uint16)
    assert load_image(wide)[0, 0].tolist() == [255, 255, 255]
    assert load_image(np.ones((8, 8, 1), dtype=bool))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    "array,problem",
    [
        (np.full((8, 8), 2.0), "float image values must be in [0, 1]"),
        (np.full((8, 8), np.nan), "NaN or infinite"),
        (np.full((8, 8), 300, dtype=np.int64), "values must be in 0..255"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "is not an image"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), "is not an image"),
        (np.zeros((8, 8), dtype=np.complex64), "unsupported pixel type"),
    ],
)
def test_bad_arrays_are_rejected(array: np.ndarray, problem: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        load_image(array, name="frame")
    assert err.value.source == "frame"
    assert problem in err.value.problem


# --------------------------------------------------------------------------- masks


def test_load_mask_variants(tmp_path: Path) -> None:
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[2:4, 3:7] = 255
    path = tmp_path / "000_mask.png"
    Image.fromarray(mask).save(path)
    out = load_mask(path)
    assert out.dtype == bool and out.shape == (10, 12)
    assert int(out.sum()) == 8 and out[2, 3] and not out[0, 0]
    labels = np.zeros((10, 10), dtype=np.uint16)
    labels[5, 5] = 1  # a 16-bit label mask: 1 would vanish if scaled to 8 bit
    assert int(load_mask(encode(Image.fromarray(labels), "PNG")).sum()) == 1
    rgb = np.zeros((10, 10, 3), dtype=np.uint8)
    rgb[1, 1] = (0, 0, 9)
    assert np.argwhere(load_mask(rgb)).tolist() == [[1, 1]]
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[0, 0, 3] = 255
    assert np.argwhere(load_mask(encode(Image.fromarray(rgba, "RGBA"), "PNG"))).tolist() == [[0, 0]]
    with pytest.raises(InvalidInputError, match=r"^m\.png: not an image file"):
        load_mask(b"garbage", name="m.png")


# --------------------------------------------------------------------------- resizing


def test_resize_and_crop_shapes_and_dtype() -> None:
    for shape in [(10, 10, 3), (300, 20, 3), (20, 300, 3), (900, 700, 3), (256, 256, 3)]:
        out = resize_and_crop(np.zeros(shape, dtype=np.uint8), 256, 224)
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
        assert out.flags["C_CONTIGUOUS"]


def test_smaller_than_crop_image_is_enlarged() -> None:
    small = load_image(np.full((9, 9, 3), 77, dtype=np.uint8))
    out = resize_and_crop(small, 256, 224)
    assert out.shape == (224, 224, 3)
    assert (out == 77).all()


def test_center_crop_offsets_match_torchvision() -> None:
    image = np.arange(256 * 256 * 3, dtype=np.uint32).reshape(256, 256, 3) % 251
    image = image.astype(np.uint8)
    np.testing.assert_array_equal(resize_and_crop(image, 256, 224), image[16:240, 16:240])
    np.testing.assert_array_equal(resize_and_crop(image, 256, 255), image[0:255, 0:255])


def test_shrinking_uses_area_interpolation() -> None:
    # One bright pixel in the middle of every 3x3 block: averaging gives 255 / 9 everywhere,
    # while point sampling (INTER_LINEAR at exactly 3x) would hit the bright pixels only.
    rows, cols = np.indices((768, 768))
    dots = np.where((rows % 3 == 1) & (cols % 3 == 1), 255, 0).astype(np.uint8)
    out = resize_and_crop(np.dstack([dots] * 3), 256, 256)
    assert np.unique(out).tolist() == [28]


def test_resize_rejects_bad_geometry() -> None:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(InvalidInputError, match="crop: 300 is larger than image_size 256"):
        resize_and_crop(image, 256, 300)
    with pytest.raises(InvalidInputError, match="image_size: must be a positive whole number"):
        resize_and_crop(image, 0, 0)
    with pytest.raises(InvalidInputError, match="expected an HxWx3 uint8 array"):
        resize_and_crop(image.astype(np.float32), 64, 32)


def test_resize_and_crop_mask() -> None:
    mask = np.zeros((100, 100), dtype=bool)
    mask[40:60, 40:60] = True
    out = resize_and_crop_mask(mask, 200, 180)
    assert out.dtype == bool and out.shape == (180, 180)
    # The 20x20 block doubles to 40x40 and moves by the 10-pixel crop offset.
    assert int(out.sum()) == 1600
    assert out[70:110, 70:110].all()
    small = resize_and_crop_mask(np.ones((8, 8), dtype=bool), 256, 224)
    assert small.shape == (224, 224) and small.all()


# --------------------------------------------------------------------------- folders, names


def test_iter_image_files_and_bad_files_in_a_folder(tmp_path: Path) -> None:
    good = encode(Image.fromarray(noise()), "PNG")
    (tmp_path / "good.png").write_bytes(good)
    (tmp_path / "UPPER.JPG").write_bytes(encode(Image.fromarray(noise()), "JPEG"))
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "empty.bmp").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(good)
    (tmp_path / "sub.png").mkdir()
    files = iter_image_files(tmp_path)
    assert [p.name for p in files] == ["UPPER.JPG", "cut.png", "empty.bmp", "good.png", "text.png"]
    problems = {}
    for path in files:
        try:
            load_image(path, name=path.name)
        except InvalidInputError as err:
            problems[err.source] = err.problem
    assert problems == {
        "cut.png": "image data is truncated",
        "empty.bmp": "empty file",
        "text.png": "not an image file (cannot identify image format)",
    }


def test_iter_image_files_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="folder not found"):
        iter_image_files(tmp_path / "missing")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match=r"a\.png: is not a folder"):
        iter_image_files(tmp_path / "a.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(InvalidInputError) as err:
        iter_image_files(empty)
    assert err.value.source == str(empty)
    assert err.value.problem.startswith("contains no image files")


def test_iter_image_files_recursive(tmp_path: Path) -> None:
    png = encode(Image.fromarray(noise()), "PNG")
    for rel in ("b/2.png", "b/10.png", "a/x/1.png", "top.png", "a/0.jpg", ".hidden/1.png",
                "__MACOSX/a/1.png", "a/.dot.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(png)
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)   # never followed
    files = iter_image_files(tmp_path, recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "a/0.jpg", "a/x/1.png", "b/10.png", "b/2.png", "top.png"]
    assert [p.name for p in iter_image_files(tmp_path)] == ["top.png"]


def test_iter_image_files_names_the_subfolders_that_hold_images(tmp_path: Path) -> None:
    png = encode(Image.fromarray(noise()), "PNG")
    for rel in ("good/0.png", "good/1.png", "scratch/0.png", "empty/readme.txt",
                ".hidden/0.png", "deep/er/0.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(png)
    with pytest.raises(InvalidInputError) as err:
        iter_image_files(tmp_path)
    assert err.value.problem.startswith("contains no image files")
    # one level looked at: deep/er is not counted, hidden and empty folders are not named
    assert "its subfolders (good, scratch) hold 3: include them with --recursive" in \
        err.value.problem
    assert len(iter_image_files(tmp_path, recursive=True)) == 4
    empty = tmp_path / "empty"
    with pytest.raises(InvalidInputError) as err:
        iter_image_files(empty, recursive=True)
    assert "subfolders" not in err.value.problem


def test_image_extensions_cover_the_documented_suffixes() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"} == IMAGE_EXTENSIONS


def test_input_name() -> None:
    assert input_name(Path("/data/set/part 1.png"), 3) == "part 1.png"
    assert input_name("rel/x.jpg", 0) == "x.jpg"
    assert input_name(np.zeros((2, 2)), 4) == "image_4"
    assert input_name(b"abc", 2) == "image_2"
    named = io.BytesIO(b"")
    named.name = "upload.png"
    assert input_name(named, 1) == "upload.png"
    assert input_name(io.BytesIO(b""), 5) == "image_5"
    assert input_name(Image.new("RGB", (2, 2)), 6) == "image_6"


def test_input_name_of_opened_pil_image(tmp_path: Path) -> None:
    path = tmp_path / "opened.png"
    Image.new("RGB", (8, 8)).save(path)
    with Image.open(path) as image:
        assert input_name(image, 0) == "opened.png"


@pytest.mark.parametrize("src, size, crop", [(256, 224, 224), (300, 224, 200), (97, 224, 224),
                                             (1024, 224, 224)])
def test_a_mask_lands_where_its_image_does(src: int, size: int, crop: int) -> None:
    """Ground-truth masks were resized with INTER_NEAREST, which is not centre-aligned: they
    sat ~0.45 px down and right of their images (transistor AUPRO 0.9260 instead of 0.9242).
    A binary mask cannot follow every fractional edge (up to ~0.35 px for one bar), but over
    many positions it must not lean to one side."""
    def centroid(weights: np.ndarray) -> np.ndarray:
        rows, cols = np.indices(weights.shape)
        return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()

    shifts = []
    for offset in range(0, 40, 3):
        mask = np.zeros((src, src), bool)
        top, left = src // 3 + offset % 7, src // 2 + offset
        mask[top:top + max(3, src // 20), left:left + max(5, src // 12)] = True
        image = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)
        picture = resize_and_crop(image, size, crop)[..., 0].astype(float)
        label = resize_and_crop_mask(mask, size, crop).astype(float)
        shifts.append(centroid(label) - centroid(picture))
    assert np.abs(np.mean(shifts, axis=0)).max() < 0.15
