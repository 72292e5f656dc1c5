"""The ``padim`` command line: fit -> predict -> evaluate on a small synthetic set, and every
error a user can make ending in one ``padim: error:`` line with the right exit code.

Why: the CLI is how batch users and CI run the engine; a traceback or a silent success on bad
input there is a bug even when the engine itself is right. Small settings (d=16, 96 px) keep
this to seconds; the real-data figures come from running ``evaluate`` by hand (README).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from padim_core.cli import _overlay_relpath, main
from padim_core.demo import make_demo_set
from padim_core.images import load_image
from padim_core.names import relative_names
from padim_core.visualize import encode_png

SMALL = ["--d", "16", "--size", "96", "--crop", "96"]
REPO = Path(__file__).resolve().parents[1]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    """The stderr of a failed run: exactly one ``padim: error:`` line, no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("padim: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("cli") / "demo", n_train=12, n_test_good=4,
                         n_test_defect=6, size=128)


@pytest.fixture(scope="module")
def model_file(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "sub" / "demo.safetensors"
    assert main(["fit", str(demo), "-o", str(out), *SMALL]) == 0
    return out


# --------------------------------------------------------------------------- happy paths


def test_fit_prints_card_and_writes_model(demo: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    code, stdout, err = _run(capsys, "fit", demo, "-o", out, *SMALL, "--seed", "3")
    assert code == 0, err
    assert out.is_file() and out.stat().st_size > 0
    assert "12 fitted" in stdout  # MVTec layout: train/good only, not test/
    assert "thresholds   image" in stdout and "fit " in stdout
    assert "CPU" in stdout or "CUDA" in stdout   # the device fit ran on
    assert "Traceback" not in err
    # the resize mode, not only the sizes: "224 -> 224" read like a square resize
    assert re.search(r"resize \d+ (stretch|pad|pad-reflect) -> crop \d+", stdout)


def test_predict_writes_csv_and_overlays(model_file: Path, demo: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred"
    good, scratch = demo / "test" / "good", demo / "test" / "scratch"
    code, stdout, err = _run(capsys, "predict", model_file, good, scratch, "--out", out)
    assert code == 0, err
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 + 2
    # 000.png exists in both folders: names get the folder so rows and overlays stay apart
    assert {"good/000.png", "scratch/000.png"} <= {r["name"] for r in rows}
    for row in rows:
        score, norm = float(row["score"]), float(row["normalized_score"])
        assert score > 0 and np.isfinite(score)
        assert row["verdict"] == ("NG" if norm >= 1.0 else "OK")
        picture = load_image(out / row["overlay"])
        assert picture.shape == (96, 96, 3)
    assert (out / "overlays" / "good" / "000.png").is_file()
    with open(out / "skipped.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == []
    assert "6 image(s) scored" in stdout


def test_predict_recursive_takes_subfolders_and_skips_its_own_output(
        model_file: Path, demo: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    test = demo / "test"   # good/, hole/, scratch/, stain/: no image directly inside
    code, _, err = _run(capsys, "predict", model_file, test, "--out", tmp_path / "p")
    assert code == 1
    line = _one_error_line(err)
    assert str(test) in line and "good, hole, scratch, stain" in line and "--recursive" in line

    data = tmp_path / "data"   # the output folder inside the data, as after a first run
    data.mkdir()
    for kind in ("good", "hole"):
        (data / kind / "deeper").mkdir(parents=True)
        for src in sorted((test / kind).iterdir())[:2]:
            (data / kind / "deeper" / src.name).write_bytes(src.read_bytes())
    (data / ".cache").mkdir()
    (data / ".cache" / "000.png").write_bytes((test / "good" / "000.png").read_bytes())
    for _ in range(2):
        code, stdout, err = _run(capsys, "predict", model_file, data, "-r",
                                 "--out", data / "out")
        assert code == 0, err
        with open(data / "out" / "results.csv", newline="") as fh:
            names = [row["name"] for row in csv.DictReader(fh)]
        assert names == ["good/deeper/000.png", "good/deeper/001.png",
                         "hole/deeper/000.png", "hole/deeper/001.png"]
        assert "4 image(s) scored" in stdout
    assert (data / "out" / "overlays" / "hole" / "deeper" / "001.png").is_file()


def test_fit_recursive(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "by_day"
    for day in ("mon", "tue"):
        (data / day).mkdir(parents=True)
        for src in sorted((demo / "train" / "good").iterdir())[:6]:
            (data / day / src.name).write_bytes(src.read_bytes())
    code, _, err = _run(capsys, "fit", data, "-o", tmp_path / "m.safetensors", *SMALL)
    assert code == 1
    assert "mon, tue" in _one_error_line(err)
    code, stdout, err = _run(capsys, "fit", data, "-r", "-o", tmp_path / "m.safetensors", *SMALL)
    assert code == 0, err
    assert "12 fitted" in stdout
    # an MVTec category wrapped in a folder: -r still fits on train/good, never on test/
    code, stdout, err = _run(capsys, "fit", demo.parent, "-r", "-o", tmp_path / "w.safetensors",
                             *SMALL)
    assert code == 0, err
    assert "12 fitted" in stdout


def test_predict_single_file_overlay_named_by_stem(model_file: Path, demo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "predict", model_file, demo / "test" / "hole" / "000.png",
                        "--out", tmp_path)
    assert code == 0, err
    assert (tmp_path / "overlays" / "000.png").is_file()


def test_evaluate_with_model_writes_json(model_file: Path, demo: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "r" / "eval.json"
    code, stdout, err = _run(capsys, "evaluate", demo, "--model", model_file, "--json", js)
    assert code == 0, err
    data = json.loads(js.read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1"):
        assert 0.0 <= data[key] <= 1.0, key
    assert data["image_f1_threshold"] is not None and data["pixel_f1_threshold"] is not None
    assert data["calibrated_thresholds"]["image"] > 0
    assert data["calibrated_thresholds"]["pixel"] > 0
    assert data["infer_ms_per_image"] > 0 and data["peak_rss_mb"] > 10
    assert data["n_test_images"] == 10 and data["n_anomalous"] == 6
    assert set(data["per_defect_type"]) == {"good", "hole", "scratch", "stain"}
    assert data["model"]["d"] == 16 and data["model"]["crop"] == 96
    assert data["fit_source"].startswith("model file")
    assert data["command"].startswith("padim evaluate ")
    assert data["date"] and data["machine"]["cpu_count"] >= 1
    assert "image AUROC" in stdout and "scratch" in stdout


def test_evaluate_fits_and_saves(demo: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    js, saved = tmp_path / "e.json", tmp_path / "e.safetensors"
    code, _, err = _run(capsys, "evaluate", demo, *SMALL, "--reduction", "orthogonal",
                        "--json", js, "--save-model", saved)
    assert code == 0, err
    data = json.loads(js.read_text())
    assert data["fit_seconds"] > 0 and data["fit_source"] == "this run"
    assert data["model"]["reduction"] == "orthogonal"
    assert data["n_train_images"] == 12
    assert saved.is_file()


def test_corrupt_image_skipped_and_listed(demo: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good"
    good.mkdir()
    for src in sorted((demo / "train" / "good").iterdir())[:6]:
        (good / src.name).write_bytes(src.read_bytes())
    (good / "notes.png").write_text("this is a text file, not a picture\n")
    model = tmp_path / "m.safetensors"
    code, stdout, err = _run(capsys, "fit", good, "-o", model, *SMALL)
    assert code == 0, err
    assert "5 fitted" not in stdout and "6 fitted" in stdout
    assert "notes.png: not an image file" in stdout

    out = tmp_path / "pred"
    code, stdout, err = _run(capsys, "predict", model, good, "--out", out)
    assert code == 0
    assert "Traceback" not in err
    assert "skipped" in err and "notes.png" in err
    with open(out / "skipped.csv", newline="") as fh:
        skipped = list(csv.DictReader(fh))
    assert [s["name"] for s in skipped] == ["notes.png"]
    assert "not an image file" in skipped[0]["reason"]
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6


def test_csv_cells_are_never_formulas(model_file: Path, demo: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    source = (demo / "test" / "good" / "000.png").read_bytes()
    for name in ("=HYPERLINK(1).png", "+1.png", "-2.png", "@x.png"):
        (folder / name).write_bytes(source)
    (folder / "=empty.png").write_bytes(b"")
    out = tmp_path / "o"
    code, _, err = _run(capsys, "predict", model_file, folder, "--out", out)
    assert code == 0, err
    for table in ("results.csv", "skipped.csv"):
        with open(out / table, newline="") as fh:
            cells = [c for row in csv.reader(fh) for c in row]
        assert not [c for c in cells if c[:1] in "=+-@"], cells
    with open(out / "results.csv", newline="") as fh:
        names = {r["name"] for r in csv.DictReader(fh)}
    assert "'=HYPERLINK(1).png" in names
    assert (out / "overlays" / "=HYPERLINK(1).png").is_file()  # files keep their real name


def test_display_names_and_overlay_paths() -> None:
    folders = [Path("/d/test/good/000.png"), Path("/d/test/good/010.png"),
               Path("/d/test/crack/000.png")]
    assert relative_names(folders) == ["good/000.png", "good/010.png", "crack/000.png"]
    assert relative_names([Path("/x/a.png"), Path("/x/a.jpg")]) == ["a.png", "a.jpg"]
    assert relative_names([Path("/x/a.png"), Path("/x/a.png")]) == ["a.png#0", "a.png#1"]
    used: set[str] = set()
    rels = [_overlay_relpath(n, used) for n in ["a.png", "a.jpg", "../b.png"]]
    assert rels == ["overlays/a.png", "overlays/a.jpg.png", "overlays/_/b.png"]


# --------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    code, _, err = _run(capsys, "fit", missing, "-o", tmp_path / "m.safetensors", *SMALL)
    assert code == 1
    assert str(missing) in _one_error_line(err)


def test_folder_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "readme.txt").write_text("no pictures here")
    code, _, err = _run(capsys, "fit", tmp_path, "-o", tmp_path / "m.safetensors", *SMALL)
    assert code == 1
    line = _one_error_line(err)
    assert str(tmp_path) in line and "no image files" in line


def test_corrupt_model_file(demo: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = _run(capsys, "predict", bad, demo / "test" / "good", "--out", tmp_path / "o")
    assert code == 1
    assert str(bad) in _one_error_line(err)
    code, _, err = _run(capsys, "evaluate", demo, "--model", bad)
    assert code == 1
    assert str(bad) in _one_error_line(err)


def test_missing_model_and_image(model_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "predict", tmp_path / "none.safetensors", model_file,
                        "--out", tmp_path)
    assert code == 1 and "none.safetensors" in _one_error_line(err)
    code, _, err = _run(capsys, "predict", model_file, tmp_path / "ghost.png", "--out", tmp_path)
    assert code == 1 and "ghost.png" in _one_error_line(err)


def test_weights_file_not_found(demo: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "fit", demo, "-o", tmp_path / "m.safetensors", *SMALL,
                        "--weights", "/nonexistent.pth")
    assert code == 1
    assert "/nonexistent.pth" in _one_error_line(err)
    assert not (tmp_path / "m.safetensors").exists()


def test_a_relative_weights_path_works_from_any_folder_later(
        demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--weights w.pth`` was stored as typed, so predict / serve / export run from another
    folder said "w.pth: weights file not found" although the file was still there."""
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "w.pth")
    monkeypatch.chdir(tmp_path)
    code, _, _ = _run(capsys, "fit", demo, "-o", "m.safetensors", *SMALL,
                      "--backbone", "resnet18", "--weights", "w.pth")
    assert code == 0
    elsewhere = tmp_path / "line"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = _run(capsys, "predict", tmp_path / "m.safetensors", demo / "test" / "good",
                        "--out", "out")
    assert code == 0, err
    assert (elsewhere / "out" / "results.csv").is_file()


def _weights_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files a user might pass as ResNet-18 weights, each with what the error must say."""
    import torch
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    files = {"pickled-model": (net, "save model.state_dict() instead"),
             "foreign-dict": ({"head.weight": torch.zeros(2)},
                              "122 of its 122 tensors missing, e.g. conv1.weight; "
                              "1 unexpected tensors, e.g. head.weight"),
             "other-head": ({**net.state_dict(), "fc.weight": torch.zeros(10, 512)},
                            "1 tensors of another shape, e.g. fc.weight")}
    out = {}
    for key, (obj, says) in files.items():
        torch.save(obj, folder / f"{key}.pth")
        out[key] = (folder / f"{key}.pth", says)
    whole = (folder / "other-head.pth").read_bytes()
    (folder / "cut.pth").write_bytes(whole[: len(whole) // 3])
    out["cut"] = (folder / "cut.pth", "unreadable: PytorchStreamReader failed")
    return out


def test_wrong_weights_file_says_what_is_wrong(demo: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A weights file that is not the backbone's: one line naming it and the mismatch
    (not torch's advice to load with weights_only=False), and no model written."""
    for key, (path, says) in _weights_files(tmp_path).items():
        code, _, err = _run(capsys, "fit", demo, "-o", tmp_path / "m.safetensors", *SMALL,
                            "--backbone", "resnet18", "--weights", path)
        line = _one_error_line(err)
        assert code == 1, key
        assert f"{path}: not a resnet18 weights file" in line and says in line, line
        assert "weights_only" not in line, line
        assert not (tmp_path / "m.safetensors").exists()


def test_resnet_without_weights_names_expected_file(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    code, _, err = _run(capsys, "fit", demo, "-o", tmp_path / "m.safetensors",
                        "--backbone", "resnet18", *SMALL)
    assert code == 1
    assert "resnet18-f37072fd.pth" in _one_error_line(err)


@pytest.mark.parametrize(("extra", "option"), [
    (["--d", "500"], "--d"),
    (["--d", "0"], "--d"),
    (["--size", "96", "--crop", "200"], "--crop"),
    (["--batch-size", "0"], "--batch-size"),
    (["--calibration-fraction", "1.5"], "--calibration-fraction"),
    (["--sigma", "-1"], "--sigma"),
    (["--score-top-percent", "101"], "--score-top-percent"),
])
def test_bad_option_values_are_usage_errors(extra: list[str], option: str, demo: Path,
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "fit", demo, "-o", tmp_path / "m.safetensors", *extra)
    assert code == 2
    assert option in _one_error_line(err)


def test_d_too_large_names_the_limit(demo: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "evaluate", demo, "--d", "193")
    assert code == 2
    assert "192" in _one_error_line(err)  # efficientnet_lite2 has 24 + 48 + 120 channels
    code, _, err = _run(capsys, "evaluate", demo, "--backbone", "efficientnet_lite0", "--d", "177")
    assert code == 2
    assert "176" in _one_error_line(err)  # efficientnet_lite0 has 24 + 40 + 112 channels


def test_usage_errors(demo: Path, model_file: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "fit", demo)  # no -o
    assert code == 2 and "-o" in _one_error_line(err)
    code, _, err = _run(capsys, "fit", demo, "-o", tmp_path / "m", "--frobnicate")
    assert code == 2 and "--frobnicate" in _one_error_line(err)
    code, _, err = _run(capsys, "evaluate", demo, "--model", model_file, "--d", "8")
    assert code == 2 and "--d" in _one_error_line(err)
    code, _, err = _run(capsys, "fit", demo, "-o", tmp_path / "m", "--device", "tpu")
    assert code == 2 and "--device" in _one_error_line(err)
    # a bad option is reported before the data is even looked at
    code, _, err = _run(capsys, "fit", tmp_path / "missing", "-o", tmp_path / "m", "--d", "999")
    assert code == 2 and "--d" in _one_error_line(err)
    code, _, _ = _run(capsys)
    assert code == 2
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "evaluate" in out


def test_evaluate_needs_mvtec_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "evaluate", tmp_path, *SMALL)
    assert code == 1
    assert "train/good" in _one_error_line(err)


def test_keyboard_interrupt_exits_130_quietly(demo: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from padim_core.model import PadimModel

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(PadimModel, "fit", interrupted)
    code, _, err = _run(capsys, "fit", demo, "-o", tmp_path / "m.safetensors", *SMALL)
    assert code == 130
    assert err == ""


# --------------------------------------------------------------------------- real processes


def _subprocess(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "padim_core", *argv], capture_output=True,
                          text=True, timeout=300, env=env, cwd=REPO)


def test_subprocess_help() -> None:
    proc = _subprocess("--help")
    assert proc.returncode == 0
    for command in ("fit", "predict", "evaluate"):
        assert command in proc.stdout


def test_subprocess_error_has_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_text("not a model")
    image = tmp_path / "part.png"
    image.write_bytes(encode_png(np.full((64, 64, 3), 128, np.uint8)))
    proc = _subprocess("predict", str(bad), str(image), "--out", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("padim: error: ")
    assert str(bad) in proc.stderr
