"""``padim models ...``, ``padim history export``, ``fit --save-as`` and ``predict --model NAME
--record``, on SQLite and on a real PostgreSQL server (``PADIM_DATABASE_URL``).

Why: batch users and CI fill and read the workspace from the command line; what they save
there must be what the app sees, and every mistake must end in one ``padim: error:`` line.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from padim_core.cli import main
from padim_core.demo import make_demo_set
from padim_core.store import DATA_DIR_ENV, DATABASE_URL_ENV, Filters, Store

SMALL = ["--d", "16", "--size", "64", "--crop", "64", "--device", "cpu"]


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("padim: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("scli") / "demo", n_train=6, n_test_good=2,
                         n_test_defect=2, size=128)


@pytest.fixture(params=["sqlite", "postgresql"])
def workspace(request: pytest.FixtureRequest, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str | None]:
    """A data dir given with --data-dir; the database in it or on the PostgreSQL server."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    url = None
    if request.param == "postgresql":
        from postgres_server import fresh_database

        url = fresh_database(request.getfixturevalue("postgres_admin_url"))
        monkeypatch.setenv(DATABASE_URL_ENV, url)
    return tmp_path / "ws", url


def test_fit_save_predict_record_list_export(demo: Path, workspace: tuple[Path, str | None],
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ws, url = workspace
    code, out, err = _run(capsys, "fit", demo, "--save-as", "demo plates", "--note", "first",
                          "--data-dir", ws, *SMALL)
    assert code == 0, err
    assert "library      demo plates@1" in out
    code, out, err = _run(capsys, "fit", demo, "-o", tmp_path / "m.safetensors",
                          "--save-as", "demo plates", "--data-dir", ws, *SMALL, "--seed", "3")
    assert code == 0, err
    assert (tmp_path / "m.safetensors").is_file() and "demo plates@2" in out

    code, out, err = _run(capsys, "models", "list", "--data-dir", ws)
    assert code == 0, err
    assert "demo plates@1" in out and "demo plates@2" in out and out.count(" ok") == 2
    code, out, _ = _run(capsys, "models", "show", "demo plates@1", "--data-dir", ws)
    assert "note         first" in out and "efficientnet_lite2, d=16" in out
    assert "training set fingerprint " in out and "not recorded" not in out

    with Store.open(ws, url) as store:   # save operating thresholds, as the app's sliders do
        v1 = store.library.resolve("demo plates@1")
        store.library.set_thresholds(v1, 1e-3, 1e-3)   # everything is NG at these
        store.library.set_default("demo plates", 1)

    folders = sorted(p for p in (demo / "test").iterdir() if any(p.glob("*.png")))
    n = len(list((demo / "test").rglob("*.png")))
    code, out, err = _run(capsys, "predict", "--model", "demo plates", *folders,
                          "--out", tmp_path / "pred", "--record",
                          "--operator", "ann", "--data-dir", ws, "--device", "cpu")
    assert code == 0, err
    assert "model demo plates@1: thresholds image 0.001" in out
    assert f"history: {n} row(s) recorded for demo plates@1" in out
    rows = list(csv.DictReader((tmp_path / "pred" / "results.csv").open()))
    assert {r["verdict"] for r in rows} == {"NG"}

    with Store.open(ws, url) as store:
        recorded = store.history.find()
        assert len(recorded) == n and {r.operator for r in recorded} == {"ann"}
        assert {r.model_ref for r in recorded} == {"demo plates@1"}
        assert all(len(r.image_sha256) == 64 for r in recorded)
        image, overlay = store.history.thumbnails(recorded[0].id)
        assert image[:2] == overlay[:2] == b"\xff\xd8"          # JPEG
        store.history.decide(recorded[0].id, "false_alarm", "dust", "ann")
        assert store.history.count(Filters(verdict="NG")) == n

    out_csv = tmp_path / "history.csv"
    code, out, err = _run(capsys, "history", "export", "--csv", out_csv, "--since",
                          "2000-01-01", "--data-dir", ws)
    assert code == 0, err
    exported = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert len(exported) == n and sum(r["decision"] == "false alarm" for r in exported) == 1
    code, _, _ = _run(capsys, "history", "export", "--csv", out_csv, "--since", "2999-01-01",
                      "--data-dir", ws)
    assert code == 0 and len(list(csv.DictReader(out_csv.open()))) == 0
    for ref, want in (("demo plates@1", n), ("demo plates@2", 0), ("demo plates", n)):
        code, _, err = _run(capsys, "history", "export", "--csv", out_csv, "--model", ref,
                            "--data-dir", ws)
        assert code == 0 and len(list(csv.DictReader(out_csv.open()))) == want, (ref, err)

    model_out = tmp_path / "exported.safetensors"
    code, out, err = _run(capsys, "models", "export", "demo plates@2", "-o", model_out,
                          "--data-dir", ws)
    assert code == 0, err
    with Store.open(ws, url) as store:
        assert model_out.read_bytes() == store.library.read_bytes(
            store.library.resolve("demo plates@2"))
    code, out, err = _run(capsys, "models", "import", model_out, "--name", "copy",
                          "--data-dir", ws)
    assert code == 0 and "as copy@1" in out, err
    code, out, err = _run(capsys, "models", "delete", "demo plates@1", "--data-dir", ws)
    assert code == 0 and "its history rows are kept" in out, err
    code, out, _ = _run(capsys, "models", "list", "--data-dir", ws)
    assert "demo plates@1" not in out and "demo plates@2" in out and "copy@1" in out
    code, out, err = _run(capsys, "history", "export", "--csv", out_csv, "--data-dir", ws)
    assert code == 0 and len(list(csv.DictReader(out_csv.open()))) == n


def test_data_dir_from_the_environment(demo: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env-ws"))
    code, _, err = _run(capsys, "fit", demo, "--save-as", "env", *SMALL)
    assert code == 0, err
    assert (tmp_path / "env-ws" / "inspector.db").is_file()
    code, out, _ = _run(capsys, "models", "list")
    assert "env@1" in out


def test_mistakes_are_one_line(demo: Path, workspace: tuple[Path, str | None], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    ws, _ = workspace
    code, _, err = _run(capsys, "fit", demo, *SMALL)
    assert code == 2 and "-o MODEL" in _error(err) and "--save-as" in _error(err)
    code, _, err = _run(capsys, "fit", demo, "--save-as", "  ", "--data-dir", ws, *SMALL)
    assert code == 1 and "--save-as: is empty" in _error(err)
    code, _, err = _run(capsys, "fit", demo, "--save-as", "x" * 500, "--data-dir", ws, *SMALL)
    assert code == 1 and "500 characters" in _error(err)
    code, _, err = _run(capsys, "models", "show", "nothing", "--data-dir", ws)
    assert code == 1 and "nothing: no model of that name" in _error(err)
    code, _, err = _run(capsys, "models", "export", "nothing@2", "-o", tmp_path / "x",
                        "--data-dir", ws)
    assert code == 1 and "no model of that name" in _error(err)
    code, _, err = _run(capsys, "models", "delete", "nothing", "--data-dir", ws)
    assert code == 1 and "nothing: no model of that name" in _error(err)
    bad = tmp_path / "bad.safetensors"
    bad.write_text("hello")
    code, _, err = _run(capsys, "models", "import", bad, "--data-dir", ws)
    assert code == 1 and "bad.safetensors" in _error(err)
    code, _, err = _run(capsys, "models", "--data-dir", ws)
    assert code == 2
    code, _, err = _run(capsys, "history", "export", "--csv", tmp_path / "h.csv", "--since",
                        "yesterday", "--data-dir", ws)
    assert code == 2 and "--since: 'yesterday' is not a date" in _error(err)
    code, _, err = _run(capsys, "predict", "--model", "nothing", demo / "test" / "good",
                        "--out", tmp_path / "p", "--data-dir", ws)
    assert code == 1 and "nothing: no model of that name" in _error(err)
    code, _, err = _run(capsys, "predict", "--model", "nothing@²", demo / "test" / "good",
                        "--out", tmp_path / "p", "--data-dir", ws)   # was a ValueError trace
    assert code == 1 and "nothing@²: no model of that name" in _error(err)
    code, _, err = _run(capsys, "predict", tmp_path / "m.safetensors", demo / "test",
                        "--out", tmp_path / "p", "--record")
    assert code == 2 and "--record needs --model" in _error(err)
    code, out, _ = _run(capsys, "models", "list", "--data-dir", ws)
    assert "no models" in out


def test_a_database_that_cannot_be_reached_is_one_line(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str],
                                                       ) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+psycopg://me:secret@127.0.0.1:1/none")
    code, _, err = _run(capsys, "models", "list", "--data-dir", tmp_path)
    line = _error(err)
    assert code == 1 and "127.0.0.1" in line and "secret" not in line


def test_recorded_verdicts_follow_the_models_area_rule(demo: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """A model judged by defect area: the history gets the verdicts results.csv prints, not
    ones re-derived from the score (they disagreed: every row NG by score, OK by area)."""
    ws = tmp_path / "ws"
    code, _, err = _run(capsys, "fit", demo, "--save-as", "plates", "--data-dir", ws, *SMALL,
                        "--verdict-rule", "area")
    assert code == 0, err
    with Store.open(ws) as store:      # every score is NG by score, no pixel is a defect
        store.library.set_thresholds(store.library.resolve("plates@1"), 1e-3, 1e12)
    code, _, err = _run(capsys, "predict", "--model", "plates", demo / "test", "-r",
                        "--out", tmp_path / "pred", "--record", "--data-dir", ws,
                        "--device", "cpu")
    assert code == 0, err
    printed = {r["name"]: r["verdict"]
               for r in csv.DictReader((tmp_path / "pred" / "results.csv").open())}
    assert set(printed.values()) == {"OK"}
    with Store.open(ws) as store:
        recorded = {r.file_name: r.verdict for r in store.history.find()}
    assert recorded == printed


def test_models_rename_default_thresholds(demo: Path, workspace: tuple[Path, str | None],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The library's rename, default and operating thresholds from the command line (the
    docs named ``padim models rename``; it was "invalid choice"), recorded as the CLI user's."""
    ws, url = workspace
    for seed in ("1", "2"):
        code, _, err = _run(capsys, "fit", demo, "--save-as", "tr", "--data-dir", ws, *SMALL,
                            "--seed", seed)
        assert code == 0, err
    code, out, err = _run(capsys, "models", "rename", "tr", "line 3", "--data-dir", ws)
    assert code == 0 and "renamed tr to line 3 (2 version(s))" in out, err
    code, out, err = _run(capsys, "models", "default", "line 3@1", "--data-dir", ws)
    assert code == 0 and "line 3 means line 3@1 now (was the newest)" in out, err
    code, out, err = _run(capsys, "models", "thresholds", "line 3@2", "--image", "40",
                          "--pixel", "35", "--data-dir", ws)
    assert code == 0 and "line 3@2: operating thresholds saved: image 40, pixel 35" in out, err
    code, out, err = _run(capsys, "models", "thresholds", "line 3@2", "--pixel", "30",
                          "--data-dir", ws)
    assert code == 0 and "image 40, pixel 30 (was image 40, pixel 35)" in out, err
    with Store.open(ws, url) as store:
        assert [e.name for e in store.library.models()] == ["line 3"]
        assert store.library.resolve("line 3").version == 1
        v2 = store.library.resolve("line 3@2")
        assert (v2.operating_image_threshold, v2.operating_pixel_threshold) == (40, 30)
        events = store.audit.find()
        assert {e.action for e in events} >= {"model.rename", "model.default",
                                               "model.thresholds"}
        assert all(e.actor.endswith("(cli)") for e in events if e.action != "model.add")

    code, out, err = _run(capsys, "models", "default", "line 3", "--clear", "--data-dir", ws)
    assert code == 0 and "means its newest (line 3@2) (was line 3@1)" in out, err
    code, out, err = _run(capsys, "models", "thresholds", "line 3@2", "--clear", "--data-dir", ws)
    assert code == 0 and "cleared; the calibrated ones apply" in out, err
    with Store.open(ws, url) as store:
        v2 = store.library.resolve("line 3")
        assert v2.version == 2 and not v2.is_default
        assert v2.operating_image_threshold is v2.operating_pixel_threshold is None

    for argv, code_wanted, problem in [
        (["rename", "nothing", "x"], 1, "nothing: no model of that name"),
        (["rename", "line 3", " "], 1, "new model name: is empty"),
        (["default", "line 3"], 2, "give NAME@VERSION to pin that version, or NAME --clear"),
        (["default", "line 3@2", "--clear"], 2, "or NAME --clear"),
        (["default", "line 3@9"], 1, "line 3@9: no such version"),
        (["thresholds", "line 3", "--image", "4"], 2, "line 3: give NAME@VERSION"),
        (["thresholds", "line 3@2"], 2, "give --image X and/or --pixel Y, or --clear"),
        (["thresholds", "line 3@2", "--image", "5", "--clear"], 2, "or --clear"),
        (["thresholds", "line 3@2", "--image", "-1"], 2, "--image: must be a positive number"),
        (["thresholds", "line 3@2", "--pixel", "nan"], 2, "--pixel: must be a positive"),
        (["thresholds", "line 3@9", "--image", "4"], 1, "line 3@9: no such version"),
    ]:
        code, _, err = _run(capsys, "models", *argv, "--data-dir", ws)
        assert code == code_wanted and problem in _error(err), (argv, err)


def test_deleting_a_whole_model_needs_all_versions(demo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``models delete tr`` (a typo of ``tr@3``) deleted every version without asking."""
    ws = tmp_path / "ws"
    for _ in range(2):
        assert _run(capsys, "fit", demo, "--save-as", "tr", "--data-dir", ws, *SMALL)[0] == 0
    code, _, err = _run(capsys, "models", "delete", "tr", "--data-dir", ws)
    line = _error(err)
    assert code == 2 and "all 2 version(s)" in line and "--all-versions" in line
    assert "NAME@VERSION" in line
    code, _, err = _run(capsys, "models", "delete", "tr@1", "--all-versions", "--data-dir", ws)
    assert code == 2 and "--all-versions deletes a whole model" in _error(err)
    with Store.open(ws) as store:
        assert len(store.library.get("tr").versions) == 2
    code, out, err = _run(capsys, "models", "delete", "tr", "--all-versions", "--data-dir", ws)
    assert code == 0 and "deleted tr (2 version(s))" in out, err
    with Store.open(ws) as store:
        assert store.library.models() == []


def test_update_says_what_became_of_the_operating_thresholds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """tr@11 operated at image 40 / pixel 35; ``padim update tr new/ --save-as tr`` printed
    only the new calibrated thresholds, and ``serve --follow`` moved the line without a word.
    Also: a folder named ``tr`` in the current directory hid the library model ("model file
    not found"); the version's update log and source show in ``models show``."""
    demo = make_demo_set(tmp_path / "demo", n_train=8, n_test_good=4, n_test_defect=1,
                         size=128)
    ws = tmp_path / "ws"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tr").mkdir()
    assert _run(capsys, "fit", demo, "--save-as", "tr", "--data-dir", ws, *SMALL)[0] == 0
    with Store.open(ws) as store:
        v1 = store.library.set_thresholds(store.library.resolve("tr@1"), 40, 35)
        store.library.set_default("tr", 1)
    good = sorted((demo / "test" / "good").iterdir())
    code, out, err = _run(capsys, "update", "tr", *good[:2], "--save-as", "tr", "--include-ng",
                          "--data-dir", ws, "--device", "cpu")
    assert code == 0, err
    assert "model tr@1 from the library" in out and "library      tr@2" in out
    with Store.open(ws) as store:
        v2 = store.library.resolve("tr@2")
    assert (f"tr@1 had operating thresholds image 40, pixel 35; tr@2 starts with its "
            f"calibrated thresholds image {v2.image_threshold:.4g}, pixel "
            f"{v2.pixel_threshold:.4g} (set operating thresholds again with 'padim models "
            "thresholds tr@2 --image X --pixel Y')") in out
    assert "tr still means tr@1 (its pinned default version)" in out
    assert v2.source == "update" and v2.operating_image_threshold is None

    code, out, err = _run(capsys, "update", "tr@2", good[2], "--save-as", "tr", "--include-ng",
                          "--data-dir", ws, "--device", "cpu")
    assert code == 0 and "operating    " not in out, err        # tr@2 had none saved
    code, out, err = _run(capsys, "models", "show", "tr@3", "--data-dir", ws)
    assert code == 0, err
    assert "source       update, created" in out
    lines = out.splitlines()
    start = lines.index("updates      2 (images added to the fitted model, oldest first)")
    first, second = lines[start + 1:start + 3]
    assert first.endswith(f"+2 image(s), 8 -> 10 training images; thresholds image "
                          f"{v1.image_threshold:.4g} -> {v2.image_threshold:.4g}, pixel "
                          f"{v1.pixel_threshold:.4g} -> {v2.pixel_threshold:.4g}")
    assert "+1 image(s), 10 -> 11 training images; thresholds image " \
           f"{v2.image_threshold:.4g} -> " in second
    code, out, _ = _run(capsys, "models", "show", "tr@1", "--data-dir", ws)
    assert "source       fit," in out and "updates" not in out

    code, out, err = _run(capsys, "fit", demo, "--save-as", "tr", "--data-dir", ws, *SMALL)
    assert code == 0 and "tr@1 had operating thresholds image 40, pixel 35; tr@4 starts" in out

    (tmp_path / "nothing").mkdir()
    code, _, err = _run(capsys, "update", "nothing", good[3], "--save-as", "tr",
                        "--data-dir", ws, "--device", "cpu")
    assert code == 1 and "nothing: is a folder, not a model file" in _error(err)


def test_export_and_evaluate_take_a_library_version(demo: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Only predict/update/serve took NAME@V: 'padim export tr' and 'evaluate --model tr@3'
    said 'model file not found', so comparing versions meant exporting each one first."""
    ws = tmp_path / "ws"
    assert _run(capsys, "fit", demo, "--save-as", "line", "--data-dir", ws, *SMALL)[0] == 0
    code, out, err = _run(capsys, "export", "line@1", "-o", tmp_path / "line.onnx",
                          "--data-dir", ws)
    assert code == 0, err
    assert "exporting line@1 ->" in out and (tmp_path / "line.onnx").exists()
    code, out, err = _run(capsys, "evaluate", demo, "--model", "line", "--data-dir", ws,
                          "--device", "cpu")
    assert code == 0, err
    assert "model line@1 from the library" in out and "image AUROC" in out
    code, _, err = _run(capsys, "export", "line@7", "-o", tmp_path / "x.onnx", "--data-dir", ws)
    assert code == 1 and "line@7" in err and "no such version" in err
