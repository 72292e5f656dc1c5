"""``padim serve --model NAME[@VERSION]`` serves a library version with its saved thresholds.

Why: on the line the model is picked by name from the workspace, as ``padim predict --model``
does; serving a file exported by hand loses the operating thresholds set on the Models page.
uvicorn.run is replaced by a recorder, and the recorded app is driven with TestClient.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import uvicorn
from fastapi.testclient import TestClient

from padim_core import PadimModel
from padim_core.cli import main
from padim_core.demo import make_demo_set
from padim_core.store import DATA_DIR_ENV, DATABASE_URL_ENV, Store

pytestmark = pytest.mark.filterwarnings("ignore:only .* training images")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("srvlib") / "demo", n_train=8,
                         n_test_good=1, n_test_defect=1, size=128)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The apps ``padim serve`` would have run (uvicorn.run records instead of serving)."""
    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: apps.append(app))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    return apps


def test_serve_a_library_version_with_its_saved_thresholds(
        demo: Path, tmp_path: Path, served: list[Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    model = PadimModel(d=16, image_size=96, crop=96, device="cpu").fit(
        sorted((demo / "train" / "good").glob("*.png")))
    with Store.open(ws) as store:
        first = store.library.save(model, "plates")
        store.library.save(model, "plates")
        store.library.set_thresholds(first, 123.5, 45.25)

    assert main(["serve", "--model", "plates@1", "--data-dir", str(ws), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "serving plates@1 from" in out
    with TestClient(served[-1]) as client:
        card = client.get("/model").json()
        image = next((demo / "test").glob("*/*.png"))
        answer = client.post("/predict", files={"file": (image.name, image.read_bytes(),
                                                         "image/png")}).json()
    assert answer["thresholds"] == {"image": 123.5, "pixel": 45.25}
    assert answer["model"]["version"] == card["model"]["version"] == "plates@1"
    assert card["model"]["d"] == 16

    assert main(["serve", "--model", "plates", "--data-dir", str(ws), "--device", "cpu"]) == 0
    assert "serving plates@2 from" in capsys.readouterr().out


@pytest.mark.parametrize("argv, problem", [
    (["serve"], "give a MODEL file or --model NAME[@VERSION]"),
    (["serve", "m.safetensors", "--model", "plates"], "give a MODEL file or --model"),
    (["serve", "--model", "nothing@3"], "nothing"),
])
def test_serve_mistakes_are_one_line(argv: list[str], problem: str, tmp_path: Path,
                                     served: list[Any],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*argv, "--data-dir", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert code in (1, 2) and not served
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("padim: error: ") and problem in lines[0], err


def _wait_for(client: TestClient, version: str, seconds: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        health = client.get("/health").json()
        if health["version"] == version or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


def _test_part_and_three_models(demo: Path) -> tuple[Path, list[PadimModel]]:
    """A test image and three small models of the demo set (d = 16, 8, 12: told apart by
    their scores)."""
    images = sorted((demo / "train" / "good").glob("*.png"))
    return next((demo / "test").glob("*/*.png")), [
        PadimModel(d=d, image_size=96, crop=96, device="cpu").fit(images) for d in (16, 8, 12)]


def test_follow_switches_versions_and_thresholds_without_a_restart(
        demo: Path, tmp_path: Path, served: list[Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The line keeps up with the library: a new version (e.g. after *Accept as normal*), a
    changed default and thresholds saved on the Models page reach the answers; a version
    whose file is gone is logged and the one before goes on serving."""
    ws = tmp_path / "ws"
    part, (first, second, third) = _test_part_and_three_models(demo)
    with Store.open(ws) as store:
        v1 = store.library.save(first, "plates")

    argv = ["serve", "--model", "plates", "--follow", "--follow-seconds", "0.05",
            "--data-dir", str(ws), "--device", "cpu"]
    assert main(argv) == 0
    assert "serving plates@1 from" in capsys.readouterr().out

    def ask(client: TestClient) -> dict[str, Any]:
        return client.post("/predict", files={"file": (part.name, part.read_bytes(),
                                                        "image/png")}).json()

    with TestClient(served[-1]) as client, Store.open(ws) as store:
        before = ask(client)
        assert (before["model"]["version"], before["model"]["d"]) == ("plates@1", 16)

        v2 = store.library.save(second, "plates")                # the newest is served
        assert _wait_for(client, "plates@2")["version"] == "plates@2"
        answer = ask(client)
        assert (answer["model"]["version"], answer["model"]["d"]) == ("plates@2", 8)
        assert answer["score"] != pytest.approx(before["score"])
        model_id = answer["model"]["id"]

        store.library.set_thresholds(v2, 1e9, 2e9)                # Models page: save thresholds
        deadline = time.monotonic() + 60
        while ask(client)["thresholds"]["image"] != 1e9 and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = ask(client)
        assert answer["thresholds"] == {"image": 1e9, "pixel": 2e9}
        assert answer["verdict"] == "OK" and answer["model"]["id"] == model_id

        # a version whose file is missing from the start (unlinking it after the save raced
        # the follower, which could load it in between)
        store.blobs.publish = lambda sha, staged: (staged.unlink(), store.blobs.path(sha))[1]
        try:
            v3 = store.library.save(third, "plates")
        finally:
            del store.blobs.publish
        assert not store.blobs.path(v3.sha256).exists()
        time.sleep(1.0)
        assert client.get("/health").json()["version"] == "plates@2"
        assert ask(client)["model"]["version"] == "plates@2"

        store.library.set_default("plates", v1.version)            # pinned back by a default
        assert _wait_for(client, "plates@1")["version"] == "plates@1"
        assert ask(client)["model"] == before["model"]
        overlay = client.post("/predict?overlay=png",
                              files={"file": (part.name, part.read_bytes(), "image/png")})
        assert overlay.headers["X-Padim-Version"] == "plates@1"
    log = capsys.readouterr().out
    assert "now serving plates@2: image" in log and "thresholds of plates@2: image 1e+09" in log
    assert log.count("cannot follow the library") == 1, log     # once, not every 50 ms
    assert "still serving plates@2" in log and "now serving plates@1" in log
    # the thresholds the line leaves are said too, not only the version
    assert "(was plates@2: image 1e+09, pixel 2e+09)" in log, log


def test_follow_keeps_following_a_renamed_model(
        demo: Path, tmp_path: Path, served: list[Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    """An admin renamed plates to "plates😀": the follower looked the name up, logged "no
    model of that name; still serving plates@1" forever and never took a new version. It
    follows the model by its versions' ids now: says the rename once, names the version as
    it is called now (also in the overlay header), takes versions saved under the new name,
    and does not jump to a new model that takes the old name."""
    ws = tmp_path / "ws"
    part, (first, second, third) = _test_part_and_three_models(demo)
    with Store.open(ws) as store:
        store.library.save(first, "plates")

    assert main(["serve", "--model", "plates", "--follow", "--follow-seconds", "0.05",
                 "--data-dir", str(ws), "--device", "cpu"]) == 0
    assert "serving plates@1 from" in capsys.readouterr().out

    def ask(client: TestClient, query: str = "") -> Any:
        return client.post(f"/predict{query}",
                           files={"file": (part.name, part.read_bytes(), "image/png")})

    with TestClient(served[-1]) as client, Store.open(ws) as store:
        store.library.rename("plates", "plates😀")
        assert _wait_for(client, "plates😀@1")["version"] == "plates😀@1"
        assert ask(client).json()["model"]["version"] == "plates😀@1"

        store.library.save(second, "plates😀")                    # after the rename
        assert _wait_for(client, "plates😀@2")["version"] == "plates😀@2"
        answer = ask(client).json()
        assert (answer["model"]["version"], answer["model"]["d"]) == ("plates😀@2", 8)
        overlay = ask(client, "?overlay=png")
        assert overlay.status_code == 200, overlay.text
        assert unquote(overlay.headers["X-Padim-Version"]) == "plates😀@2"

        store.library.save(third, "plates")          # another model, under the old name
        store.library.delete("plates😀", 1)           # and the version first served gone
        time.sleep(1.0)
        assert client.get("/health").json()["version"] == "plates😀@2"
        assert ask(client).json()["model"]["d"] == 8
    log = capsys.readouterr().out
    assert log.count("plates was renamed to plates😀; following it") == 1, log
    assert "cannot follow the library" not in log, log
    assert "now serving plates😀@2" in log and "now serving plates@" not in log, log


@pytest.mark.parametrize("extra, problem", [
    (["--model", "plates@1", "--follow"], "--follow follows the library's choice"),
    (["m.safetensors", "--follow"], "--follow follows the library's choice"),
    (["--model", "plates", "--follow", "--follow-seconds", "0"], "--follow-seconds: must be"),
])
def test_follow_mistakes_are_usage_errors(extra: list[str], problem: str, tmp_path: Path,
                                          served: list[Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", *extra, "--data-dir", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert code == 2 and not served
    assert problem in err, err
