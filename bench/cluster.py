"""Fit on a Dask LocalCluster of 2 worker processes vs one process, and the costs that a
scaling estimate for N machines needs (docs/cluster.md).

``python -m bench.cluster [--n-train N] [--smoke] [--json FILE]``. On a 2-core machine the
cluster cannot win: the one process already uses both cores (torch threads), the 2 workers
one each, and the cluster adds its start, the shipping of each shard's sums and the merges.
What this measures is that overhead, and per image, per merge and per shard the costs that
decide how far more machines help.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import DEFAULT_DATA, image_set
from padim_core import distributed as on_dask
from padim_core.embedding import Embedder
from padim_core.machine import load_average, machine_line
from padim_core.model import PadimModel
from padim_core.thresholds import calibration_split

FULL = dict(backbone="efficientnet_lite0", weights=None, d=100, image_size=256, crop=224,
            device="cpu", batch_size=32)
SMOKE = dict(FULL, backbone="resnet18", weights="random", d=16, image_size=64, crop=64,
             batch_size=4)


def shard_costs(config: dict[str, Any], paths: Sequence[Path]) -> dict[str, float]:
    """In this process: seconds per image of one shard's work, bytes that shard sends
    (statistics, calibration embeddings), seconds of one merge of two shards' sums."""
    model = PadimModel(**config)
    channel_index, projection = model._channel_choice()
    embedder = Embedder(model.extractor.channels, channel_index, projection,
                        model.config.upsample)
    half = len(paths) // 2
    _, cal = calibration_split(len(paths), 0.2, model.config.seed)
    is_cal = np.zeros(len(paths), bool)
    is_cal[cal] = True
    worker_config = asdict(model.config)
    on_dask._worker_extractor(model.config.backbone, model.config.weights,
                              worker_config["device"], model.config.seed)   # load once
    shards, seconds = [], 0.0
    for lo, hi in ((0, half), (half, len(paths))):
        t0 = time.perf_counter()
        shards.append(on_dask._fit_shard(worker_config, embedder, list(paths[lo:hi]),
                                         [p.name for p in paths[lo:hi]], is_cal[lo:hi], None))
        seconds += time.perf_counter() - t0
    stats_bytes = len(pickle.dumps(shards[0].stats, protocol=5))
    held_bytes = len(pickle.dumps(on_dask._calibration_of(shards[0]), protocol=5))
    t0 = time.perf_counter()
    on_dask._merged(shards[0].stats, shards[1].stats)
    merge_s = time.perf_counter() - t0
    return {"seconds_per_image": seconds / len(paths), "merge_seconds": merge_s,
            "shard_images": half, "shard_statistics_bytes": stats_bytes,
            "shard_calibration_bytes": held_bytes}


def run(config: dict[str, Any], paths: Sequence[Path], workers: int = 2) -> dict[str, Any]:
    """One-process fit vs a LocalCluster fit of the same images (cluster start apart)."""
    out: dict[str, Any] = {"machine": machine_line(), "load_before": load_average(),
                           "torch_threads": torch.get_num_threads(), "n_train": len(paths),
                           "config": {k: v for k, v in config.items() if k != "device"},
                           "workers": workers}
    t0 = time.perf_counter()
    local = PadimModel(**config).fit(paths)
    out["one_process_fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with on_dask.connect(f"local:{workers}") as client:
        out["cluster_start_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        remote = on_dask.fit(PadimModel(**config), paths, client)
        out["cluster_fit_s"] = time.perf_counter() - t0
    out["same_thresholds"] = bool(np.isclose(local.image_threshold_, remote.image_threshold_,
                                             rtol=1e-4))
    out.update(shard_costs(config, paths))
    out["load_after"] = load_average()
    return out


def _print(r: dict[str, Any]) -> None:
    mb = 1 << 20
    print(f"{r['machine']}; load {r['load_before']} -> {r['load_after']} "
          "(shared machine: timings under load)")
    print(f"fit of {r['n_train']} images, {r['config']['backbone']} d={r['config']['d']}")
    print(f"  one process ({r['torch_threads']} torch threads)  {r['one_process_fit_s']:.1f} s")
    print(f"  LocalCluster {r['workers']} workers x 1 thread   {r['cluster_fit_s']:.1f} s "
          f"(+ {r['cluster_start_s']:.1f} s to start it)")
    print(f"  same thresholds as one process     {r['same_thresholds']}")
    print(f"  per image on one worker thread     {r['seconds_per_image'] * 1e3:.0f} ms")
    print(f"  one merge of two shards' sums      {r['merge_seconds'] * 1e3:.0f} ms")
    print(f"  bytes a shard sends: statistics {r['shard_statistics_bytes'] / mb:.1f} MiB "
          f"(any shard size), calibration embeddings {r['shard_calibration_bytes'] / mb:.1f} "
          f"MiB ({r['shard_images']} images, 20 % of them kept)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="tiny random-weight model")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    paths = image_set(args.data, args.data.name, args.n_train, 0).train
    result = run(SMOKE if args.smoke else FULL, paths)
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
