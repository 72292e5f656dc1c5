"""What machine this runs on and how much memory the process has used (CLI reports, bench)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any


def ru_maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB (Linux reports KiB, macOS bytes).

    On Linux it survives ``exec``: a child started by a large process reports at least the
    parent's peak, so :func:`peak_rss_mb` prefers VmHWM, which starts afresh at ``exec``.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def peak_rss_mb() -> float:
    """This process's own peak resident set size so far, MiB (VmHWM, else ru_maxrss)."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else ru_maxrss_mb()


def rss_mb() -> float | None:
    """Resident set size now, MiB (None where /proc is missing)."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Restart the kernel's high-water mark of RSS (Linux ``clear_refs`` 5); False if not."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line about the CPU this runs on: ``2 CPU cores, <model name>``."""
    name = cpu_name()
    return f"{os.cpu_count()} CPU cores{', ' + name if name else ''}"


def machine_info() -> dict[str, Any]:
    """CPU, cores, torch threads and versions, JSON-safe (for reports)."""
    import torch

    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}


def load_average() -> float | None:
    """1-minute load average (how shared the machine was), or None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
