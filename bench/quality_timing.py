"""Predict speed of model settings side by side, passes interleaved so load hits all alike.

    PYTHONPATH=$PWD .venv/bin/python -m bench.quality_timing DATA \\
        "efficientnet_lite0 d=100 size=256 crop=224" "efficientnet_lite2 d=100 crop=256"

Without settings it compares the reference settings (the PaDiM recipe, the default before
issue 14) with today's default, the quality settings of docs/quality.md (issue 14's "≤ 2× the
old default's ms/image", printed by ``make bench``); without DATA it uses the transistor set
of ``../shared/data``.

Each setting is fitted on the first ``--train`` images of DATA/train/good, then the same
``--images`` test images are predicted ``--repeats`` times per setting in turn (decode,
backbone, distances, maps, scores: what ``padim evaluate`` times). Prints the best and the
median ms/image of each, and the ratios of its best and median to the first setting's.
"""

from __future__ import annotations

import argparse
import time
import warnings
from statistics import median

from bench.common import DEFAULT_DATA
from padim_core.datasets import MVTecCategory, find_dataset_root
from padim_core.model import PadimModel

DEFAULT_SETTINGS = ("efficientnet_lite0 d=100 size=256 crop=224 resize=stretch upsample=nearest "
                    "top=0",
                    "efficientnet_lite2 d=192 size=224 resize=pad-reflect upsample=bilinear "
                    "top=0.5")


def parse_setting(text: str) -> dict[str, object]:
    """``"BACKBONE key=value ..."`` → PadimModel keyword arguments."""
    backbone, *pairs = text.split()
    kwargs: dict[str, object] = {"backbone": backbone}
    names = {"size": "image_size", "top": "score_top_percent"}
    for pair in pairs:
        key, value = pair.split("=", 1)
        kwargs[names.get(key, key)] = (value if not value.replace(".", "").isdigit()
                                       else float(value) if "." in value else int(value))
    if "image_size" in kwargs and "crop" not in kwargs:
        kwargs["crop"] = kwargs["image_size"]
    return kwargs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality_timing")
    p.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    p.add_argument("settings", nargs="*")
    p.add_argument("--train", type=int, default=48)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    args.settings = args.settings or list(DEFAULT_SETTINGS)
    category = MVTecCategory.from_folder(find_dataset_root(args.data))
    train = category.train[: args.train]
    test = [item.path for item in category.test[: args.images]]
    models = []
    for text in args.settings:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models.append(PadimModel(**parse_setting(text)).fit(train))
        models[-1].predict(test[:8])   # warm-up
    times: list[list[float]] = [[] for _ in models]
    for _ in range(args.repeats):
        for i, model in enumerate(models):
            t0 = time.perf_counter()
            model.predict(test)
            times[i].append(1000 * (time.perf_counter() - t0) / len(test))
    first, first_median = min(times[0]), median(times[0])
    for text, t in zip(args.settings, times, strict=True):
        print(f"{text:<60} best {min(t):7.1f}  median {median(t):7.1f} ms/image  "
              f"x{min(t) / first:.2f} (median x{median(t) / first_median:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
