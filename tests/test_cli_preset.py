"""``--preset``: named starting settings that the other fit options adjust."""

from __future__ import annotations

import pytest

from padim_core import cli
from padim_core.config import DEFAULTS, PRESETS, PadimConfig


def _config(*options: str) -> PadimConfig:
    args = cli.build_parser().parse_args(["fit", "DATA", *options])
    return cli._new_model(args).config


def test_no_preset_and_quality_are_the_defaults() -> None:
    assert _config() == DEFAULTS
    assert _config("--preset", "quality") == DEFAULTS


def test_quality_preset_is_the_quality_settings_of_docs_quality() -> None:
    cfg = _config("--preset", "quality")
    assert (cfg.backbone, cfg.d, cfg.image_size, cfg.crop, cfg.resize, cfg.upsample,
            cfg.sigma, cfg.score_top_percent) == \
        ("efficientnet_lite2", 192, 224, 224, "pad-reflect", "bilinear", 4.0, 0.5)


def test_reference_preset_is_the_padim_recipe_the_old_default() -> None:
    cfg = _config("--preset", "reference")
    assert (cfg.backbone, cfg.d, cfg.image_size, cfg.crop, cfg.resize, cfg.upsample,
            cfg.sigma, cfg.score_top_percent) == \
        ("efficientnet_lite0", 100, 256, 224, "stretch", "nearest", 4.0, 0.0)
    assert _config("--preset", "reference", "--size", "128").crop == 112   # 7/8 of --size


def test_a_smaller_crop_alone_means_the_square_resize() -> None:
    cfg = _config("--size", "256", "--crop", "224")
    assert (cfg.backbone, cfg.resize, cfg.crop) == ("efficientnet_lite2", "stretch", 224)
    assert _config("--size", "256").crop == 256           # padded: the whole image
    with pytest.raises(cli.UsageError, match="crop"):
        _config("--size", "256", "--crop", "224", "--resize", "pad")


def test_options_beside_a_preset_win() -> None:
    cfg = _config("--preset", "quality", "--sigma", "6", "--size", "256")
    assert (cfg.backbone, cfg.sigma, cfg.image_size, cfg.crop) == \
        ("efficientnet_lite2", 6.0, 256, 256)
    stretched = _config("--preset", "quality", "--resize", "stretch")
    assert (stretched.image_size, stretched.crop) == (224, 196)   # the 7/8 crop rule again


def test_every_preset_is_a_valid_configuration() -> None:
    for name, fields in PRESETS.items():
        PadimConfig(**fields)
        assert set(fields) <= set(PadimConfig.__dataclass_fields__), name


def test_preset_with_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["evaluate", "DATA", "--model", "m.safetensors", "--preset", "quality"])
    assert code == cli.EXIT_USAGE
    assert "--preset cannot be used with --model" in capsys.readouterr().err
