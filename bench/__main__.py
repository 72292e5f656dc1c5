"""``python -m bench``: PaDiM engine vs its floor (the backbone forward), speed and memory.

One run measures, on the same decoded images: predict vs backbone-only forward (ms/image),
fit vs backbone-only forward over the train images, peak RSS of fit on N vs 4N images (fresh
subprocesses), a Wide-ResNet50-2 d = 550 case, and the same on CUDA when present. It prints a
table and, with ``--json FILE``, writes every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch

from bench.common import (
    DEFAULT_DATA,
    DEFAULT_SETTINGS,
    FULL,
    QUICK,
    REPO,
    SMOKE,
    BackboneClock,
    ImageSet,
    Settings,
    backbone_pass,
    crop_batches,
    decode,
    engine_revision,
    image_set,
    interleaved,
    make_synthetic,
    report,
    synchronizer,
    timed,
)
from bench.table import table
from padim_core.allocator import keep_freed_memory
from padim_core.backbones import FeatureExtractor, load_feature_extractor
from padim_core.machine import load_average, machine_line
from padim_core.model import PadimModel

TARGETS = {"predict_ratio": 1.15, "fit_ratio": 1.3, "memory_ratio": 1.15,
           "predict_ratio_in_run": 1.15, "fit_ratio_in_run": 1.3,
           "wrn_peak_rss_mb": 6e9 / (1 << 20)}   # 6 GB, as MiB


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="skip the Wide-ResNet50 d=550 case, fewer repeats")
    size.add_argument("--smoke", action="store_true",
                      help="tiny synthetic sizes (CI); numbers mean nothing")
    p.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    p.add_argument("--data", type=Path, default=None,
                   help=f"MVTec-layout category (default {DEFAULT_DATA}, else synthetic)")
    p.add_argument("--no-wrn", action="store_true", help="skip the Wide-ResNet50 case")
    p.add_argument("--cases", default="speed,memory,wrn",
                   help="comma list of speed, memory, wrn (default all)")
    p.add_argument("--devices", default="auto",
                   help="comma list of cpu,cuda; auto = cpu, plus cuda when present")
    p.add_argument("--repeats", type=int, default=None, help="timed predict passes per side")
    p.add_argument("--profile", action="store_true",
                   help="profile predict and fit (CPU) and print where the time goes")
    p.add_argument("--default-settings", action="store_true",
                   help="today's default settings instead of the reference recipe (d = 100) "
                        "the targets were set on")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc's malloc defaults (the CLI and app keep freed memory "
                        "for reuse); for comparison only")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- cases
def _subprocess(args: list[str], s: Settings) -> dict[str, Any]:
    """Run one ``bench.memory`` case in a fresh interpreter and parse its JSON line."""
    args = [*args, "--system-malloc"] if s.system_malloc else args
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "bench.memory", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.memory {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _model_args(backbone: str, weights: str | None, d: int, image_size: int, crop: int,
                batch_size: int, device: str) -> list[str]:
    out = ["--backbone", backbone, "--d", str(d), "--image-size", str(image_size),
           "--crop", str(crop), "--batch-size", str(batch_size), "--device", device]
    return out + (["--weights", weights] if weights else [])


def memory_case(images: ImageSet, s: Settings, device: str) -> dict[str, Any]:
    """Baseline (torch + backbone loaded) and peak RSS of fit on N and 4N image paths."""
    common = ["--data", str(images.root),
              *_model_args(s.backbone, s.weights, s.d, s.image_size, s.crop, s.batch_size,
                           device)]
    n = ["--n", str(len(images.train))]
    base = _subprocess([*common, "--mode", "load"], s)
    forward = _subprocess([*common, *n, "--mode", "forward", "--repeat", "1"], s)
    one = _subprocess([*common, *n, "--mode", "fit", "--repeat", "1"], s)
    four = _subprocess([*common, *n, "--mode", "fit", "--repeat", "4"], s)
    out = {"n": one["n_images"], "n_4n": four["n_images"],
           "baseline_rss_mb": base["peak_rss_mb"], "forward_rss_mb": forward["peak_rss_mb"],
           "phase_peak_n_mb": one["phase_peak_mb"], "phase_peak_4n_mb": four["phase_peak_mb"],
           "peak_rss_n_mb": one["peak_rss_mb"], "peak_rss_4n_mb": four["peak_rss_mb"],
           "ratio": four["peak_rss_mb"] / one["peak_rss_mb"],
           "added_n_mb": one["peak_rss_mb"] - base["peak_rss_mb"],
           "added_4n_mb": four["peak_rss_mb"] - base["peak_rss_mb"],
           "fit_n_s": one["fit_s"], "fit_4n_s": four["fit_s"],
           "fit_hwm_n_mb": one.get("fit_hwm_mb"), "fit_hwm_4n_mb": four.get("fit_hwm_mb")}
    if device == "cuda":
        out.update(cuda_peak_n_mb=one["cuda_peak_mb"], cuda_peak_4n_mb=four["cuda_peak_mb"],
                   cuda_ratio=four["cuda_peak_mb"] / one["cuda_peak_mb"])
    return out


def wrn_case(images: ImageSet, s: Settings, device: str) -> dict[str, Any]:
    """Wide-ResNet50-2 (random weights), d = 550: fit time, predict ms/image, peak RSS."""
    n_train = len(images.train) if s.wrn_n_train is None else s.wrn_n_train
    res = _subprocess(["--data", str(images.root), "--mode", "fit", "--n", str(n_train),
                       "--predict-n", str(s.wrn_n_predict), "--repeats", str(s.wrn_repeats),
                       *_model_args(s.wrn_backbone, s.wrn_weights, s.wrn_d, s.wrn_image_size,
                                    s.wrn_crop, s.batch_size, device)], s)
    out = {"backbone": s.wrn_backbone, "weights": s.wrn_weights, "d": s.wrn_d,
           "crop": s.wrn_crop, "n_train": res["n_images"], "fit_s": res["fit_s"],
           "n_predict": res["n_predict"], "predict_ms_per_image": res["predict_ms_per_image"],
           "backbone_ms_per_image": res["backbone_ms_per_image"],
           "predict_ratio": res["predict_ms_per_image"] / res["backbone_ms_per_image"],
           "rss_after_load_mb": res["rss_after_load_mb"], "peak_rss_mb": res["peak_rss_mb"],
           "fit_hwm_mb": res.get("fit_hwm_mb"), "phase_peak_mb": res["phase_peak_mb"],
           "peak_rss_with_predict_mb": res["peak_rss_with_predict_mb"]}
    if device == "cuda":
        out.update(cuda_peak_fit_mb=res["cuda_peak_mb"],
                   cuda_peak_predict_mb=res["cuda_predict_peak_mb"])
    return out


def _spread(times: list[float], scale: float) -> dict[str, Any]:
    vals = [t * scale for t in times]
    return {"best": min(vals), "worst": max(vals), "runs": [float(v) for v in vals]}


def speed_cases(images: ImageSet, s: Settings, device: str, profile: bool,
                ) -> dict[str, Any]:
    """predict and fit vs the backbone-only forward, on the same decoded images."""
    extractor = load_feature_extractor(s.backbone, s.weights, device)
    sync = synchronizer(extractor.device)
    train = decode(images.train, s.image_size)
    test = decode(images.test, s.image_size)
    train_batches = crop_batches(train, s.image_size, s.crop, s.batch_size)
    test_batches = crop_batches(test, s.image_size, s.crop, s.batch_size)

    def fit() -> PadimModel:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return PadimModel(**s.model_kwargs(), device=device,
                              extractor=extractor).fit(train)

    model = fit()                                       # warm-up of the fit path
    backbone_pass(extractor, test_batches)              # warm-up of both predict sides,
    model.predict(test)                                 # every batch shape included
    out: dict[str, Any] = {
        "inference": _predict_vs_backbone(model, test, test_batches, s, sync),
        "fit": _fit_vs_backbone(fit, extractor, train_batches, s, sync)}
    if profile and device == "cpu":
        out["profile"] = profile_cases(model, fit, test, train_batches[0], test_batches[0])
    return out


def _predict_vs_backbone(model: PadimModel, test: list[np.ndarray],
                         test_batches: list[np.ndarray], s: Settings,
                         sync: Callable[[], None]) -> dict[str, Any]:
    """predict vs the backbone-only forward, ms/image.

    Interleaved batch by batch (backbone, predict, predict, backbone, ...) so that load
    from other processes hits both sides alike. Per batch and side the best of `repeats`
    passes counts; the spread shows the totals of each pass. Inside predict a clock on the
    backbone's hooks gives the in-run ratio as well.
    """
    extractor = model.extractor
    starts = list(range(0, len(test), s.batch_size))
    took = np.zeros((s.repeats, len(starts), 2))
    clock = BackboneClock(extractor, sync)
    inside = 0.0
    for r in range(s.repeats):
        for i, (lo, batch) in enumerate(zip(starts, test_batches, strict=True)):
            sides = [lambda b=batch: backbone_pass(extractor, [b]),
                     lambda lo=lo: model.predict(test[lo:lo + s.batch_size])]
            for k in ((0, 1) if (r + i) % 2 == 0 else (1, 0)):
                with clock if k == 1 else contextlib.nullcontext():
                    took[r, i, k] = timed(sides[k], sync)
                inside += clock.seconds if k == 1 else 0.0
    best = took.min(axis=0)                                  # (batches, 2)
    n_test = len(test)
    return {"n_images": n_test, "backbone_ms_per_image": 1e3 * best[:, 0].sum() / n_test,
            "predict_ms_per_image": 1e3 * best[:, 1].sum() / n_test,
            "ratio": best[:, 1].sum() / best[:, 0].sum(),
            "ratio_batch_median": float(np.median(took[..., 1] / took[..., 0])),
            "ratio_in_run": float(took[..., 1].sum() / inside),
            "backbone_ms_spread": _spread(list(took[..., 0].sum(1)), 1e3 / n_test),
            "predict_ms_spread": _spread(list(took[..., 1].sum(1)), 1e3 / n_test)}


def _fit_vs_backbone(fit: Callable[[], PadimModel], extractor: FeatureExtractor,
                     train_batches: list[np.ndarray], s: Settings,
                     sync: Callable[[], None]) -> dict[str, Any]:
    """Whole fits vs whole backbone passes over the train images, alternating (best of
    ``fit_repeats``), and each fit over its own backbone time (in-run ratio)."""
    clock = BackboneClock(extractor, sync)
    in_run: list[float] = []

    def clocked_fit() -> None:
        with clock:
            t0 = time.perf_counter()
            fit()
            sync()
            in_run.append((time.perf_counter() - t0) / clock.seconds)

    fb, ff = interleaved(lambda: backbone_pass(extractor, train_batches), clocked_fit,
                         s.fit_repeats, sync)
    return {"n_images": sum(len(b) for b in train_batches), "backbone_s": min(fb),
            "fit_s": min(ff), "ratio": min(ff) / min(fb),
            "ratio_paired_median": median(f / b for f, b in zip(ff, fb, strict=True)),
            "ratio_in_run": median(in_run), "ratio_in_run_runs": in_run,
            "backbone_s_spread": _spread(fb, 1.0), "fit_s_spread": _spread(ff, 1.0)}


def profile_cases(model: PadimModel, fit: Any, test: list[np.ndarray], train_batch: np.ndarray,
                  test_batch: np.ndarray) -> dict[str, Any]:
    """cProfile breakdowns of real predict and fit, plus hand-timed pieces of one batch."""
    from bench import profiling

    ps = profiling.profile(lambda: model.predict(test))
    fs = profiling.profile(fit)
    n = len(test)
    return {
        "predict_ms_per_image": {k: 1e3 * v / n for k, v in
                                 profiling.breakdown(ps, profiling.PREDICT_STEPS).items()},
        "fit_s": profiling.breakdown(fs, profiling.FIT_STEPS),
        "predict_pieces_ms_per_image": {
            k: 1e3 * v / len(test_batch)
            for k, v in profiling.predict_pieces(model, test_batch).items()},
        "fit_pieces_s": profiling.fit_pieces(model, train_batch),
        "predict_top": profiling.top(ps),
        "fit_top": profiling.top(fs),
    }


def run_device(images: ImageSet, s: Settings, device: str, profile: bool,
               cases: Sequence[str]) -> dict[str, Any]:
    """The chosen cases on one device."""
    out: dict[str, Any] = {}
    if "speed" in cases:
        out.update(speed_cases(images, s, device, profile))
    if "memory" in cases:
        out["memory"] = memory_case(images, s, device)
    if s.wrn and "wrn" in cases:
        out["wrn"] = wrn_case(images, s, device)
    return out


def targets(cpu: dict[str, Any]) -> dict[str, Any]:
    """Each CPU target with its measured value and whether it is met."""
    found = {}
    if "inference" in cpu:
        found.update(predict_ratio=cpu["inference"]["ratio"], fit_ratio=cpu["fit"]["ratio"],
                     predict_ratio_in_run=cpu["inference"]["ratio_in_run"],
                     fit_ratio_in_run=cpu["fit"]["ratio_in_run"])
    if "memory" in cpu:
        found["memory_ratio"] = cpu["memory"]["ratio"]
    if "wrn" in cpu:
        found["wrn_peak_rss_mb"] = cpu["wrn"]["peak_rss_mb"]
    return {k: {"value": v, "limit": TARGETS[k], "met": bool(v <= TARGETS[k])}
            for k, v in found.items()}


# ---------------------------------------------------------------------------- main
def _settings(args: argparse.Namespace) -> Settings:
    s = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.no_wrn:
        s = replace(s, wrn=False)
    if args.repeats:
        s = replace(s, repeats=args.repeats)
    if args.system_malloc:
        s = replace(s, system_malloc=True)
    if args.default_settings:
        s = replace(s, **DEFAULT_SETTINGS)
    return s


def _devices(spec: str) -> list[str]:
    if spec == "auto":
        return ["cpu", "cuda"]
    return [d.strip() for d in spec.split(",") if d.strip()]


def _images(args: argparse.Namespace, s: Settings, tmp: Path) -> ImageSet:
    """The MVTec category of ``--data`` (default the transistor set when present), else the
    synthetic set written under ``tmp``."""
    data = args.data or (None if args.smoke else DEFAULT_DATA)
    if data is not None and (data / "train" / "good").is_dir():
        return image_set(data, data.name, s.n_train, s.n_test)
    return make_synthetic(tmp / "synthetic", s)


def _meta(args: argparse.Namespace, argv: Sequence[str] | None,
          started: datetime) -> dict[str, Any]:
    """When, where and how the run was made."""
    return {"date": started.isoformat(timespec="seconds"), "machine": machine_line(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__,
            "revision": engine_revision(), "torch_threads": torch.get_num_threads(),
            "command": " ".join(["python -m bench", *(argv or sys.argv[1:])]),
            "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
            "load_average_start": load_average()}


def _run_devices(result: dict[str, Any], images: ImageSet, s: Settings,
                 args: argparse.Namespace) -> None:
    """The cases on the CPU and on CUDA, as asked, into ``result``."""
    devices = _devices(args.devices)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if "cpu" in devices:
        print(f"CPU cases on {len(images.train)} train / {len(images.test)} test images "
              f"from {images.label} ...", file=sys.stderr, flush=True)
        result["cpu"] = run_device(images, s, "cpu", args.profile, cases)
        result["targets"] = targets(result["cpu"])
    if "cuda" in devices:
        if torch.cuda.is_available():
            print("CUDA cases ...", file=sys.stderr, flush=True)
            result["gpu"] = {"available": True, "name": torch.cuda.get_device_name(0),
                             **run_device(images, s, "cuda", False, cases)}
        else:
            result["gpu"] = {"available": False, "note": "no CUDA device"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    args = parse_args(argv)
    if not args.system_malloc:
        keep_freed_memory()  # as the CLI and the app do; both sides of every ratio share it
    s = _settings(args)
    started = datetime.now().astimezone()
    with tempfile.TemporaryDirectory(prefix="padim-bench-") as tmp:
        images = _images(args, s, Path(tmp))
        result: dict[str, Any] = {
            "meta": _meta(args, argv, started), "settings": asdict(s),
            "data": {"root": str(images.root), "label": images.label,
                     "n_train": len(images.train), "n_test": len(images.test)},
            "cpu": None, "gpu": None}
        _run_devices(result, images, s, args)
        result["meta"]["load_average_end"] = load_average()
        result["meta"]["seconds"] = (datetime.now().astimezone() - started).total_seconds()
    result.setdefault("targets", {})
    report(table(result), result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
