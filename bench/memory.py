"""One memory case in a fresh process: ``python -m bench.memory --mode fit --n N ...``.

Prints one JSON line. Every case needs its own process: peak RSS is the process's high-water
mark. It is read from VmHWM (``/proc/self/status``) and ``getrusage(RUSAGE_SELF).ru_maxrss`` is
reported beside it: on Linux ru_maxrss carries the *parent's* peak across ``exec``, so a case
started by a large process would otherwise report the parent. ``fit`` gets image *paths*
(``--repeat k`` repeats the list k times), so no decoded image is held by the caller and what
is measured is the engine's own footprint. A sampler thread (every 20 ms) splits the peak by
fit's progress stages (features, covariance inversion, calibration).

Modes: ``load`` (torch + backbone loaded, nothing run: the baseline), ``forward`` (the
backbone alone over the paths, decoded batch by batch: the floor of any fit), ``fit`` (fit on
the paths; with ``--predict-n K`` also time predict and the bare backbone on K test images).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.common import (
    backbone_pass,
    crop_batches,
    decode,
    image_set,
    interleaved,
    synchronizer,
)
from padim_core.allocator import keep_freed_memory
from padim_core.backbones import load_feature_extractor
from padim_core.machine import peak_rss_mb, reset_peak_rss, rss_mb, ru_maxrss_mb
from padim_core.model import PadimModel


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of one memory case."""
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    p.add_argument("--mode", choices=("load", "forward", "fit"), default="fit")
    p.add_argument("--data", type=Path, required=True, help="MVTec-layout category folder")
    p.add_argument("--n", type=int, default=None, help="first N train images (default all)")
    p.add_argument("--repeat", type=int, default=1, help="repeat the path list this often")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default=None)
    p.add_argument("--d", type=int, default=100)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--predict-n", type=int, default=0, help="also time predict on K test images")
    p.add_argument("--repeats", type=int, default=1, help="timed predict passes per side")
    p.add_argument("--system-malloc", action="store_true", help="leave glibc's defaults")
    return p.parse_args(argv)


class PhaseSampler:
    """Samples RSS every ``interval`` s and keeps the peak per named phase."""

    def __init__(self, interval: float = 0.02) -> None:
        self.phase = "start"
        self.peaks: dict[str, float] = {}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self._interval)

    def sample(self) -> None:
        """Record the RSS now under the current phase."""
        now = rss_mb()
        if now is not None:
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), now)

    def progress(self, done: int, total: int, stage: str) -> None:
        """fit's progress callback: switch phase when the stage changes."""
        if stage != self.phase:
            self.sample()
            self.phase = stage
            self.sample()

    def __enter__(self) -> PhaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _cuda_peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / (1 << 20)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the case and return what it measured."""
    t0 = time.perf_counter()
    extractor = load_feature_extractor(args.backbone, args.weights, args.device)
    device = extractor.device
    out: dict[str, Any] = {"mode": args.mode, "backbone": args.backbone, "d": args.d,
                           "device": str(device), "load_s": time.perf_counter() - t0,
                           "rss_after_load_mb": peak_rss_mb(), "rss_now_after_load_mb": rss_mb()}
    if args.mode == "load":
        out.update(peak_rss_mb=peak_rss_mb(), ru_maxrss_mb=ru_maxrss_mb())
        return out
    images = image_set(args.data, "", args.n)
    paths = [str(p) for p in images.train] * args.repeat
    if args.mode == "forward":
        t0 = time.perf_counter()
        for lo in range(0, len(paths), args.batch_size):
            batch = decode(paths[lo:lo + args.batch_size], args.image_size)
            backbone_pass(extractor, crop_batches(batch, args.image_size, args.crop,
                                                  len(batch)))
        synchronizer(device)()
        out.update(n_images=len(paths), forward_s=time.perf_counter() - t0,
                   peak_rss_mb=peak_rss_mb(), ru_maxrss_mb=ru_maxrss_mb(),
                   cuda_peak_mb=_cuda_peak_mb(device))
        return out
    model = PadimModel(args.backbone, d=args.d, image_size=args.image_size, crop=args.crop,
                       device=args.device, weights=args.weights, batch_size=args.batch_size,
                       extractor=extractor)
    sync = synchronizer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # VmHWM can be reset: then it shows fit's own peak even where loading (CUDA's
    # libraries, say) peaked higher.
    load_peak = peak_rss_mb()
    hwm_reset = reset_peak_rss()
    t0 = time.perf_counter()
    with warnings.catch_warnings(), PhaseSampler() as sampler:
        warnings.simplefilter("ignore")
        model.fit(paths, progress=sampler.progress)
        sync()
    fit_peak = peak_rss_mb()
    out.update(n_images=len(paths), fit_s=time.perf_counter() - t0,
               peak_rss_mb=max(load_peak, fit_peak), fit_hwm_mb=fit_peak if hwm_reset else None,
               ru_maxrss_mb=ru_maxrss_mb(), phase_peak_mb=sampler.peaks,
               cuda_peak_mb=_cuda_peak_mb(device))
    if args.predict_n:
        decoded = decode(images.test[:args.predict_n] or images.train[:args.predict_n],
                         args.image_size)
        batches = crop_batches(decoded, args.image_size, args.crop, args.batch_size)
        backbone_pass(extractor, batches)                    # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        bb, pr = interleaved(lambda: backbone_pass(extractor, batches),
                             lambda: model.predict(decoded), args.repeats, sync)
        k = len(decoded)
        out.update(n_predict=k, backbone_ms_per_image=1e3 * min(bb) / k,
                   predict_ms_per_image=1e3 * min(pr) / k,
                   peak_rss_with_predict_mb=max(load_peak, peak_rss_mb()),
                   cuda_predict_peak_mb=_cuda_peak_mb(device))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: print the case's JSON on one line."""
    args = parse_args(argv)
    if not args.system_malloc:
        keep_freed_memory()
    print(json.dumps(run(args)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
