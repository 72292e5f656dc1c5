"""``padim serve --model NAME[@VERSION]`` serves a library version with its saved thresholds.

Why: on the line the model is picked by name from the workspace, as ``padim predict --model``
does; serving a file exported by hand loses the operating thresholds set on the Models page.
uvicorn.run is replaced by a recorder, and the recorded app is driven with TestClient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
