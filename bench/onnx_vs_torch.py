"""onnxruntime vs the torch path, ms/image on the same images, in one run.

    python -m bench.onnx_vs_torch [--data DIR | --model FILE] [--repeats N] [--json FILE]

Fits the default model on DATA/train/good (or loads ``--model``), exports it with
``padim export``'s code (parity self-test included), then times ``PadimModel.predict`` and
``OnnxModel.predict`` on the same decoded test images (256² arrays: each side does its own
resize-and-crop and scoring; decoding the files is outside both). Passes alternate between
the two sides so machine load hits both alike; the best pass of each is reported, with the
largest relative score difference between them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import DEFAULT_DATA, decode, image_set
from padim_core import PadimModel
from padim_core.allocator import keep_freed_memory
from padim_core.export import export_onnx, relative_differences
from padim_core.onnx_engine import OnnxModel


def _best_ms(run: Any, images: list[np.ndarray]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run(images)
    return 1000 * (time.perf_counter() - start) / len(images), result


def measure(model: PadimModel, images: list[np.ndarray], repeats: int,
            workdir: Path) -> dict[str, Any]:
    """Export ``model`` into ``workdir`` and time both engines on ``images``."""
    t0 = time.perf_counter()
    parity = export_onnx(model, workdir / "model.onnx")
    export_s = time.perf_counter() - t0
    onnx = OnnxModel(workdir / "model.onnx", batch_size=model.config.batch_size)
    torch_ms, onnx_ms = [], []
    model.predict(images[:2])           # warm both before timing
    onnx.predict(images[:2])
    for _ in range(repeats):
        ms, ref = _best_ms(model.predict, images)
        torch_ms.append(ms)
        ms, got = _best_ms(onnx.predict, images)
        onnx_ms.append(ms)
    score_rel, map_rel = relative_differences(got.scores, got.maps, ref.scores, ref.maps)
    return {
        "n_images": len(images), "repeats": repeats,
        "torch_ms_per_image": round(min(torch_ms), 2),
        "onnxruntime_ms_per_image": round(min(onnx_ms), 2),
        "torch_ms_all": [round(v, 2) for v in torch_ms],
        "onnxruntime_ms_all": [round(v, 2) for v in onnx_ms],
        "onnx_over_torch": round(min(onnx_ms) / min(torch_ms), 3),
        "score_max_rel_diff": score_rel, "map_max_rel_diff": map_rel,
        "export_seconds": round(export_s, 1), "export_parity": parity.summary(),
        "onnx_file_mb": round((workdir / "model.onnx").stat().st_size / 2**20, 1),
        "torch_threads": torch.get_num_threads(),
        "device": str(model.device),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.onnx_vs_torch", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="MVTec-layout category (default: the transistor set)")
    parser.add_argument("--model", type=Path, help="a fitted model file instead of fitting")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-test", type=int, default=None, help="first N test images")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    keep_freed_memory()
    data = image_set(args.data, args.data.name, n_test=args.n_test)
    if args.model:
        model = PadimModel.load(args.model, device="cpu")
    else:
        model = PadimModel(device="cpu").fit(data.train)
    images = decode(data.test, model.config.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(model, images, args.repeats, Path(tmp))
    result.update({
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "data": str(args.data),
        "model": {k: model.card()[k] for k in ("backbone", "d", "image_size", "crop")},
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average": os.getloadavg()},
    })
    print(f"{result['n_images']} images, {result['model']}, best of {args.repeats}:")
    print(f"  torch        {result['torch_ms_per_image']:7.2f} ms/image "
          f"({result['torch_threads']} threads)")
    print(f"  onnxruntime  {result['onnxruntime_ms_per_image']:7.2f} ms/image "
          f"(x{result['onnx_over_torch']} of torch)")
    print(f"  scores max rel diff {result['score_max_rel_diff']:.2e}, maps "
          f"{result['map_max_rel_diff']:.2e}; export {result['export_seconds']} s, "
          f"{result['onnx_file_mb']} MB")
    print(f"  load average {result['machine']['load_average']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
