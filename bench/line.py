"""``python -m bench.line``: the "to the line" and cluster benchmarks in one bounded run, their
ratios in one table (what ``make bench`` prints after the engine benchmark).

    python -m bench.line [--data DIR] [--n-test 32] [--serve-seconds 20] [--n-train 32]
                         [--smoke] [--json FILE]

1. ``bench.onnx_vs_torch``: onnxruntime vs ``PadimModel.predict``, ms/image, same images.
2. ``bench.serve_load``: ``padim serve`` under 16 loopback clients vs ``padim predict`` on
   the same folders (every answer checked against predict's score).
3. ``bench.cluster``: a fit on a 2-worker LocalCluster vs one process, and the per-image,
   per-merge and per-shard costs docs/cluster.md's scaling estimate uses.

One model (the default recipe; ``--smoke``: a tiny random-weight one on a small synthetic set)
is fitted once and used by 1 and 2. Without DATA the synthetic demo plates stand in. Each
part is bounded (test images, seconds, training images), so the whole run takes minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cluster, onnx_vs_torch, serve_load
from bench.common import DEFAULT_DATA
from padim_core import PadimModel
from padim_core.datasets import training_images
from padim_core.machine import load_average, machine_line

SMOKE_MODEL = dict(backbone="resnet18", weights="random", d=16, image_size=64, crop=64,
                   device="cpu")


def _data(requested: Path | None, smoke: bool, tmp: Path) -> tuple[Path, str]:
    """The MVTec-layout folder to measure on, and what it is."""
    if requested is not None:
        return requested, requested.name
    if not smoke and DEFAULT_DATA.is_dir():
        return DEFAULT_DATA, DEFAULT_DATA.name
    from padim_core.demo import make_demo_set

    n_train, n_good, n_defect, size = (8, 2, 2, 128) if smoke else (64, 16, 16, 256)
    root = make_demo_set(tmp / "demo", n_train=n_train, n_test_good=n_good,
                         n_test_defect=n_defect, size=size, seed=0)
    return root, f"synthetic demo plates ({size}²)"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run the three benchmarks; every figure, by part."""
    data, label = _data(args.data, args.smoke, tmp)
    model_file = tmp / "model.safetensors"
    settings = SMOKE_MODEL if args.smoke else {"device": "cpu"}
    PadimModel(**settings).fit(training_images(data)).save(model_file)
    out: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                           "machine": machine_line(), "data": label,
                           "load_average_start": load_average()}
    onnx_vs_torch.main(["--data", str(data), "--model", str(model_file), "--repeats",
                        str(args.repeats), "--n-test", str(args.n_test),
                        "--json", str(tmp / "onnx.json")])
    out["onnx_vs_torch"] = _json(tmp / "onnx.json")
    serve_load.main(["--data", str(data), "--model", str(model_file), "--seconds",
                     str(args.serve_seconds), "--clients", str(args.clients),
                     "--json", str(tmp / "serve.json")])
    out["serve_load"] = _json(tmp / "serve.json")
    cluster.main(["--data", str(data), "--n-train", str(args.n_train),
                  *(["--smoke"] if args.smoke else []), "--json", str(tmp / "cluster.json")])
    out["cluster"] = _json(tmp / "cluster.json")
    out["load_average_end"] = load_average()
    return out


def summary(r: dict[str, Any]) -> str:
    """The ratios side by side, with the issue's targets."""
    o, s, c = r["onnx_vs_torch"], r["serve_load"], r["cluster"]
    rows = [
        ("onnxruntime / torch, ms per image",
         f"{o['onnxruntime_ms_per_image']:.1f} / {o['torch_ms_per_image']:.1f} = "
         f"{o['onnx_over_torch']:.2f}", "<= 1"),
        ("ONNX vs torch, max rel diff scores / maps",
         f"{o['score_max_rel_diff']:.1e} / {o['map_max_rel_diff']:.1e}", "1e-4 / 1e-3"),
        (f"padim serve ({s['clients']} clients) / padim predict, images/s",
         f"{s['images_per_second']:.1f} / {s['padim_predict_images_per_second']:.1f} = "
         f"{s['service_over_padim_predict']:.2f}", ">= 0.8"),
        ("padim serve: requests; errors (HTTP or score off by > 1e-4)",
         f"{s['requests']}; {s['errors']}", "0 errors"),
        ("padim serve latency p50 / p99",
         f"{s['latency_ms_p50']} / {s['latency_ms_p99']} ms", ""),
        (f"fit on LocalCluster {c['workers']}x1 / one process, s",
         f"{c['cluster_fit_s']:.1f} / {c['one_process_fit_s']:.1f} = "
         f"{c['cluster_fit_s'] / c['one_process_fit_s']:.2f}",
         f"none on {c['machine'].split(' CPU')[0]} cores"),
        ("cluster: same thresholds; start", f"{c['same_thresholds']}; "
         f"{c['cluster_start_s']:.1f} s", "True"),
        ("cluster: per image / per merge / bytes a shard sends",
         f"{c['seconds_per_image'] * 1e3:.0f} ms / {c['merge_seconds'] * 1e3:.0f} ms / "
         f"{c['shard_statistics_bytes'] / 2**20:.0f} MiB", ""),
    ]
    width = max(len(name) for name, _, _ in rows)
    vwidth = max(len(value) for _, value, _ in rows)
    lines = [f"To the line and the cluster — {r['date']}, {r['machine']}, {r['data']}",
             f"load average {r['load_average_start']} -> {r['load_average_end']} "
             "(figures measured side by side in one run; absolute times depend on load)",
             f"{'':{width}}  {'measured':{vwidth}}  target"]
    lines += [f"{name:{width}}  {value:{vwidth}}  {target}" for name, value, target in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.line", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help=f"MVTec-layout category (default {DEFAULT_DATA}, else synthetic)")
    parser.add_argument("--n-test", type=int, default=32, help="test images for ONNX vs torch")
    parser.add_argument("--repeats", type=int, default=2, help="ONNX vs torch passes per side")
    parser.add_argument("--serve-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=32, help="images for the cluster fit")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny random-weight model on a small synthetic set (CI)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-line-") as tmp:
        result = run(args, Path(tmp))
    print()
    print(summary(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
