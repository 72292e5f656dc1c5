"""Safe extraction of the image files in a zip archive (uploads of image sets).

Only members whose suffix is in ``limits.IMAGE_EXTENSIONS`` are written; everything else
is reported in ``ExtractedArchive.skipped`` with a reason. Nothing is ever written outside
``dest_dir``: absolute paths, drive letters, ``..`` components and symbolic links are
skipped. The member count, the total unpacked size (declared *and* counted while
streaming, so a lying header cannot bomb the disk) and each member's compression ratio are
capped by the values in ``padim_core.limits``. Folder structure inside the archive is kept
(MVTec-layout zips need it); use ``datasets.find_dataset_root`` to find the category folder.

Hidden entries (any path part starting with ".", e.g. macOS ``._x.png``) and the
``__MACOSX/`` folder are operating-system litter: they are skipped without being reported.
Members are copied as bytes; their image data is only checked when loaded with
``images.load_image``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from padim_core.errors import InvalidInputError
from padim_core.limits import (
    COMPRESSION_RATIO_MIN_BYTES,
    IMAGE_EXTENSIONS,
    MAX_ARCHIVE_MEMBERS,
    MAX_ARCHIVE_UNCOMPRESSED_MB,
    MAX_COMPRESSION_RATIO,
)

#: Suffixes of archives found inside an archive; they are reported, never opened.
NESTED_ARCHIVE_EXTENSIONS: frozenset[str] = frozenset(
    {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst"}
)

_CHUNK = 1024 * 1024
_MB = 1024 * 1024


@dataclass
class ExtractedArchive:
    """Result of :func:`extract_zip`.

    ``files``: the extracted image files (absolute paths under dest_dir), sorted.
    ``skipped``: ``(member name, reason)`` for each archive member that was not extracted.
    """

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _archive_name(source: Any, name: str | None) -> str:
    """Name for error messages: caller's name, the path, the object's name, or a label."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    label = getattr(source, "name", None)
    if isinstance(label, str) and label:
        return Path(label).name
    return "archive"


def _open_source(source: Any, where: str) -> BinaryIO | str:
    """A seekable binary stream or path for ZipFile; empty or missing input is an error."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(
                where, "file not found" if not path.exists() else "is not a file"
            )
        if path.stat().st_size == 0:
            raise InvalidInputError(where, "empty file")
        return str(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "getvalue"):  # BytesIO, Streamlit UploadedFile: whole buffer
        data = source.getvalue()
    elif hasattr(source, "read"):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            source.seek(0)
        data = source.read()
    else:
        raise TypeError(f"unsupported archive source type: {type(source).__name__}")
    if not data:
        raise InvalidInputError(where, "empty file")
    return io.BytesIO(data)


def _declared_entry_count(fp: BinaryIO | str) -> int | None:
    """Entry count from the end-of-central-directory record, read before ZipFile parses
    the directory (a 200 MB directory of tiny entries would otherwise eat gigabytes).

    Uses zipfile's own reader; returns None where it is unavailable or finds no record.
    """
    reader = getattr(zipfile, "_EndRecData", None)
    index = getattr(zipfile, "_ECD_ENTRIES_TOTAL", None)
    if reader is None or index is None:
        return None
    try:
        if isinstance(fp, str):
            with open(fp, "rb") as handle:
                record = reader(handle)
        else:
            record = reader(fp)
            fp.seek(0)
    except (OSError, ValueError, TypeError, IndexError):
        return None
    return int(record[index]) if record else None


def _safe_relative(member: str) -> PurePosixPath | None:
    """The member's path relative to dest_dir, or None if it could escape it."""
    text = member.replace("\\", "/")
    if text.startswith("/") or (len(text) >= 2 and text[1] == ":"):
        return None
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." or ":" in part for part in parts):
        return None
    return PurePosixPath(*parts)


def _is_litter(relative: PurePosixPath) -> bool:
    """macOS/Windows metadata: hidden parts, __MACOSX/, Thumbs.db."""
    return (
        any(part.startswith(".") for part in relative.parts)
        or relative.parts[0] == "__MACOSX"
        or relative.name.lower() in ("thumbs.db", "desktop.ini")
    )


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _suffixes(relative: PurePosixPath) -> set[str]:
    return {suffix.lower() for suffix in relative.suffixes[-2:]}


def _ratio_too_high(info: zipfile.ZipInfo) -> bool:
    if info.file_size < COMPRESSION_RATIO_MIN_BYTES:
        return False
    return info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)


def _plan(
    archive: zipfile.ZipFile, where: str
) -> tuple[list[tuple[zipfile.ZipInfo, PurePosixPath]], list[tuple[str, str]]]:
    """Choose the members to extract and the reasons for skipping the others.

    Raises for archive-wide limits (member count, declared total size, compression ratio).
    """
    entries = [info for info in archive.infolist() if not info.is_dir()]
    if not entries and not archive.infolist():
        raise InvalidInputError(where, "the archive is empty")
    if len(entries) > MAX_ARCHIVE_MEMBERS:
        raise InvalidInputError(
            where, f"has {len(entries)} files, more than the limit of {MAX_ARCHIVE_MEMBERS}"
        )
    chosen: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    skipped: list[tuple[str, str]] = []
    for info in entries:
        relative = _safe_relative(info.filename)
        if relative is None:
            skipped.append((info.filename, "unsafe path (would be written outside the folder)"))
            continue
        if _is_litter(relative):
            continue
        if _is_symlink(info):
            skipped.append((info.filename, "symbolic links are not extracted"))
        elif _suffixes(relative) & NESTED_ARCHIVE_EXTENSIONS:
            skipped.append((info.filename, "nested archives are not opened"))
        elif relative.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append((info.filename, "not an image file"))
        elif info.flag_bits & 0x1:
            skipped.append((info.filename, "password-protected"))
        else:
            chosen.append((info, relative))
    declared = sum(info.file_size for info, _ in chosen)
    if declared > MAX_ARCHIVE_UNCOMPRESSED_MB * _MB:
        raise InvalidInputError(
            where,
            f"images unpack to {_format_mb(declared)}, more than the limit of "
            f"{MAX_ARCHIVE_UNCOMPRESSED_MB} MB",
        )
    for info, _ in chosen:
        if _ratio_too_high(info):
            raise InvalidInputError(
                where,
                f"{info.filename} is compressed {info.file_size // max(info.compress_size, 1)}"
                f":1, more than the {MAX_COMPRESSION_RATIO}:1 allowed (possible zip bomb)",
            )
    # The images together too: many members just under the per-member floor (100 of 1 MB,
    # 930:1) unpacked 2 GB from a 2 MB upload.
    packed = sum(info.compress_size for info, _ in chosen)
    if declared >= COMPRESSION_RATIO_MIN_BYTES and declared > MAX_COMPRESSION_RATIO * max(
            packed, 1):
        raise InvalidInputError(
            where,
            f"its images are compressed {declared // max(packed, 1)}:1 together, more than the "
            f"{MAX_COMPRESSION_RATIO}:1 allowed (possible zip bomb)",
        )
    return chosen, skipped


def _copy_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, where: str, budget: int
) -> int:
    """Stream one member to a new file, counting bytes; returns the bytes written.

    Stops as soon as the member exceeds its declared size or the archive budget.
    """
    written = 0
    with archive.open(info) as reader, open(target, "xb") as writer:
        while chunk := reader.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise InvalidInputError(
                    where, f"{info.filename} is larger than its header says (damaged archive)"
                )
            if written > budget:
                raise InvalidInputError(
                    where,
                    f"images unpack to more than the limit of {MAX_ARCHIVE_UNCOMPRESSED_MB} MB",
                )
            writer.write(chunk)
    return written


def _extract(
    archive: zipfile.ZipFile, dest: Path, where: str, written: list[Path]
) -> ExtractedArchive:
    """Extract the planned members; every file created is appended to ``written``."""
    chosen, skipped = _plan(archive, where)
    result = ExtractedArchive(skipped=skipped)
    budget = MAX_ARCHIVE_UNCOMPRESSED_MB * _MB
    for info, relative in chosen:
        target = dest.joinpath(*relative.parts)
        # resolve() follows symlinks already inside dest_dir: a link there cannot lead out.
        if not target.resolve().is_relative_to(dest):
            skipped.append((info.filename, "unsafe path (would be written outside the folder)"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            skipped.append((info.filename, "duplicate entry"))
            continue
        written.append(target)
        try:
            budget -= _copy_member(archive, info, target, where, budget)
        except NotImplementedError:
            written.remove(target)
            target.unlink(missing_ok=True)
            skipped.append((info.filename, "unsupported compression method"))
            continue
        result.files.append(target)
    result.files.sort()
    return result


def extract_zip(
    source: str | os.PathLike | bytes | BinaryIO,
    dest_dir: str | os.PathLike,
    name: str | None = None,
) -> ExtractedArchive:
    """Extract the image members of a zip into ``dest_dir`` (created if missing).

    ``source`` is a path, bytes, or a binary file-like object (e.g. a Streamlit upload);
    ``name`` is used in error messages. Raises InvalidInputError if the input is empty,
    not a zip, corrupt, over a limit, or holds no image files; on error, the files this
    call wrote are removed again.
    """
    where = _archive_name(source, name)
    stream = _open_source(source, where)
    count = _declared_entry_count(stream)
    if count is not None and count > MAX_ARCHIVE_MEMBERS:
        raise InvalidInputError(
            where, f"has {count} entries, more than the limit of {MAX_ARCHIVE_MEMBERS}"
        )
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    before = set(dest.iterdir())
    written: list[Path] = []
    try:
        with zipfile.ZipFile(stream) as archive:
            result = _extract(archive, dest, where, written)
    except InvalidInputError:
        _remove_new(dest, before, written)
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError) as exc:
        _remove_new(dest, before, written)
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in detail.lower():
            if _starts_like_zip(stream):
                raise InvalidInputError(
                    where, "damaged or truncated zip archive (no central directory)"
                ) from exc
            raise InvalidInputError(where, "not a zip archive") from exc
        raise InvalidInputError(where, f"damaged zip archive ({detail})") from exc
    except OSError as exc:
        _remove_new(dest, before, written)
        raise InvalidInputError(where, f"cannot be extracted ({exc.strerror or exc})") from exc
    except BaseException:
        _remove_new(dest, before, written)
        raise
    if not result.files:
        found = ", ".join(member for member, _ in result.skipped[:3])
        more = f" (found: {found}{', ...' if len(result.skipped) > 3 else ''})" if found else ""
        raise InvalidInputError(where, f"contains no image files{more}")
    return result


def _starts_like_zip(stream: BinaryIO | str) -> bool:
    """True if the data begins with a zip local-file header (so it is a damaged zip)."""
    try:
        if isinstance(stream, str):
            with open(stream, "rb") as handle:
                head = handle.read(4)
        else:
            stream.seek(0)
            head = stream.read(4)
    except (OSError, ValueError):
        return False
    return head == b"PK\x03\x04"


def _format_mb(size: int) -> str:
    """Bytes as MB with one decimal below 10 MB (so 1.4 MB is not shown as "1 MB")."""
    return f"{size / _MB:.1f} MB" if size < 10 * _MB else f"{size / _MB:,.0f} MB"


def _remove_new(dest: Path, before: set[Path], written: list[Path]) -> None:
    """Best-effort removal of the files this call wrote and the folders it created."""
    for path in written:
        path.unlink(missing_ok=True)
    for entry in set(dest.iterdir()) - before:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
