"""Result tables written as CSV (CLI and app downloads)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

# A cell starting with one of these is run as a formula by spreadsheets (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet will not run as a formula: a leading = + - @ (or tab / CR) gets a
    quote, as OWASP advises (file names come from users and uploads)."""
    return f"'{text}" if text[:1] in FORMULA_STARTS else text


def write_text_file(path: str | os.PathLike, write: Callable[[TextIO], int]) -> int:
    """``write(file)`` into a new file at ``path``, atomically (a ``.part`` file renamed when
    done, removed on failure); returns what ``write`` returned (a row count)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            n = write(fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n
