"""The malloc settings really stop the page faults of re-allocated big blocks, and the
Makefile's `run` uses the same values."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from padim_core.allocator import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[1]

# Allocates and frees a 64 MB torch tensor 20 times (like a forward pass's activations) and
# prints the minor page faults that took. (numpy asks for huge pages itself; torch does not.)
PROBE = """
import resource, sys
import torch
from padim_core.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
torch.ones(16 << 20)
torch.ones(16 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 << 20)       # 64 MB of float32, written, then freed
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc-only settings")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    applied, with_settings = faults("on")
    _, default = faults("off")
    assert applied == "True"
    assert default > 20 * 10_000            # 16384 pages per block, faulted in every time
    assert with_settings < default / 10


def test_make_run_starts_streamlit_with_the_same_settings() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for name, value in ENVIRONMENT.items():
        assert f"{name}={value}" in makefile
