"""``padim fit --region --min-defect-area``, predict's defect columns and JSON, and
``evaluate --region`` (issue #15)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from padim_core import PadimModel
from padim_core.cli import main
from padim_core.demo import make_demo_set

SMALL = ["--d", "16", "--size", "96", "--crop", "96"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("cliregions") / "demo", n_train=12,
                         n_test_good=2, n_test_defect=3, size=128)


@pytest.fixture(scope="module")
def mask_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Left half ignored, drawn at 200 x 200: resized to the 96 px crop."""
    mask = np.full((200, 200), 255, np.uint8)
    mask[:, :100] = 0
    path = tmp_path_factory.mktemp("mask") / "roi.png"
    cv2.imwrite(str(path), mask)
    return path


@pytest.fixture(scope="module")
def model_file(demo: Path, mask_png: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "roi.safetensors"
    assert main(["fit", str(demo), "-o", str(out), *SMALL, "--region", str(mask_png),
                 "--min-defect-area", "20"]) == 0
    return out


def test_fit_keeps_the_region_and_says_it_resized_it(
        demo: Path, mask_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["fit", str(demo), "-o", str(out), *SMALL, "--region", str(mask_png),
                 "--min-defect-area", "0.5", "--pixel-size", "0.1"]) == 0
    stdout, err = capsys.readouterr()
    assert "resized to the model's 96x96 crop" in err
    assert "region       50.0% of the crop" in stdout and "defects from 50 px" in stdout
    model = PadimModel.load(out, device="cpu")
    assert not model.region_[:, :48].any() and model.region_[:, 48:].all()
    assert model.config.min_defect_area == 50


def test_predict_writes_defect_columns_and_one_json_per_image(
        model_file: Path, demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    folders = [str(p) for p in sorted((demo / "test").iterdir())]
    assert main(["predict", str(model_file), *folders, "--out", str(out)]) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    for row in rows:
        details = json.loads((out / row["details"]).read_text())
        assert details["name"] == row["name"] and details["verdict"] == row["verdict"]
        assert int(row["defect_regions"]) == details["n_defect_regions"]
        assert int(row["largest_defect_area"]) == details["largest_defect_area"]
        assert all(r["area"] >= 20 and r["x"] + r["width"] > 48
                   for r in details["defect_regions"])
        assert json.loads(row["defect_boxes"]) == [
            [r["x"], r["y"], r["width"], r["height"]] for r in details["defect_regions"]]
    assert any(int(r["defect_regions"]) for r in rows)


def test_evaluate_a_model_file_under_another_region(
        model_file: Path, demo: Path, tmp_path: Path, mask_png: Path) -> None:
    flipped = tmp_path / "right_ignored.png"
    cv2.imwrite(str(flipped), 255 - cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE))
    report = tmp_path / "r.json"
    assert main(["evaluate", str(demo), "--model", str(model_file), "--region", str(flipped),
                 "--json", str(report)]) == 0
    card = json.loads(report.read_text())["model"]
    assert card["region"].startswith("50.0%")
    original = PadimModel.load(model_file, device="cpu")
    assert card["image_threshold"] != original.image_threshold_


@pytest.mark.parametrize(("extra", "code", "says"), [
    (["--min-defect-area", "-1"], 2, "--min-defect-area: must be between 0 and 9216"),
    (["--pixel-size", "0.1"], 2, "--pixel-size needs --min-defect-area"),
    (["--region", "missing.png"], 1, "missing.png: mask file not found"),
])
def test_bad_region_options_end_in_one_error_line(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        code: int, says: str) -> None:
    assert main(["fit", str(demo), "-o", str(tmp_path / "x.safetensors"), *SMALL,
                 *extra]) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()
