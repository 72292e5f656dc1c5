"""``python -m bench.quality_timing`` (in ``make bench``): its default pair is the reference
settings (the old default) and today's default, and it prints a ratio per setting (a printout, not a
timed test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.quality_timing import DEFAULT_SETTINGS, main, parse_setting
from padim_core import PadimModel
from padim_core.config import DEFAULTS, PRESETS, PadimConfig


def test_default_pair_is_the_reference_settings_and_the_default() -> None:
    reference, quality = (PadimModel(**parse_setting(s)).config for s in DEFAULT_SETTINGS)
    assert reference == PadimConfig(**PRESETS["reference"])
    assert quality == DEFAULTS
    assert (quality.backbone, quality.d, quality.crop, quality.resize, quality.upsample,
            quality.sigma, quality.score_top_percent) == \
        ("efficientnet_lite2", 192, 224, "pad-reflect", "bilinear", 4.0, 0.5)


def test_prints_a_ratio_per_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from padim_core.demo import make_demo_set

    data = make_demo_set(tmp_path / "demo", n_train=6, n_test_good=2, n_test_defect=2, size=128)
    settings = ["resnet18 weights=random d=8 size=64", "resnet18 weights=random d=8 size=64 "
                "upsample=bilinear"]
    assert main([str(data), *settings, "--train", "6", "--images", "4", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].rstrip().endswith("x1.00 (median x1.00)")
    assert "upsample=bilinear" in lines[1] and "median x" in lines[1]
