"""Speed and memory benchmark of padim_core: ``python -m bench`` (or ``make bench``).

It compares the engine with its physical floor, the backbone's forward pass, on the same
decoded images in one run: predict vs backbone-only forward, fit vs backbone-only forward,
peak RSS of fit on N vs 4N images (fresh subprocesses, :mod:`bench.memory`), and a
Wide-ResNet50-2 d = 550 case; the same on CUDA when a GPU is present.
"""

from __future__ import annotations
