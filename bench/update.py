"""``python -m bench.update``: what adding normal images to a fitted model costs
(``PadimModel.partial_fit``), beyond the new images' own backbone pass; and how much bigger
model files get for it.

Fits the default settings (or ``--preset reference``: the PaDiM recipe, d = 100) on the train
images of MVTec transistor (or ``--data``), then adds 1 and 10 images from its test/good
folder, several times each from the same base model. The backbone's share is clocked inside
the same call (``BackboneClock``), so load from other processes hits both sides alike. A
printout, not a test: no figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import DEFAULT_DATA, BackboneClock, image_set, synchronizer
from padim_core import PadimModel
from padim_core.config import PRESETS
from padim_core.images import iter_image_files
from padim_core.machine import load_average, machine_info

MB = 1 << 20


def stage_clock() -> tuple[dict[str, float], Any]:
    """A progress callback that notes when each stage starts, and its record."""
    seen: dict[str, float] = {}

    def progress(_done: int, _total: int, stage: str) -> None:
        seen.setdefault(stage, time.perf_counter())
    return seen, progress


def time_update(model: PadimModel, images: list[Path], repeats: int) -> dict[str, float]:
    """Median seconds of partial_fit(images) on the same base model: total, backbone,
    and the rest split by stage; and the process's CPU seconds (all threads), which other
    processes' load does not inflate the way it inflates wall time."""
    base = model.state_
    clock = BackboneClock(model.extractor, synchronizer(model.device))
    runs = []
    for _ in range(repeats):
        model.state_ = base
        seen, progress = stage_clock()
        with clock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0, c0 = time.perf_counter(), time.process_time()
            model.partial_fit(images, progress=progress)
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
        t_inv = seen.get("inverting covariances", t0)
        runs.append({"total_s": total, "cpu_s": cpu, "backbone_s": clock.seconds,
                     "beyond_backbone_s": total - clock.seconds,
                     "decode_embed_add_s": t_inv - t0,
                     "invert_and_recalibrate_s": seen.get("done", t_inv) - t_inv})
    model.state_ = base
    return {k: round(median(r[k] for r in runs), 3) for k in runs[0]}


def file_sizes(model: PadimModel) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        full, compact = Path(tmp) / "full.safetensors", Path(tmp) / "compact.safetensors"
        model.save(full)
        model.save(compact, updatable=False)
        return {"updatable_mb": round(full.stat().st_size / MB, 1),
                "compact_mb": round(compact.stat().st_size / MB, 1),
                "update_data_mb": model.card()["update_data_mb"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.update", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="MVTec-style category (train/good is the base, test/good adds)")
    parser.add_argument("--preset", choices=list(PRESETS), default="quality",
                        help="settings to start from (default: quality, the default)")
    parser.add_argument("--d", type=int, default=None)
    parser.add_argument("--backbone", default=None, help="default: the preset's")
    parser.add_argument("--weights", default=None, help="'random' for smoke runs only")
    parser.add_argument("--size", type=int, default=None, help="image size (the preset's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    train = image_set(args.data, args.data.name).train
    new = iter_image_files(args.data / "test" / "good")[:10]
    given = {"backbone": args.backbone, "d": args.d, "image_size": args.size}
    options = {**PRESETS[args.preset], **{k: v for k, v in given.items() if v is not None}}
    model = PadimModel(device=args.device, weights=args.weights, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
    result = {"machine": machine_info(), "load_average": load_average(),
              "data": str(args.data), "preset": args.preset, "d": model.config.d,
              "n_train": len(train), "n_calibration": model.n_calibration_images_,
              "fit_s": round(fit_s, 1), "files": file_sizes(model),
              "add_1": time_update(model, new[:1], args.repeats),
              "add_10": time_update(model, new[:10], args.repeats)}
    print(f"partial_fit on {model.device}, {args.preset} settings ({model.config.backbone}, "
          f"d={model.config.d}), {args.data.name} base of {len(train)} images "
          f"({model.n_calibration_images_} calibration); fit took {fit_s:.1f} s; "
          f"load average {result['load_average']}")
    for key in ("add_1", "add_10"):
        r = result[key]
        print(f"  {key.replace('_', ' '):7} images: {r['total_s']:.2f} s total, backbone "
              f"{r['backbone_s']:.2f} s, beyond it {r['beyond_backbone_s']:.2f} s (invert + "
              f"recalibrate {r['invert_and_recalibrate_s']:.2f} s); process CPU time "
              f"{r['cpu_s']:.2f} s, backbone included")
    f = result["files"]
    print(f"  model file: {f['updatable_mb']} MB with update data, {f['compact_mb']} MB "
          f"compact (update data {f['update_data_mb']} MB)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
