"""Hostile inputs through the command line (``python -m padim_core`` / ``padim``).

Same table as the API suite (``tests/hostile_inputs.py``). Most runs call ``cli.main([...])``
in-process with ``capsys`` (seconds each); a few real subprocesses prove that what a user
sees has no traceback. Rules checked:

* a folder with bad files: ``fit`` and ``predict`` exit 0, skip each bad file and list it
  (fit: in the printed card; predict: ``padim: skipped <path>: <reason>`` on stderr and a
  row in ``skipped.csv``), and use the rest;
* too little data, bad model files, pickles: exit code 1 and exactly one
  ``padim: error: <file>: <problem>`` line on stderr;
* the CLI does not take zip archives: ``fit x.zip`` is refused ("is not a folder") and a zip
  given to ``predict`` is skipped as "not an image file" (unzip first; only the app unpacks
  uploads). There is no "expected backbone" for ``predict`` (the model file decides), and
  ``evaluate --model`` refuses ``--backbone`` (the file fixes it).

"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import hostile_inputs as h
import pytest

from padim_core.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--d", "16", "--size", "64", "--crop", "64", "--device", "cpu"]
N_GOOD = 6

def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def predict_one_image(capsys: pytest.CaptureFixture[str], model: Path,
                      tmp_path: Path) -> tuple[int, str, str]:
    """``predict MODEL part.png`` on one good image written to ``tmp_path``."""
    image = tmp_path / "part.png"
    image.write_bytes(h.png(1))
    return run(capsys, "predict", model, image, "--out", tmp_path / "o")


def one_error_line(err: str, *must: str) -> str:
    """Exactly one non-empty stderr line, ``padim: error: ...``, containing ``must``."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("padim: error: "), err
    for text in must:
        assert text.lower() in lines[0].lower(), (text, lines[0])
    return lines[0]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good images plus every image case, as files in one folder."""
    folder = tmp_path_factory.mktemp("cli_hostile") / "parts"
    return h.write_folder(folder, [*h.good_images(N_GOOD), *(c.pair for c in h.image_cases())])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = h.write_folder(tmp_path_factory.mktemp("cli_good") / "good", h.good_images(N_GOOD))
    out = folder.parent / "good.safetensors"
    assert main(["fit", str(folder), "-o", str(out), *TINY]) == 0
    return out


# --------------------------------------------------------------------------- images


def test_fit_on_folder_with_bad_files_lists_them_and_goes_on(
    hostile_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "m.safetensors"
    code, stdout, err = run(capsys, "fit", hostile_folder, "-o", out, *TINY)
    assert code == 0, err
    assert "Traceback" not in err and out.is_file()
    rejected = h.rejected_images()
    assert f"{N_GOOD + len(h.accepted_images())} fitted" in stdout
    assert f"skipped      {len(rejected)} input(s) not used:" in stdout
    for case in rejected:
        line = next(x for x in stdout.splitlines() if x.strip().startswith(f"{case.name}:"))
        assert case.fragment in line.lower(), line


def test_predict_on_folder_with_bad_files_lists_them_and_goes_on(
    hostile_folder: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "pred"
    code, stdout, err = run(capsys, "predict", model_file, hostile_folder, "--out", out)
    assert code == 0, err
    assert "Traceback" not in err
    scored = {row["name"] for row in read_csv(out / "results.csv")}
    assert scored == {n for n, _ in h.good_images(N_GOOD)} | {c.name for c in h.accepted_images()}
    skipped = {row["name"]: row for row in read_csv(out / "skipped.csv")}
    assert set(skipped) == {c.name for c in h.rejected_images()}
    for case in h.rejected_images():
        assert case.fragment in skipped[case.name]["reason"].lower()
        assert skipped[case.name]["path"] == str(hostile_folder / case.name)
        line = f"padim: skipped {hostile_folder / case.name}: {skipped[case.name]['reason']}"
        assert line in err.splitlines()
    assert f"{len(h.rejected_images())} skipped" in stdout


@pytest.mark.parametrize("case", h.rejected_images(), ids=lambda c: c.id)
def test_predict_single_bad_file(case: h.Case, model_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """One bad file given by name: skipped and named; nothing scored: exit 1 with one error
    line (it exited 0, and a line script checking $? did not notice)."""
    path = tmp_path / case.name
    path.write_bytes(case.data)
    code, stdout, err = run(capsys, "predict", model_file, path, "--out", tmp_path / "o")
    assert code == 1 and "Traceback" not in err
    assert f"padim: skipped {path}: " in err and case.fragment in err.lower()
    assert "0 image(s) scored" in stdout
    assert err.strip().splitlines()[-1] == "padim: error: none of the 1 input(s) could be scored"


def test_no_stray_pillow_warning_for_an_over_limit_header(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A 100 MP header gets our skip line only, not also Pillow's nameless bomb warning."""
    case = h.image_case("over_limit_100mp")
    path = tmp_path / case.name
    path.write_bytes(case.data)
    code, _, err = run(capsys, "predict", model_file, path, "--out", tmp_path / "o")
    assert code == 1                                   # skipped: nothing scored
    assert "decompression bomb" not in err.lower(), err


# --------------------------------------------------------------------------- training data


def test_fit_with_no_usable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = h.rejected_images()[:3]
    folder = h.write_folder(tmp_path / "bad", [c.pair for c in bad])
    code, stdout, err = run(capsys, "fit", folder, "-o", tmp_path / "m.safetensors", *TINY)
    assert code == 1
    line = one_error_line(err, "need at least 2 readable images, got 0", "3 unreadable")
    assert any(f"first: {c.name}: " in line for c in bad), line  # names a file
    assert not (tmp_path / "m.safetensors").exists()


def test_fit_with_one_usable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = h.write_folder(tmp_path / "one", [*h.good_images(1), h.empty_file()])
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "m.safetensors", *TINY)
    assert code == 1
    one_error_line(err, "got 1", "empty.png")


def test_fit_on_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nothing").mkdir()
    code, _, err = run(capsys, "fit", tmp_path / "nothing", "-o", tmp_path / "m.st", *TINY)
    assert code == 1
    one_error_line(err, str(tmp_path / "nothing"), "no image files")


def test_fit_fewer_images_than_d_warns(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = h.write_folder(tmp_path / "few", h.good_images(4))
    code, stdout, err = run(capsys, "fit", folder, "-o", tmp_path / "m.safetensors", *TINY)
    assert code == 0, err
    assert "only 4 training images for d=16" in stdout + err  # a card note or a warning
    assert "Traceback" not in err


def test_fit_identical_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = h.png(42)
    folder = h.write_folder(tmp_path / "same", [(f"{i}.png", same) for i in range(6)])
    code, stdout, err = run(capsys, "fit", folder, "-o", tmp_path / "m.safetensors", *TINY)
    assert code == 0, err
    assert "6 fitted" in stdout and "nan" not in stdout.lower()


# --------------------------------------------------------------------------- model files


MODEL_CASE_IDS = ["empty_model", "tiny_model", "short_text_as_model", "truncated_model",
                  "text_as_model", "huge_header_length", "lying_offsets", "other_program",
                  "other_version",
                  "broken_metadata", "missing_config", "unknown_backbone", "grid_mismatch",
                  "d_mismatch", "tampered_shape", "tampered_dtype", "missing_tensor",
                  "nan_tensor", "bad_channel_index"]


@pytest.mark.parametrize("case_id", MODEL_CASE_IDS)
def test_bad_model_file(case_id: str, model_file: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in h.model_file_cases(model_file.read_bytes()) if c.id == case_id)
    bad = tmp_path / case.name
    bad.write_bytes(case.data)
    code, _, err = predict_one_image(capsys, bad, tmp_path)
    assert code == 1
    one_error_line(err, f"padim: error: {bad}: ", case.fragment)


def test_model_case_ids_cover_the_table(model_file: Path) -> None:
    assert [c.id for c in h.model_file_cases(model_file.read_bytes())] == MODEL_CASE_IDS


def test_bad_model_file_in_evaluate(model_file: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from padim_core.demo import make_demo_set

    demo = make_demo_set(tmp_path / "demo", n_train=2, n_test_good=1, n_test_defect=1,
                         size=128)
    bad = tmp_path / "future.safetensors"
    bad.write_bytes(h.other_version_model(model_file.read_bytes()))
    code, _, err = run(capsys, "evaluate", demo, "--model", bad)
    assert code == 1
    one_error_line(err, str(bad), "format version 99")


@pytest.mark.parametrize("build", [h.malicious_pickle, h.malicious_torch_zip],
                         ids=["pickle", "torch_save_zip"])
def test_pickle_model_is_refused_unexecuted(build: object, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    name, data = build(marker)  # type: ignore[operator]
    bad = tmp_path / name
    bad.write_bytes(data)
    code, _, err = predict_one_image(capsys, bad, tmp_path)
    assert code == 1
    one_error_line(err, str(bad), "not a padim inspector model")
    assert not marker.exists()


def test_model_file_over_the_cap(monkeypatch: pytest.MonkeyPatch, model_file: Path,
                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for module in [m for n, m in sys.modules.items() if n.startswith("padim_core")]:
        if hasattr(module, "MAX_MODEL_FILE_MB"):
            monkeypatch.setattr(module, "MAX_MODEL_FILE_MB", 1)
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as handle:
        handle.write(model_file.read_bytes()[:1024])
        handle.truncate(3 * 1024 * 1024)
    code, _, err = predict_one_image(capsys, big, tmp_path)
    assert code == 1
    one_error_line(err, f"{big}: 3 MB exceeds the 1 MB limit")


def test_another_backbone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """predict uses the backbone the model file names; evaluate --model refuses a
    --backbone (the file fixes it) instead of silently mixing two backbones."""
    folder = h.write_folder(tmp_path / "good", h.good_images(4))
    resnet = tmp_path / "resnet.safetensors"
    code, stdout, err = run(capsys, "fit", folder, "-o", resnet, *TINY, "--backbone",
                            "resnet18", "--weights", "random")
    assert code == 0, err
    code, _, err = run(capsys, "predict", resnet, folder, "--out", tmp_path / "o")
    assert code == 0, err
    code, _, err = run(capsys, "evaluate", folder, "--model", resnet, "--backbone",
                       "efficientnet_lite0")
    assert code == 2
    one_error_line(err, "--backbone cannot be used with --model")


@pytest.mark.parametrize("change", [
    lambda m: m["config"].update(image_size="abc"),
    lambda m: m.update(skipped=5),
    lambda m: m["config"].update(image_size=100_000),
    lambda m: m.update(image_threshold=float("nan")),
], ids=["config_wrong_type", "skipped_not_a_list", "config_out_of_range", "threshold_nan"])
def test_tampered_metadata_is_one_line(change: object, model_file: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Metadata of the wrong type or value is a damaged model file, not a traceback."""
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(h.with_meta(model_file.read_bytes(), change))  # type: ignore[arg-type]
    code, _, err = predict_one_image(capsys, bad, tmp_path)
    assert code == 1
    one_error_line(err, str(bad))


def test_model_naming_a_non_weights_file(model_file: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A model file on disk may name its weights file; a file that is not weights is one
    ``padim: error:`` line naming it (torch.load with weights_only=True, never unpickled)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights\n" * 50)
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(h.with_meta(model_file.read_bytes(),
                                lambda m: m["config"].update(weights=str(notes))))
    code, _, err = predict_one_image(capsys, bad, tmp_path)
    assert code == 1
    one_error_line(err, str(notes))


# --------------------------------------------------------------------------- archives


def test_cli_does_not_take_zips(model_file: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Documented behaviour: unzip first. fit refuses a zip, predict skips it."""
    archive = tmp_path / "parts.zip"
    archive.write_bytes(h.zip_of(h.good_images(4)))
    code, _, err = run(capsys, "fit", archive, "-o", tmp_path / "m.safetensors", *TINY)
    assert code == 1
    one_error_line(err, str(archive), "is not a folder")
    image = tmp_path / "part.png"
    image.write_bytes(h.png(1))
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(h.archive_case("zip_bomb").data)
    code, stdout, err = run(capsys, "predict", model_file, image, archive, bomb,
                            "--out", tmp_path / "o")
    assert code == 0, err
    assert f"padim: skipped {archive}: not an image file" in err
    assert f"padim: skipped {bomb}: not an image file" in err
    assert "1 image(s) scored" in stdout


# --------------------------------------------------------------------------- real processes


def subprocess_cli(*argv: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "padim_core", *map(str, argv)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_subprocess_folder_with_bad_files(hostile_folder: Path, model_file: Path,
                                          tmp_path: Path) -> None:
    proc = subprocess_cli("predict", model_file, hostile_folder, "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for case in h.rejected_images():
        assert f"padim: skipped {hostile_folder / case.name}: " in proc.stderr
    noise = [x for x in proc.stderr.splitlines() if not x.startswith("padim: skipped ")]
    assert noise == [], noise  # no Pillow bomb warning, no other stray line


def test_subprocess_pickle_model(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    name, data = h.malicious_pickle(marker)
    bad = tmp_path / name
    bad.write_bytes(data)
    image = tmp_path / "part.png"
    image.write_bytes(h.png(1))
    proc = subprocess_cli("predict", bad, image, "--out", tmp_path / "o")
    assert proc.returncode == 1
    one_error_line(proc.stderr, str(bad), "not a padim inspector model")
    assert not marker.exists()


def test_subprocess_no_usable_training_image(tmp_path: Path) -> None:
    folder = h.write_folder(tmp_path / "bad", [h.truncated_png(), h.text_renamed_png()])
    proc = subprocess_cli("fit", folder, "-o", tmp_path / "m.safetensors", *TINY)
    assert proc.returncode == 1
    one_error_line(proc.stderr, "need at least 2 readable images, got 0")


def test_formula_file_names_are_not_formulas_in_csv(model_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Names like '=HYPERLINK(1).png' are neutralized in results.csv and skipped.csv."""
    folder = h.write_folder(tmp_path / "names", [(n, h.png(i)) for i, n in
                                                 enumerate(h.FORMULA_NAMES)])
    h.write_folder(folder, [("=bad.png", b"")])
    out = tmp_path / "o"
    code, _, err = run(capsys, "predict", model_file, folder, "--out", out)
    assert code == 0, err
    for table in ("results.csv", "skipped.csv"):
        with open(out / table, newline="", encoding="utf-8") as handle:
            cells = [c for row in csv.reader(handle) for c in row]
        assert not [c for c in cells if h.is_formula_cell(c)], (table, cells)
