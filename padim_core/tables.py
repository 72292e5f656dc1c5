"""Result tables written as CSV (CLI and app downloads)."""

from __future__ import annotations

# A cell starting with one of these is run as a formula by spreadsheets (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet will not run as a formula: a leading = + - @ (or tab / CR) gets a
    quote, as OWASP advises (file names come from users and uploads)."""
    return f"'{text}" if text[:1] in FORMULA_STARTS else text
