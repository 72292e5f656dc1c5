"""Display names of images in results, tables and overlay files: readable and unique."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path


def unique_names(names: Sequence[str]) -> list[str]:
    """``names``, with ``#<index>`` added to every name that occurs more than once (the
    index is the position in ``names``), so results can be told apart and joined by name."""
    counts = Counter(names)
    return [f"{n}#{i}" if counts[n] > 1 else n for i, n in enumerate(names)]


def relative_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Each path relative to the folder common to all of them (``good/000.png``,
    ``cut_lead/000.png``: MVTec reuses file names across defect folders), made unique."""
    if not paths:
        return []
    absolute = [Path(os.path.abspath(p)) for p in paths]
    base = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    return unique_names([p.relative_to(base).as_posix() for p in absolute])
