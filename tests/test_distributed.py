"""Fit and predict on a Dask LocalCluster (2 worker processes) equal the single-process ones,
also when a worker dies in the middle of a fit; an unreachable scheduler is one clear error.

Small on purpose (the test machine has 2 shared cores): random-weight backbones on 32-pixel
crops, a few images, one cluster for the whole module.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import torch

from padim_core import distributed as on_dask
from padim_core import model as model_module
from padim_core.cli import main
from padim_core.errors import InvalidInputError
from padim_core.model import PadimModel
from padim_core.visualize import encode_png

SMALL = dict(backbone="resnet18", weights="random", d=100, image_size=40, crop=32, seed=5,
             device="cpu", batch_size=2)
pytestmark = pytest.mark.filterwarnings("ignore:only .* training images")
# wide_resnet50_2 is the backbone with more than 550 channels
WIDE = dict(SMALL, backbone="wide_resnet50_2", d=550)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with on_dask.connect("local:2") as c:
        yield c


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Local fits and predictions with one torch thread, as each worker has: the backbone's
    float32 rounding depends on the thread count (about 1e-5 relative), and these tests
    compare to 1e-9."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Nine textures as PNG files and, fourth, one file that is not an image."""
    folder = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(9):
        path = folder / f"part_{i}.png"
        path.write_bytes(encode_png(rng.integers(60, 200, (40, 40, 3), dtype=np.uint8)))
        paths.append(path)
    broken = folder / "broken.png"
    broken.write_bytes(b"not an image")
    paths.insert(3, broken)
    return paths


@pytest.fixture
def sums(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(n, mean, covariance) of every statistics store fit finalizes in this process."""
    seen: list[tuple[int, np.ndarray, np.ndarray]] = []
    real = model_module.finalize

    def recording(stats, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((stats.n, np.array(stats.mean()), np.array(stats.covariance())))
        return real(stats, *args, **kwargs)

    monkeypatch.setattr(model_module, "finalize", recording)
    return seen


def _assert_same_fit(a: PadimModel, b: PadimModel,
                     sums: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
    (n_a, mean_a, cov_a), (n_b, mean_b, cov_b) = sums
    assert n_a == n_b == a.n_train_images_ == b.n_train_images_
    np.testing.assert_allclose(mean_b, mean_a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov_b, cov_a, rtol=1e-9, atol=1e-12)
    assert b.image_threshold_ == pytest.approx(a.image_threshold_, rel=1e-6)
    assert b.pixel_threshold_ == pytest.approx(a.pixel_threshold_, rel=1e-6)
    np.testing.assert_allclose(b.calibration_scores_, a.calibration_scores_, rtol=1e-6)
    assert b.skipped_ == a.skipped_
    assert [name for name, _ in a.skipped_] == ["broken.png"]
    assert b.train_sha256_ == a.train_sha256_                 # what updates must not add again
    assert len(a.train_sha256_) == a.n_train_images_


@pytest.mark.parametrize("config, packed", [(SMALL, None), (WIDE, True)],
                         ids=["d100", "d550-packed"])
def test_two_worker_fit_equals_the_single_process_fit(
        client: Any, images: list[Path], sums: list, config: dict, packed: bool | None,
) -> None:
    """Shards of 2 images (5 shards, an odd merge tree), the unreadable file in the second;
    at d = 550 the shards' sums travel and merge as upper triangles."""
    local = PadimModel(**config).fit(images)
    remote = on_dask.fit(PadimModel(**config), images, client, shard_images=2, packed=packed)
    _assert_same_fit(local, remote, sums)
    assert remote.card()["device"] == (                             # where it ran
        f"Dask: 2 worker(s), 2 thread(s), {client.scheduler.address}")


def test_cluster_predict_writes_the_same_results_as_a_local_one(
        client: Any, images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    model_file = tmp_path / "model.safetensors"
    PadimModel(**dict(SMALL, d=20)).fit(images).save(model_file)
    folder = images[0].parent
    address = client.scheduler.address
    outputs = {}
    for label, extra in (("local", []), ("cluster", ["--scheduler", address])):
        outputs[label] = tmp_path / label
        code = main(["predict", str(model_file), str(folder), "--out", str(outputs[label]),
                     "--device", "cpu", "--no-progress", *extra])
        assert code == 0, capsys.readouterr().err
    for name in ("results.csv", "skipped.csv"):
        assert (outputs["cluster"] / name).read_text() == (outputs["local"] / name).read_text()
    overlays = sorted(p.name for p in (outputs["local"] / "overlays").iterdir())
    assert len(overlays) == 9
    for name in overlays:
        assert ((outputs["cluster"] / "overlays" / name).read_bytes()
                == (outputs["local"] / "overlays" / name).read_bytes())


def test_unreachable_scheduler_is_one_error_before_any_work(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.safetensors"
    code = main(["fit", str(images[0].parent), "-o", str(out), "--backbone", "resnet18",
                 "--weights", "random", "--no-progress", "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"padim: error: tcp://127.0.0.1:9: no Dask scheduler answered within "
                   f"{on_dask.CONNECT_TIMEOUT_S} s (OSError)"]
    assert not out.exists()
    assert main(["fit", str(images[0].parent), "-o", str(out), "--cluster", "local:two"]) == 2


class SlowOnce(os.PathLike):
    """A path whose first opening on a Dask worker writes that worker's pid to ``marker``
    and then hangs, so the test can kill the worker while it runs the shard."""

    def __init__(self, path: Path, marker: Path) -> None:
        self.path, self.marker = path, marker

    def __fspath__(self) -> str:
        from distributed import get_worker

        try:
            get_worker()
        except ValueError:      # not on a worker
            return str(self.path)
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            time.sleep(120)
        return str(self.path)


def fit_until_a_worker_hangs(config: dict[str, Any], images: list[Any], client: Any,
                             marker: Path, **kwargs: Any,
                             ) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``on_dask.fit`` in a thread and wait until a worker hangs in ``SlowOnce`` (it
    wrote ``marker``); the thread, and what it leaves: ``model`` or ``error``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["model"] = on_dask.fit(PadimModel(**config), images, client,
                                           shard_images=2, **kwargs)
        except BaseException as err:   # noqa: BLE001 - checked by the main thread
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while not marker.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), outcome.get("error")
    return thread, outcome


def test_a_worker_killed_during_a_fit_changes_nothing(
        client: Any, images: list[Path], tmp_path: Path, sums: list) -> None:
    """The shard of the killed worker is recomputed elsewhere; the model is bit for bit the
    one an undisturbed cluster fit gives (so no shard is counted twice)."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    config = dict(SMALL, d=20)
    names = [p.name for p in images]
    undisturbed = on_dask.fit(PadimModel(**config), images, client, names=names,
                              shard_images=2)
    marker = tmp_path / "worker.pid"
    slow = [*images[:4], SlowOnce(images[4], marker), *images[5:]]
    thread, fitted = fit_until_a_worker_hangs(config, slow, client, marker, names=names)
    time.sleep(0.2)   # the pid is written before the hang starts
    os.kill(int(marker.read_text()), signal.SIGKILL)
    thread.join(180)
    assert not thread.is_alive()
    assert "error" not in fitted, fitted.get("error")
    again = fitted["model"]
    assert again.n_train_images_ == undisturbed.n_train_images_ == 9
    np.testing.assert_array_equal(again.mean_, undisturbed.mean_)
    np.testing.assert_array_equal(again.whitener_, undisturbed.whitener_)
    np.testing.assert_array_equal(again.calibration_scores_, undisturbed.calibration_scores_)
    assert again.skipped_ == undisturbed.skipped_
    assert sums[0][0] == sums[1][0] == 9
    np.testing.assert_array_equal(sums[1][1], sums[0][1])


def test_connect_refuses_a_malformed_local_cluster() -> None:
    with pytest.raises(InvalidInputError, match="local:N"), on_dask.connect("local:0"):
        pass


def test_a_cluster_left_without_workers_stops_the_fit_with_one_error(
        images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker gone mid-fit: Dask would wait for one forever (the app showed
    "starting…", the CLI printed nothing); after NO_WORKERS_S the fit stops with a
    ClusterError naming the scheduler and what to do."""
    from distributed import Client, LocalCluster

    from padim_core.errors import ClusterError

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(on_dask, "NO_WORKERS_S", 2.0)
    marker = tmp_path / "worker.pid"
    slow = [*images[:4], SlowOnce(images[4], marker), *images[5:]]
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        thread, outcome = fit_until_a_worker_hangs(dict(SMALL, d=20), slow, client, marker)
        cluster.scale(0)                                  # every worker leaves for good
        thread.join(60)
        assert not thread.is_alive(), "the fit still waits for a worker"
    err = outcome.get("error")
    assert isinstance(err, ClusterError), err
    assert "no worker for 2 s, so the fit stopped" in str(err) and "dask worker" in str(err)
