"""Tests for padim_core.archives.extract_zip: safe extraction of image members.

Every archive is built here, in memory or in tmp_path.
"""

from __future__ import annotations

import io
import stat
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from padim_core import archives
from padim_core.archives import ExtractedArchive, extract_zip
from padim_core.datasets import MVTecCategory, find_dataset_root
from padim_core.errors import InvalidInputError
from padim_core.images import load_image


def png_bytes(value: int = 100, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def make_zip(entries: dict[str, bytes] | list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return buffer.getvalue()


def all_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_extracts_images_keeps_structure_and_reports_the_rest(tmp_path: Path) -> None:
    data = make_zip(
        {
            "set/a.png": png_bytes(1),
            "set/sub/B.JPG": png_bytes(2),  # suffix decides; content is checked at load time
            "set/notes.txt": b"hello",
            "set/inner.zip": make_zip({"x.png": png_bytes()}),
            "set/data.tar.gz": b"\x1f\x8b",
            "__MACOSX/set/._a.png": b"mac metadata",
            "set/.DS_Store": b"finder",
        }
    )
    dest = tmp_path / "out"
    result = extract_zip(data, dest, name="upload.zip")
    assert isinstance(result, ExtractedArchive)
    assert result.files == [dest.resolve() / "set/a.png", dest.resolve() / "set/sub/B.JPG"]
    assert all_files(dest) == ["set/a.png", "set/sub/B.JPG"]
    assert sorted(result.skipped) == [
        ("set/data.tar.gz", "nested archives are not opened"),
        ("set/inner.zip", "nested archives are not opened"),
        ("set/notes.txt", "not an image file"),
    ]
    assert load_image(result.files[0])[0, 0].tolist() == [1, 1, 1]


def test_accepts_path_bytes_and_file_like(tmp_path: Path) -> None:
    data = make_zip({"a.png": png_bytes()})
    path = tmp_path / "images.zip"
    path.write_bytes(data)
    stream = io.BytesIO(data)
    stream.read()  # an upload that was read once already
    for index, source in enumerate([path, str(path), data, stream]):
        result = extract_zip(source, tmp_path / f"d{index}")
        assert [p.name for p in result.files] == ["a.png"]


def test_empty_zip_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as err:
        extract_zip(make_zip({}), tmp_path / "d", name="empty.zip")
    assert str(err.value) == "empty.zip: the archive is empty"


def test_zip_without_images_names_what_it_found(tmp_path: Path) -> None:
    data = make_zip([("docs/", b""), ("docs/readme.txt", b"x"), ("model.pt", b"y")])
    with pytest.raises(InvalidInputError) as err:
        extract_zip(data, tmp_path / "d", name="docs.zip")
    assert str(err.value) == "docs.zip: contains no image files (found: docs/readme.txt, model.pt)"


def test_empty_and_non_zip_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"^up\.zip: empty file$"):
        extract_zip(b"", tmp_path / "d", name="up.zip")
    with pytest.raises(InvalidInputError, match=r"^photo\.zip: not a zip archive$"):
        extract_zip(png_bytes(), tmp_path / "d", name="photo.zip")
    path = tmp_path / "fake.zip"
    path.write_text("not a zip at all")
    with pytest.raises(InvalidInputError) as err:
        extract_zip(path, tmp_path / "d")
    assert str(err.value) == f"{path}: not a zip archive"
    with pytest.raises(InvalidInputError, match="file not found"):
        extract_zip(tmp_path / "missing.zip", tmp_path / "d")


def test_truncated_zip_is_reported_as_damaged(tmp_path: Path) -> None:
    data = make_zip({"a.png": png_bytes(), "b.png": png_bytes(3)})
    with pytest.raises(InvalidInputError) as err:
        extract_zip(data[: len(data) // 2], tmp_path / "d", name="cut.zip")
    assert err.value.source == "cut.zip"
    assert err.value.problem.startswith("damaged or truncated zip archive")


def test_corrupt_member_data_is_rejected_and_cleaned_up(tmp_path: Path) -> None:
    payload = np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    data = bytearray(make_zip({"a.png": png_bytes(), "z.png": payload}))
    start = data.rindex(b"z.png", 0, data.index(b"PK\x01\x02")) + 5 + 1000
    data[start : start + 500] = bytes(500)
    dest = tmp_path / "d"
    with pytest.raises(InvalidInputError) as err:
        extract_zip(bytes(data), dest, name="bad.zip")
    assert err.value.source == "bad.zip"
    assert err.value.problem.startswith("damaged zip archive")
    assert all_files(dest) == []


def test_path_traversal_members_never_escape(tmp_path: Path) -> None:
    entries = []
    for name in [
        "../evil.png",
        "a/../../evil.png",
        "/abs/evil.png",
        "C:/evil.png",
        "..\\evil.png",
        "ok/good.png",
    ]:
        info = zipfile.ZipInfo(name)
        info.filename = name  # keep the name exactly as a hostile tool would write it
        entries.append((info, png_bytes()))
    dest = tmp_path / "deep" / "dest"
    result = extract_zip(make_zip(entries), dest, name="evil.zip")
    assert [p.relative_to(dest.resolve()).as_posix() for p in result.files] == ["ok/good.png"]
    unsafe = [member for member, reason in result.skipped if reason.startswith("unsafe path")]
    assert sorted(unsafe) == sorted(
        ["../evil.png", "a/../../evil.png", "/abs/evil.png", "C:/evil.png", "..\\evil.png"]
    )
    assert [p for p in tmp_path.rglob("*evil*")] == []
    assert not Path("/abs/evil.png").exists()


def test_symlink_members_are_skipped(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = make_zip([(link, b"/etc/passwd"), ("real.png", png_bytes())])
    dest = tmp_path / "d"
    result = extract_zip(data, dest)
    assert [p.name for p in result.files] == ["real.png"]
    assert result.skipped == [("link.png", "symbolic links are not extracted")]
    assert not (dest / "link.png").exists()


def test_existing_symlink_in_dest_cannot_lead_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "escape").symlink_to(outside, target_is_directory=True)
    data = make_zip({"escape/x.png": png_bytes(), "fine.png": png_bytes()})
    result = extract_zip(data, dest)
    assert [p.name for p in result.files] == ["fine.png"]
    assert list(outside.iterdir()) == []
    assert result.skipped[0][0] == "escape/x.png"


def test_duplicate_and_password_protected_members(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = make_zip([("a.png", png_bytes(1)), ("a.png", png_bytes(2)), ("locked.png", b"x")])
    data = patch_headers(data, "locked.png", 6, 8, 0x1, "<H")  # the "encrypted" flag bit
    dest = tmp_path / "d"
    result = extract_zip(data, dest)
    assert [p.name for p in result.files] == ["a.png"]
    assert sorted(result.skipped) == [
        ("a.png", "duplicate entry"),
        ("locked.png", "password-protected"),
    ]
    assert load_image(dest / "a.png")[0, 0].tolist() == [1, 1, 1]


@pytest.mark.timeout(120)
def test_many_small_bomb_members_are_refused_together(tmp_path: Path) -> None:
    """The security review: 100 members of 1 MiB - 1 zero bytes (each under the per-member
    ratio floor) in a 110 KiB zip were all unpacked; 2047 of them would be 2 GB."""
    bomb = tmp_path / "many.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(20):
            archive.writestr(f"p{i:04d}.png", bytes((1 << 20) - 1))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(InvalidInputError, match="compressed .*:1 together, more than the "
                                                "200:1 allowed"):
        extract_zip(bomb, dest, name="many.zip")
    assert list(dest.iterdir()) == []


def test_zip_bomb_member_is_refused_without_unpacking(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("fine.png", png_bytes())
        with archive.open("bomb.png", "w", force_zip64=True) as member:
            for _ in range(300):  # 300 MB of zeros, about 300 KB compressed
                member.write(chunk)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    dest = tmp_path / "d"
    started = time.perf_counter()
    with pytest.raises(InvalidInputError) as err:
        extract_zip(bomb, dest, name="bomb.zip")
    assert time.perf_counter() - started < 5.0
    assert err.value.source == "bomb.zip"
    assert err.value.problem.startswith("bomb.png is compressed ")
    assert err.value.problem.endswith("more than the 200:1 allowed (possible zip bomb)")
    assert all_files(dest) == []


def patch_headers(
    data: bytes, member: str, local_at: int, central_at: int, value: int, fmt: str = "<I"
) -> bytes:
    """Overwrite one field of ``member`` in both its local and its central header."""
    patched = bytearray(data)
    encoded = member.encode()
    width = struct.calcsize(fmt)
    for signature, name_at, field_at in (
        (b"PK\x03\x04", 30, local_at),
        (b"PK\x01\x02", 46, central_at),
    ):
        start = patched.index(signature)
        while patched[start + name_at : start + name_at + len(encoded)] != encoded:
            start = patched.index(signature, start + 4)
        patched[start + field_at : start + field_at + width] = struct.pack(fmt, value)
    return bytes(patched)


def set_uncompressed_size(data: bytes, member: str, size: int) -> bytes:
    """Make the headers of ``member`` lie about its uncompressed size."""
    return patch_headers(data, member, 22, 24, size)


def test_member_lying_about_its_size_cannot_write_more(tmp_path: Path) -> None:
    real = bytes(5 * 1024 * 1024)  # 5 MB, declared as 1000 bytes
    data = set_uncompressed_size(
        make_zip({"a.png": png_bytes(), "liar.png": real}), "liar.png", 1000
    )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.getinfo("liar.png").file_size == 1000
    dest = tmp_path / "d"
    with pytest.raises(InvalidInputError) as err:
        extract_zip(data, dest, name="liar.zip")
    assert err.value.source == "liar.zip"
    assert "damaged zip archive" in err.value.problem
    assert all_files(dest) == []  # a.png, written before the failure, is removed again


def test_member_and_size_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_ARCHIVE_MEMBERS", 3)
    many = make_zip({f"{i}.png": png_bytes() for i in range(5)})
    with pytest.raises(InvalidInputError) as err:
        extract_zip(many, tmp_path / "d1", name="many.zip")
    assert str(err.value) == "many.zip: has 5 entries, more than the limit of 3"
    # The same cap holds where zipfile's end-record reader is not available.
    monkeypatch.setattr(archives, "_declared_entry_count", lambda stream: None)
    with pytest.raises(InvalidInputError) as err:
        extract_zip(many, tmp_path / "d1", name="many.zip")
    assert str(err.value) == "many.zip: has 5 files, more than the limit of 3"
    assert all_files(tmp_path / "d1") == []
    monkeypatch.setattr(archives, "MAX_ARCHIVE_MEMBERS", 5000)
    monkeypatch.setattr(archives, "MAX_ARCHIVE_UNCOMPRESSED_MB", 1)
    rng = np.random.default_rng(0)
    big = {f"{i}.png": rng.integers(0, 256, 700_000, dtype=np.uint8).tobytes() for i in range(2)}
    with pytest.raises(InvalidInputError) as err:
        extract_zip(make_zip(big), tmp_path / "d2", name="big.zip")
    assert str(err.value) == "big.zip: images unpack to 1.3 MB, more than the limit of 1 MB"
    assert all_files(tmp_path / "d2") == []


def test_dest_dir_contents_from_before_are_kept_on_error(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    (dest / "sub").mkdir(parents=True)
    (dest / "keep.txt").write_text("mine")
    (dest / "sub" / "keep.png").write_bytes(png_bytes())
    data = set_uncompressed_size(
        make_zip({"sub/new.png": png_bytes(), "z.png": bytes(100_000)}), "z.png", 10
    )
    with pytest.raises(InvalidInputError):
        extract_zip(data, dest)
    assert all_files(dest) == ["keep.txt", "sub/keep.png"]


def test_mvtec_layout_zip_wrapped_in_one_folder(tmp_path: Path) -> None:
    data = make_zip(
        [
            ("bottle/", b""),
            ("bottle/train/good/000.png", png_bytes(10)),
            ("bottle/train/good/001.png", png_bytes(11)),
            ("bottle/test/good/000.png", png_bytes(12)),
            ("bottle/test/broken_large/000.png", png_bytes(13)),
            ("bottle/ground_truth/broken_large/000_mask.png", png_bytes(255)),
            ("bottle/license.txt", b"CC BY-NC-SA 4.0"),
        ]
    )
    dest = tmp_path / "upload"
    result = extract_zip(data, dest, name="bottle.zip")
    assert len(result.files) == 5
    assert result.skipped == [("bottle/license.txt", "not an image file")]
    root = find_dataset_root(dest)
    assert root == dest.resolve() / "bottle"
    category = MVTecCategory.from_folder(root)
    assert [p.name for p in category.train] == ["000.png", "001.png"]
    assert [
        (item.defect_type, item.is_anomalous, item.mask_path is not None) for item in category.test
    ] == [("broken_large", True, True), ("good", False, False)]
