"""``python -m bench.device_profile``: where predict and fit spend their time on a device.

``python -m bench --profile`` breaks the CPU path down with cProfile; on a GPU that says
little, since kernels run asynchronously and the CPU only queues them. This runs the real
``predict`` and ``fit`` (reference settings, decoded images, as ``python -m bench``) under
``torch.profiler`` with each engine step wrapped in a ``record_function`` range, and prints
per step: calls, CPU time and device (kernel) time; the top operators by device and by CPU
time; and the host↔device copies and synchronisations, which stall the queue. A printout for
the next optimisation of issue #18, not a test: nothing is asserted. Runs on the CPU too
(a dry run: device time is then 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench.common import (
    DEFAULT_DATA,
    DEFAULT_SETTINGS,
    FULL,
    SMOKE,
    decode,
    image_set,
    make_synthetic,
    synchronizer,
)
from bench.profiling import owner_and_name
from padim_core import PadimModel

#: (label, "module:attribute.path"): the engine steps timed as profiler ranges. Functions a
#: module imports by name are wrapped where they are called from (``model:``).
STEPS: list[tuple[str, str]] = [
    ("backbone forward", "backbones:FeatureExtractor.forward"),
    ("embedding", "embedding:Embedder.__call__"),
    ("statistics update (torch)", "gaussian.torch_statistics:TorchPatchStatistics.update"),
    ("statistics update (numpy)", "gaussian.cpu_statistics:CpuPatchStatistics.update"),
    ("keep calibration embeddings", "gaussian.holdout:HoldoutStore.append"),
    ("sums kept for updates", "gaussian.statistics:PatchStatistics.packed_sums"),
    ("finalize (Cholesky, inverse, leave-one-out)", "model:finalize"),
    ("calibration distances", "model:PadimModel._calibration"),
    ("thresholds (maps of calibration images)", "model:PadimModel._thresholds"),
    ("mahalanobis", "model:mahalanobis"),
    ("maps (upsample + blur)", "model:PadimModel._render"),
    ("image scores", "model:masked_scores"),
]
SYNC_WORDS = ("Synchronize", "Memcpy", "memcpy", "aten::copy_", "aten::to", "aten::item",
              "aten::_local_scalar_dense")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.device_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", type=Path, default=None,
                   help=f"MVTec-layout category (default {DEFAULT_DATA}, else synthetic)")
    p.add_argument("--n-train", type=int, default=None, help="train images (default all)")
    p.add_argument("--n-test", type=int, default=64, help="test images for predict")
    p.add_argument("--top", type=int, default=15, help="operators listed per table")
    p.add_argument("--smoke", action="store_true", help="tiny synthetic sizes (CI)")
    p.add_argument("--default-settings", action="store_true",
                   help="today's default settings instead of the reference recipe (d = 100)")
    p.add_argument("--json", type=Path, default=None, help="write the tables to this file")
    p.add_argument("--trace", type=Path, default=None,
                   help="also write a Chrome trace of the fit here (chrome://tracing)")
    return p.parse_args(argv)


@contextlib.contextmanager
def labelled_steps(steps: Sequence[tuple[str, str]] = STEPS) -> Iterator[None]:
    """Wrap each step in a profiler range named by its label; undone on leaving."""
    undo: list[tuple[Any, str, Any]] = []

    def ranged(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with record_function(f"## {label}"):
                return fn(*args, **kwargs)
        return wrapper

    try:
        for label, path in steps:
            owner, name = owner_and_name(path)
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            undo.append((owner, name, original))
            setattr(owner, name, ranged(label, original))
        yield
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def _times(evt: Any) -> tuple[float, float, float, float]:
    """(cpu total, device total, self cpu, self device) in ms of one averaged event."""
    dev = getattr(evt, "device_time_total", None)
    if dev is None:
        dev = getattr(evt, "cuda_time_total", 0.0)
    self_dev = getattr(evt, "self_device_time_total", None)
    if self_dev is None:
        self_dev = getattr(evt, "self_cuda_time_total", 0.0)
    return (evt.cpu_time_total / 1e3, dev / 1e3, evt.self_cpu_time_total / 1e3, self_dev / 1e3)


def tables(prof: Any, wall_s: float, top: int) -> dict[str, Any]:
    """The steps, the top operators and the copies/synchronisations of one profile."""
    events = prof.key_averages()
    rows = []
    for evt in events:
        cpu, dev, self_cpu, self_dev = _times(evt)
        rows.append({"name": evt.key, "calls": evt.count, "cpu_ms": cpu, "device_ms": dev,
                     "self_cpu_ms": self_cpu, "self_device_ms": self_dev})
    steps = [r for r in rows if r["name"].startswith("## ")]
    ops = [r for r in rows if not r["name"].startswith("## ")]
    return {"wall_ms": 1e3 * wall_s,
            "steps": sorted(steps, key=lambda r: -r["cpu_ms"]),
            "by_device": sorted(ops, key=lambda r: -r["self_device_ms"])[:top],
            "by_cpu": sorted(ops, key=lambda r: -r["self_cpu_ms"])[:top],
            "copies_and_syncs": sorted((r for r in ops if any(w in r["name"]
                                                              for w in SYNC_WORDS)),
                                       key=lambda r: -r["self_cpu_ms"])[:top]}


def _print_table(title: str, rows: list[dict[str, Any]], self_times: bool) -> None:
    cpu, dev = ("self_cpu_ms", "self_device_ms") if self_times else ("cpu_ms", "device_ms")
    print(f"  {title}")
    print(f"    {'':58} {'calls':>6} {'CPU ms':>9} {'device ms':>10}")
    for r in rows:
        print(f"    {r['name'][:58]:58} {r['calls']:6d} {r[cpu]:9.2f} {r[dev]:10.2f}")


def report(name: str, t: dict[str, Any], on_device: bool) -> None:
    """Print one profile's tables (the device-time table only where there is a device)."""
    print(f"\n{name}: {t['wall_ms']:.1f} ms wall (profiled; the profiler adds overhead)")
    _print_table("engine steps (CPU = time in the step's Python, device = its kernels)",
                 t["steps"], self_times=False)
    if on_device:
        _print_table("operators by own device time", t["by_device"], self_times=True)
    _print_table("operators by own CPU time", t["by_cpu"], self_times=True)
    _print_table("copies and synchronisations", t["copies_and_syncs"], self_times=True)


def profiled(fn: Callable[[], object], device: torch.device,
             trace: Path | None = None) -> tuple[Any, float]:
    """Run ``fn`` once under the profiler (device activity where there is a GPU)."""
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync = synchronizer(device)
    with labelled_steps(), profile(activities=activities) as prof:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        wall = time.perf_counter() - t0
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    return prof, wall


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = SMOKE if args.smoke else FULL
    if args.default_settings:
        s = replace(s, **DEFAULT_SETTINGS)
    data = args.data or (None if args.smoke else DEFAULT_DATA)
    if data is not None and (data / "train" / "good").is_dir():
        images = image_set(data, data.name, args.n_train, args.n_test)
    else:
        import tempfile
        images = make_synthetic(Path(tempfile.mkdtemp(prefix="padim-profile-")), s)
    train = decode(images.train[:args.n_train], s.image_size)
    test = decode(images.test[:args.n_test], s.image_size)
    model = PadimModel(**s.model_kwargs(), device=args.device)
    device = model.device
    warnings.simplefilter("ignore")
    model.fit(train)                              # warm-up: every shape, cuDNN's choices
    model.predict(test)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device profile — {label}; {s.backbone}, d = {s.d}, {s.image_size}→{s.crop}, "
          f"upsample {s.upsample}, "
          f"batch {s.batch_size}; fit on {len(train)} images, predict on {len(test)} "
          f"({images.label}); torch {torch.__version__}")
    out: dict[str, Any] = {"device": label, "settings": {"backbone": s.backbone, "d": s.d},
                           "n_train": len(train), "n_test": len(test)}
    for name, fn, trace in (("predict", lambda: model.predict(test), None),
                            ("fit", lambda: model.fit(train), args.trace)):
        prof, wall = profiled(fn, device, trace)
        out[name] = tables(prof, wall, args.top)
        report(name, out[name], device.type != "cpu")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
