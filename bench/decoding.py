"""``python -m bench.decoding``: images/s from image files against the backbone-only forward.

What a user runs (``padim fit`` / ``padim predict`` / the app on a folder) decodes files
before the backbone sees them. Issue #18 asks that fit and predict from files reach 70 % of
the backbone-only images/s on a GPU, which needs decoding in threads a batch ahead
(``padim_core.loading``). This prints, per device and in one run on the same files:

* the backbone forward alone over already decoded, cropped batches (the floor),
* the decoding pipeline alone (files → crops, no model),
* ``predict`` and ``fit`` from the files, decoding one image after another
  (``decode_workers=0``) and in threads (the default),

each as images/s and as a share of the backbone's. Repeats alternate the sides so that load
from other processes hits all alike; the best pass of each counts. A printout, not a test:
nothing here is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from bench.common import (
    DEFAULT_DATA,
    FULL,
    SMOKE,
    ImageSet,
    backbone_pass,
    crop_batches,
    decode,
    image_set,
    make_synthetic,
    report,
    synchronizer,
    timed,
)
from padim_core import PadimModel
from padim_core.allocator import keep_freed_memory
from padim_core.loading import decode_batches, default_decode_workers
from padim_core.machine import load_average, machine_line

TARGET_SHARE = 0.70   # issue #18: from files >= 70 % of the backbone-only images/s (GPU)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.decoding", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help=f"MVTec-layout category (default {DEFAULT_DATA}, else synthetic)")
    p.add_argument("--devices", default="auto",
                   help="comma list of cpu,cuda; auto = cpu, plus cuda when present")
    p.add_argument("--n", type=int, default=None,
                   help="files per side (default 64 on the CPU, every train image on CUDA)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"decoding threads (default {default_decode_workers()} here)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per side (best counts)")
    p.add_argument("--batch-size", type=int, default=FULL.batch_size)
    p.add_argument("--smoke", action="store_true",
                   help="tiny synthetic sizes (CI); numbers mean nothing")
    p.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    return p.parse_args(argv)


def _devices(spec: str) -> list[str]:
    if spec == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [d.strip() for d in spec.split(",") if d.strip()]


def _images(args: argparse.Namespace, tmp: Path) -> ImageSet:
    data = args.data or (None if args.smoke else DEFAULT_DATA)
    if data is not None and (data / "train" / "good").is_dir():
        return image_set(data, data.name)
    return make_synthetic(tmp / "synthetic", SMOKE if args.smoke else FULL)


def _best_of(sides: dict[str, Callable[[], object]], repeats: int,
             sync: Callable[[], None]) -> dict[str, float]:
    """Seconds of each side, best of ``repeats``, the order rotated every repeat."""
    names = list(sides)
    took: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            took[name].append(timed(sides[name], sync))
    return {name: min(times) for name, times in took.items()}


def device_case(device: str, paths: list[Path], s: Any, workers: int, batch_size: int,
                repeats: int) -> dict[str, Any]:
    """Every side on ``device`` over the same ``paths``; images/s and share of the backbone."""
    model = PadimModel(**{**s.model_kwargs(), "batch_size": batch_size}, device=device,
                       decode_workers=workers)
    sync = synchronizer(model.device)
    batches = crop_batches(decode(paths, s.image_size), s.image_size, s.crop, batch_size)

    def with_workers(n: int, run: Callable[[], object]) -> Callable[[], object]:
        def side() -> object:
            model.decode_workers = n
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return run()
        return side

    def decode_only() -> None:
        for _ in decode_batches(paths, None, s.image_size, s.crop, batch_size, workers,
                                pin_memory=model.device.type == "cuda"):
            pass

    sides = {"backbone": lambda: backbone_pass(model.extractor, batches),
             "decode": decode_only,
             "predict_sequential": with_workers(0, lambda: model.predict(paths)),
             "predict_threads": with_workers(workers, lambda: model.predict(paths)),
             "fit_sequential": with_workers(0, lambda: model.fit(paths)),
             "fit_threads": with_workers(workers, lambda: model.fit(paths))}
    with_workers(workers, lambda: model.fit(paths))()          # warm-up: every batch shape
    sides["predict_threads"]()
    sides["backbone"]()
    sync()
    seconds = _best_of(sides, repeats, sync)
    n = len(paths)
    per_s = {name: n / t for name, t in seconds.items()}
    out: dict[str, Any] = {"device": str(model.device), "n_images": n, "workers": workers,
                           "batch_size": batch_size, "seconds": seconds, "images_per_s": per_s,
                           "share_of_backbone": {name: per_s[name] / per_s["backbone"]
                                                 for name in per_s if name != "backbone"}}
    if model.device.type == "cuda":
        out["gpu_name"] = torch.cuda.get_device_name(model.device)
    return out


def table(result: dict[str, Any]) -> str:
    """The printed summary: one block per device."""
    meta = result["meta"]
    lines = [f"Decoding from files vs the backbone alone — {meta['date']}",
             f"machine: {meta['machine']}; load average at start {meta['load_average_start']}, "
             f"end {meta['load_average_end']}",
             f"images: {result['data']}; command: {meta['command']}"]
    for case in result["devices"]:
        lines += ["", f"{case.get('gpu_name', case['device'])}: {case['n_images']} files, "
                      f"batch {case['batch_size']}, {case['workers']} decoding threads",
                  f"  {'side':<34}{'images/s':>10}{'of backbone':>13}"]
        share = case["share_of_backbone"]
        labels = {"backbone": "backbone forward (decoded crops)",
                  "decode": "decode + resize + crop only",
                  "predict_sequential": "predict from files, sequential",
                  "predict_threads": "predict from files, threads",
                  "fit_sequential": "fit from files, sequential",
                  "fit_threads": "fit from files, threads"}
        for key, label in labels.items():
            part = "" if key == "backbone" else f"{100 * share[key]:>11.0f} %"
            lines.append(f"  {label:<34}{case['images_per_s'][key]:>10.1f}{part}")
        lines.append(f"  target (issue #18, GPU): predict and fit from files >= "
                     f"{100 * TARGET_SHARE:.0f} % of the backbone")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every device asked for, print the table, write the JSON."""
    args = parse_args(argv)
    keep_freed_memory()           # as the CLI and the app do
    s = SMOKE if args.smoke else FULL
    workers = default_decode_workers() if args.workers is None else args.workers
    started = datetime.now().astimezone()
    result: dict[str, Any] = {"meta": {
        "date": started.isoformat(timespec="seconds"), "machine": machine_line(),
        "command": " ".join(["python -m bench.decoding", *(argv or sys.argv[1:])]),
        "load_average_start": load_average(), "torch": torch.__version__}, "devices": []}
    with tempfile.TemporaryDirectory(prefix="padim-bench-decoding-") as tmp:
        images = _images(args, Path(tmp))
        result["data"] = f"{images.label} ({images.root})"
        for device in _devices(args.devices):
            if device.startswith("cuda") and not torch.cuda.is_available():
                print(f"{device}: no CUDA device here; skipped", file=sys.stderr)
                continue
            n = args.n or (8 if args.smoke else 64 if device == "cpu" else None)
            paths = list(images.train[:n])
            print(f"{device}: {len(paths)} files ...", file=sys.stderr, flush=True)
            result["devices"].append(device_case(device, paths, s, workers,
                                                 4 if args.smoke else args.batch_size,
                                                 1 if args.smoke else args.repeats))
    result["meta"]["load_average_end"] = load_average()
    report(table(result), result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
