"""Shared pieces of the benchmark: settings, image sets, decoding, timers (memory and machine
readings live in ``padim_core.machine``)."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padim_core.backbones import FeatureExtractor
from padim_core.config import DEFAULTS, PRESETS, PadimConfig
from padim_core.images import iter_image_files, load_image, resize_and_crop

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mvtec_transistor_256"


_REFERENCE = PadimConfig(**PRESETS["reference"])
_MODEL_FIELDS = ("backbone", "d", "image_size", "crop", "upsample", "score_top_percent")
"""The Settings fields that are model settings (``--default-settings`` replaces them)."""


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run (``full``, ``quick`` and ``smoke`` presets below)."""

    # The reference settings (the PaDiM recipe, d = 100), which the engine-vs-backbone targets
    # were set on; ``python -m bench --default-settings`` measures today's default instead,
    # whose d = 192 distances do 3.7x the arithmetic per patch (docs/performance.md).
    backbone: str = _REFERENCE.backbone
    weights: str | None = None
    d: int = _REFERENCE.d
    image_size: int = _REFERENCE.image_size
    crop: int = _REFERENCE.crop
    upsample: str = _REFERENCE.upsample
    score_top_percent: float = _REFERENCE.score_top_percent
    batch_size: int = 32
    repeats: int = 3              # timed passes per side for predict (best is reported)
    fit_repeats: int = 3          # timed passes per side for fit
    n_train: int | None = None    # None: every train image of the set
    n_test: int | None = None     # None: every test image of the set
    wrn: bool = True
    wrn_backbone: str = "wide_resnet50_2"
    wrn_weights: str | None = "random"
    wrn_d: int = 550
    wrn_image_size: int = 256
    wrn_crop: int = 224
    wrn_n_train: int | None = None
    wrn_n_predict: int = 32
    wrn_repeats: int = 1
    synthetic: tuple[int, int, int] = (200, 40, 60)   # train, test good, test defect
    synthetic_size: int = 256
    system_malloc: bool = False   # True: glibc's defaults, not padim_core.allocator's settings

    def model_kwargs(self) -> dict[str, Any]:
        """PadimModel arguments of these settings (model fields, weights, batch size)."""
        return {**{name: getattr(self, name) for name in _MODEL_FIELDS},
                "weights": self.weights, "batch_size": self.batch_size}


FULL = Settings()
QUICK = replace(FULL, wrn=False, repeats=2, fit_repeats=2)
DEFAULT_SETTINGS = {name: getattr(DEFAULTS, name) for name in _MODEL_FIELDS}
SMOKE = Settings(d=16, image_size=64, crop=64, batch_size=4, repeats=1, fit_repeats=1,
                 wrn_backbone="resnet18", wrn_weights="random", wrn_d=64, wrn_image_size=64,
                 wrn_crop=64, wrn_n_predict=4, synthetic=(8, 4, 0), synthetic_size=128)


@dataclass(frozen=True)
class ImageSet:
    """Train and test image paths of one MVTec-layout category."""

    root: Path
    label: str
    train: list[Path]
    test: list[Path]


def image_set(root: Path, label: str, n_train: int | None = None,
              n_test: int | None = None) -> ImageSet:
    """Train (train/good) and test (every test/* folder) paths under ``root``."""
    train = iter_image_files(root / "train" / "good")
    test = [p for folder in sorted((root / "test").iterdir())
            if folder.is_dir() and any(folder.iterdir()) for p in iter_image_files(folder)]
    return ImageSet(root, label, train[:n_train], test[:n_test])


def make_synthetic(root: Path, settings: Settings) -> ImageSet:
    """Write the padim_core demo set (brushed metal plates) under ``root`` and list it."""
    from padim_core.demo import make_demo_set

    n_train, n_good, n_defect = settings.synthetic
    make_demo_set(root, n_train=n_train, n_test_good=n_good, n_test_defect=n_defect,
                  size=settings.synthetic_size, seed=0)
    return image_set(root, f"synthetic demo set ({settings.synthetic_size}² plates)",
                     settings.n_train, settings.n_test)


def decode(paths: Sequence[str | Path], image_size: int) -> list[np.ndarray]:
    """Decode and square-resize (image_size²) every path, as predict/fit would."""
    return [resize_and_crop(load_image(p), image_size, image_size) for p in paths]


def crop_batches(images: Sequence[np.ndarray], image_size: int, crop: int,
                 batch_size: int) -> list[np.ndarray]:
    """The (B, crop, crop, 3) uint8 batches the engine builds from ``images``."""
    crops = [resize_and_crop(a, image_size, crop) for a in images]
    return [np.stack(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)]


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def backbone_pass(extractor: FeatureExtractor, batches: Sequence[np.ndarray]) -> None:
    """The floor: the backbone's forward over every batch, nothing else."""
    with torch.inference_mode():
        for batch in batches:
            extractor(torch.from_numpy(batch))


class BackboneClock:
    """Seconds spent inside ``extractor``'s forward while installed (hooks on the module).

    Gives the backbone's share of a predict or fit *within the same call*, which load from
    other processes cannot skew the way it skews two separate measurements.
    """

    def __init__(self, extractor: FeatureExtractor, sync: Callable[[], None]) -> None:
        self.seconds = 0.0
        self._extractor, self._sync = extractor, sync
        self._t0 = 0.0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _pre(self, *_: object) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def _post(self, *_: object) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._t0

    def __enter__(self) -> BackboneClock:
        self.seconds = 0.0
        self._handles = [self._extractor.register_forward_pre_hook(self._pre),
                         self._extractor.register_forward_hook(self._post)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    """Seconds ``fn`` takes, device work included."""
    gc.collect()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int,
                sync: Callable[[], None]) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately (a b, b a, a b, ...) so load drift hits both sides."""
    ta: list[float] = []
    tb: list[float] = []
    for r in range(repeats):
        if r % 2 == 0:
            ta.append(timed(a, sync))
            tb.append(timed(b, sync))
        else:
            tb.append(timed(b, sync))
            ta.append(timed(a, sync))
    return ta, tb


def engine_revision() -> str:
    """The git commit of the checkout, with "+changes" when padim_core/ differs from it."""
    import subprocess

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--", "padim_core") else "")


def report(summary: str, result: dict, path: Path | None) -> None:
    """Print the summary and, when ``path`` is given, write every figure there as JSON."""
    print(summary)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {path}")
