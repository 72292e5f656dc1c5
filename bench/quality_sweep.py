"""Detection-quality sweep: one model configuration fitted once, several scoring rules on it.

    PYTHONPATH=$PWD .venv/bin/python -m bench.quality_sweep DATA [model options]
        [--sigmas 4,2] [--rules max,top1] [--shrinkage eps|oas] [--out FILE.jsonl]

Fits ``PadimModel`` exactly as ``padim evaluate`` does (same fit, same predict, so the fit
seconds and ms/image are comparable), keeps the patch distances of the test images, and then
scores them under every (blur sigma, image score rule) pair without running the backbone
again. One JSON line per pair goes to ``--out`` (docs/quality.md is built from those lines).

Image score rules: ``max`` = maximum of the blurred map (the reference); ``topK`` = mean of the
top K % of the blurred map's pixels (``top1`` = 1 %, ``top0.1`` = 0.1 %).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from padim_core import metrics
from padim_core.datasets import MVTecCategory, find_dataset_root
from padim_core.embedding import UPSAMPLE_MODES
from padim_core.evaluation import evaluate_model, evaluate_predictions
from padim_core.images import RESIZE_MODES, unpad_map
from padim_core.machine import peak_rss_mb
from padim_core.model import PadimModel
from padim_core.scoring import MapRenderer


def image_score(maps: np.ndarray, rule: str) -> np.ndarray:
    """(N, H, W) maps → (N,) scores by ``rule`` (see the module docstring)."""
    flat = maps.reshape(len(maps), -1)
    if rule == "max":
        return flat.max(1).astype(np.float64)
    share = float(rule.removeprefix("top")) / 100.0
    k = max(1, int(round(share * flat.shape[1])))
    return np.partition(flat, -k, axis=1)[:, -k:].mean(1).astype(np.float64)


def _use_oas() -> None:
    """Replace fit's covariance step by OAS shrinkage per patch (then + eps·I), for the sweep."""
    from padim_core.gaussian import factorization as gaussian

    plain = gaussian._cov_upper

    def oas(second: np.ndarray, mean: np.ndarray, n: int, eps: float) -> None:
        plain(second, mean, n, 0.0)
        d = second.shape[-1]
        diag = np.einsum("pii->pi", second)
        tr = diag.sum(1)
        tr2 = 2 * (second ** 2).sum((1, 2)) - (diag ** 2).sum(1)   # ‖S‖²_F from the triangle
        mu, alpha = tr / d, tr2 / d ** 2
        rho = np.minimum((alpha + mu ** 2) / ((n + 1) * (alpha - mu ** 2 / d)), 1.0)
        second *= (1 - rho)[:, None, None]
        second.reshape(len(second), d * d)[:, :: d + 1] += (rho * mu + eps)[:, None]
        SHRINK.append(rho)

    gaussian._cov_upper = oas


SHRINK: list[np.ndarray] = []


def _use_feature_pool(mode: str) -> None:
    """Average each feature map over its 3 x 3 neighbourhood before the embedding (PatchCore's
    local aggregation, Roth et al. 2022), for the sweep: ``avg3`` all three maps,
    ``avg3-first`` the stride-4 map only. Not an engine option (docs/quality.md, round 4)."""
    import torch.nn.functional as F

    from padim_core import backbones

    plain = backbones.FeatureExtractor.forward

    def pooled(self: backbones.FeatureExtractor, images: torch.Tensor) -> list[torch.Tensor]:
        feats = plain(self, images)
        count = len(feats) if mode == "avg3" else 1
        return [F.avg_pool2d(f, 3, 1, 1, count_include_pad=False).contiguous()
                if i < count else f for i, f in enumerate(feats)]

    backbones.FeatureExtractor.forward = pooled


def unpad(maps: np.ndarray, sizes: list[tuple[int, int]]) -> np.ndarray:
    """Letterboxed (N, size, size) maps → the square-stretched geometry of the masks."""
    return np.stack([unpad_map(m, w, h) for m, (w, h) in zip(maps, sizes, strict=True)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality_sweep")
    p.add_argument("data")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--d", type=int, default=100)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--reduction", default="random")
    p.add_argument("--eps", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1024)
    p.add_argument("--sigmas", default="4")
    p.add_argument("--rules", default="max")
    p.add_argument("--shrinkage", default="eps", choices=("eps", "oas"))
    p.add_argument("--resize", default="stretch", choices=RESIZE_MODES)
    p.add_argument("--upsample", default="nearest", choices=UPSAMPLE_MODES)
    p.add_argument("--feature-pool", default="none", choices=("none", "avg3", "avg3-first"))
    p.add_argument("--fp16-check", action="store_true",
                   help="also score the first 64 test images with the whitener rounded to "
                        "float16 and report how far the image scores move")
    p.add_argument("--tag", default="")
    p.add_argument("--out", default="docs/quality_runs.jsonl")
    args = p.parse_args(argv)
    category = MVTecCategory.from_folder(find_dataset_root(args.data))
    if args.shrinkage == "oas":
        _use_oas()
    if args.feature_pool != "none":
        _use_feature_pool(args.feature_pool)
    if args.resize != "stretch" and args.crop != args.size:
        p.error("--resize pad* needs --crop equal to --size")
    model = PadimModel(backbone=args.backbone, d=args.d, image_size=args.size, crop=args.crop,
                       reduction=args.reduction, eps=args.eps, seed=args.seed,
                       score_top_percent=0.0, resize=args.resize, upsample=args.upsample)
    model.fit(category.train)
    fit_s = model.fit_seconds_

    distances: list[torch.Tensor] = []
    render = model._render

    def keep(dist: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        distances.append(dist.detach().cpu().clone())
        return render(dist, grid)

    model._render = keep   # type: ignore[method-assign]
    t0 = time.perf_counter()
    report = evaluate_model(model, category.test)
    infer_s = time.perf_counter() - t0   # includes masks + metrics; predict-only below
    model._render = render  # type: ignore[method-assign]
    t1 = time.perf_counter()
    model.predict([item.path for item in category.test[:64]])
    ms_per_image = 1000 * (time.perf_counter() - t1) / min(64, len(category.test))
    rss_mb = peak_rss_mb()

    dist = torch.cat(distances)
    fp16 = None
    if args.fp16_check:
        g = model.state_.gaussian
        w = g.whitener
        full = w.copy() if isinstance(w, np.ndarray) else w.clone()
        if isinstance(w, np.ndarray):
            w[...] = w.astype(np.float16).astype(w.dtype)
        else:
            w.copy_(w.half().to(w.dtype))
        n = min(64, len(category.test))   # the images of the timing pass, for time's sake
        half = model.predict([item.path for item in category.test[:n]])
        g.whitener[...] = full
        ref = np.asarray(report.image_scores)[:n]
        rel = np.abs(np.asarray(half.scores) - ref) / np.abs(ref)
        fp16 = {"images": n, "score_rel_change_max": float(rel.max()),
                "score_rel_change_median": float(np.median(rel))}
        print("fp16 whitener:", fp16, flush=True)
    sizes = None
    if args.resize != "stretch":
        from PIL import Image
        sizes = []
        for it in category.test:
            with Image.open(it.path) as im:
                sizes.append(im.size)
    labels = np.array([bool(it.is_anomalous) for it in category.test])
    from padim_core.evaluation import _load_cropped_mask
    masks = [(_load_cropped_mask(it.mask_path, args.size, args.crop)
              if it.mask_path is not None else None) for it in category.test]
    types = [str(it.defect_type) for it in category.test]
    base = {"data": Path(category.root).name, "backbone": args.backbone, "d": args.d,
            "size": args.size, "crop": args.crop, "reduction": args.reduction, "eps": args.eps,
            "seed": args.seed, "shrinkage": args.shrinkage, "resize": args.resize,
            "upsample": args.upsample, "feature_pool": args.feature_pool,
            "fp16": fp16,
            "oas_rho_median": float(np.median(np.concatenate(SHRINK))) if SHRINK else None,
            "tag": args.tag, "fit_s": round(fit_s, 1),
            "ms_per_image": round(ms_per_image, 1), "peak_rss_mb": round(rss_mb),
            "reference_report_image_auroc": report.image_auroc,
            "command": shlex.join([sys.executable.split("/")[-1], "-m", "bench.quality_sweep",
                                   *(argv if argv is not None else sys.argv[1:])])}
    with open(args.out, "a", encoding="utf-8") as out:
        for sigma in [float(s) for s in args.sigmas.split(",")]:
            maps = MapRenderer(model.state_.grid, args.crop, sigma)(dist).numpy()
            if sizes is not None:
                maps = unpad(maps, sizes)
            pix = evaluate_predictions(labels, maps.reshape(len(maps), -1).max(1), masks,
                                       maps, types)
            for rule in args.rules.split(","):
                scores = image_score(maps, rule)
                row = {**base, "sigma": sigma, "rule": rule,
                       "image_auroc": round(metrics.image_auroc(labels, scores), 4),
                       "pixel_auroc": round(pix.pixel_auroc, 4), "aupro": round(pix.aupro, 4),
                       "per_type": {t: round(v["image_auroc"], 4) for t, v in
                                    evaluate_predictions(labels, scores, None, None, types)
                                    .per_defect_type.items() if v["image_auroc"] is not None}}
                out.write(json.dumps(row) + "\n")
                print(f"{row['data']:<22} {args.backbone:<19} d={args.d:<4} {args.size}->"
                      f"{args.crop} {args.resize} {args.upsample} {args.reduction:<10} "
                      f"{args.shrinkage} "
                      f"eps={args.eps:<6} "
                      f"sigma={sigma:<4} "
                      f"{rule:<7} img {row['image_auroc']:.4f} pix {row['pixel_auroc']:.4f} "
                      f"pro {row['aupro']:.4f} fit {base['fit_s']} s "
                      f"{base['ms_per_image']} ms/img rss {base['peak_rss_mb']} MB "
                      f"(evaluate {infer_s:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
