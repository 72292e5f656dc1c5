"""``padim update``: adds images to a model file exactly, refuses compact files and inputs
with nothing readable (no file written), one ``padim: error:`` line each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from padim_core import PadimModel
from padim_core.cli import main
from padim_core.demo import make_demo_set

SMALL = ["--d", "16", "--size", "96", "--crop", "96"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("cli") / "demo", n_train=12, n_test_good=4,
                         n_test_defect=2, size=128)


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_update_writes_the_model_of_the_union(demo: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    base, new = tmp_path / "base.safetensors", tmp_path / "new.safetensors"
    assert _run(capsys, "fit", demo, "-o", base, *SMALL, "--device", "cpu")[0] == 0
    good = sorted((demo / "test" / "good").iterdir())
    code, out, err = _run(capsys, "update", base, *good[:2], "-o", new, "--device", "cpu")
    assert code == 0, err
    assert "update       +2 image(s)" in out
    before, after = PadimModel.load(base, "cpu"), PadimModel.load(new, "cpu")
    assert after.n_train_images_ == before.n_train_images_ + 2
    assert after.card()["updates"][0]["image_threshold_before"] == before.image_threshold_
    direct = PadimModel.load(base, "cpu").partial_fit(good[:2])
    np.testing.assert_allclose(after.predict(good[2:]).scores, direct.predict(good[2:]).scores,
                               rtol=1e-6)

    # The same files again: already learned, nothing written (they were added a second time).
    again = tmp_path / "again.safetensors"
    code, out, err = _run(capsys, "update", new, *good[:2], "-o", again, "--device", "cpu")
    assert code == 1 and not again.exists()
    assert "already learned by this model" in out + err and "nothing written" in err


def test_update_on_the_training_folder_adds_only_the_new_images(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engineer's way: new good images copied into the folder the model was fitted on,
    then ``padim update`` on the folder. The 12 training images were added a second time."""
    train = tmp_path / "train"
    train.mkdir()
    for src in sorted((demo / "train" / "good").iterdir()):
        (train / src.name).write_bytes(src.read_bytes())
    base, new = tmp_path / "base.safetensors", tmp_path / "new.safetensors"
    assert _run(capsys, "fit", train, "-o", base, *SMALL, "--device", "cpu")[0] == 0
    for src in sorted((demo / "test" / "good").iterdir())[:2]:
        (train / f"new_{src.name}").write_bytes(src.read_bytes())
    code, out, err = _run(capsys, "update", base, train, "-o", new, "--device", "cpu")
    assert code == 0, err
    assert "update       +2 image(s)" in out
    assert PadimModel.load(new, "cpu").n_train_images_ == 14
    assert "one of its training images" in out + err


def test_update_refuses_compact_files_and_unreadable_inputs(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compact, full = tmp_path / "compact.safetensors", tmp_path / "full.safetensors"
    assert _run(capsys, "fit", demo, "-o", compact, *SMALL, "--compact", "--device", "cpu")[0] == 0
    assert _run(capsys, "fit", demo, "-o", full, *SMALL, "--device", "cpu")[0] == 0
    assert compact.stat().st_size < full.stat().st_size
    good = sorted((demo / "test" / "good").iterdir())
    out_file = tmp_path / "out.safetensors"
    code, _, err = _run(capsys, "update", compact, good[0], "-o", out_file, "--device", "cpu")
    assert code == 1 and "refit" in err and "Traceback" not in err
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    code, _, err = _run(capsys, "update", full, junk, "-o", out_file, "--device", "cpu")
    assert code == 1 and "could be added" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("padim: error: ")
    assert not out_file.exists()


def test_update_saves_the_next_library_version(demo: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from padim_core.store import Store

    data_dir = tmp_path / "workspace"
    lib = ["--data-dir", data_dir]
    assert _run(capsys, "fit", demo, "--save-as", "line", *lib, *SMALL, "--device", "cpu")[0] == 0
    good = sorted((demo / "test" / "good").iterdir())
    code, out, err = _run(capsys, "update", "line", good[0], "--save-as", "line", *lib,
                          "--device", "cpu")
    assert code == 0, err
    assert "library      line@2" in out
    code, out, err = _run(capsys, "update", "line@1", good[1], "--save-as", "other", *lib,
                          "--note", "from v1", "--device", "cpu")
    assert code == 0, err
    with Store.open(data_dir) as store:
        v1, v2 = store.library.version("line", 1), store.library.version("line", 2)
        assert v2.n_train_images == v1.n_train_images + 1
        assert v2.note == "line@1 + 1 image(s) added by padim update"
        other = store.library.version("other", 1)
        assert other.note == "from v1" and other.n_train_images == v1.n_train_images + 1
        updated = store.library.load(v2, device="cpu")
    direct = store.library.load(v1, device="cpu").partial_fit(good[:1])
    np.testing.assert_allclose(updated.predict(good[2:]).scores,
                               direct.predict(good[2:]).scores, rtol=1e-6)
    # A version the library lacks is named as such (it said "model file not found").
    code, _, err = _run(capsys, "update", "line@9", good[1], "-o", tmp_path / "x.safetensors",
                        *lib, "--device", "cpu")
    assert code == 1 and "line@9" in err and "no such version" in err, err


def test_update_needs_an_output_and_names_a_missing_model(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = sorted((demo / "test" / "good").iterdir())
    code, _, err = _run(capsys, "update", tmp_path / "nothing.safetensors", good[0],
                        "--device", "cpu")
    assert code != 0 and "--save-as" in err and "Traceback" not in err
    code, _, err = _run(capsys, "update", "nosuchmodel", good[0], "-o", tmp_path / "x",
                        "--data-dir", tmp_path / "ws", "--device", "cpu")
    assert code == 1 and "nosuchmodel" in err and "Traceback" not in err


def test_update_of_a_model_that_does_not_record_its_files_says_so(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Models kept for months predate the record of fit's files: the engineer is told to give
    only new images (their calibration images are still recognised)."""
    from padim_core import model_files

    base, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    assert _run(capsys, "fit", demo, "-o", base, *SMALL, "--device", "cpu")[0] == 0
    tensors, meta = model_files.read(base)
    del meta["train_sha256"]
    model_files.write(base, tensors, meta)
    good = sorted((demo / "test" / "good").iterdir())
    code, _, err = _run(capsys, "update", base, good[0], "-o", new, "--device", "cpu")
    assert code == 0, err
    assert "does not record the files it was fitted on" in err
    code, _, err = _run(capsys, "update", new, good[1], "-o", tmp_path / "n2.safetensors",
                        "--device", "cpu")
    assert code == 0 and "does not record" in err      # still: only its updates are known
