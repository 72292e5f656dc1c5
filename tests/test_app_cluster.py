"""AppTest: the Train page with ``PADIM_DASK_SCHEDULER`` set — it lists the cluster's workers
and fits on them (demo set, uploads, a folder under ``PADIM_DASK_DATA_ROOT``), with the same
thresholds as a fit in one process; an unreachable scheduler is one error and the page works.

A LocalCluster of 2 one-thread workers in this process (processes=False, tcp), so the
scheduler's own task counts show that the shards ran there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from distributed import LocalCluster

from inspector_ui import cluster_panel, widgets
from inspector_ui import testing as t
from padim_core import PadimModel
from padim_core.store import Store

pytestmark = [pytest.mark.usefixtures("demo_env"),
              pytest.mark.filterwarnings("ignore:only .* training images"),
              pytest.mark.filterwarnings("ignore:Port .* is already in use")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as c:
        yield c


@pytest.fixture
def scheduler(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv(cluster_panel.SCHEDULER_ENV, cluster.scheduler_address)
    cluster_panel._connection.clear()
    yield cluster
    cluster_panel._connection.clear()


def shards_run(cluster: Any) -> int:
    """Shard tasks the scheduler has seen computed (Dask drops the leading underscore)."""
    prefix = cluster.scheduler.task_prefixes.get("fit_shard")
    return 0 if prefix is None else int(prefix.state_counts.get("memory", 0))


def test_no_scheduler_no_cluster_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cluster_panel.SCHEDULER_ENV, raising=False)
    at = t.open_page(t.new_app(), "train")
    assert not t.exceptions(at)
    assert not [s for s in at.subheader if s.value == "Dask cluster"]


def test_workers_shown_and_demo_fit_on_the_cluster(scheduler: Any, demo_env: Path,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ticks: list[tuple[int, int, str]] = []
    real = widgets.Progress.__call__

    def recording(self, done: int, total: int, stage: str = "") -> None:  # type: ignore[no-untyped-def]
        ticks.append((done, total, stage))
        real(self, done, total, stage)
    monkeypatch.setattr(widgets.Progress, "__call__", recording)
    at = t.use_small_settings(t.open_page(t.new_app(), "train"))
    assert not t.exceptions(at) and not t.errors(at)
    assert t.metric(at, "Workers") == "2" and t.metric(at, "Threads") == "2"
    workers = next(d.value for d in at.dataframe if "memory limit (GB)" in d.value.columns)
    assert len(workers) == 2 and set(workers["threads"]) == {1}
    assert at.radio(key="cluster_source").options == ["Images uploaded above", "Demo set"]
    assert at.button(key="cluster_fit").disabled          # nothing uploaded yet
    at.radio(key="cluster_source").set_value("demo").run()
    before = shards_run(scheduler)
    at.button(key="cluster_fit").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    slot = t.slot(at)
    assert slot is not None and "on the Dask cluster" in slot.origin
    assert shards_run(scheduler) > before
    # the bar moved as shards came back: image counts of whole shards, up to all 8 images
    shard_ticks = [done for done, total, stage in ticks if stage == "features"]
    assert shard_ticks and shard_ticks[-1] == 8 and shard_ticks == sorted(shard_ticks)
    assert any("library as **demo@1**" in str(s.value) for s in at.success)
    with Store.open(tmp_path / "workspace") as store:
        assert [v.ref for e in store.library.models() for v in e.versions] == ["demo@1"]

    # the same thresholds as one process with one torch thread (as each worker has)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = PadimModel(**t.SMALL_MODEL).fit(
            sorted((demo_env / "train" / "good").glob("*.png")))
    finally:
        torch.set_num_threads(threads)
    assert slot.model.image_threshold_ == pytest.approx(local.image_threshold_, rel=1e-4)
    assert slot.model.pixel_threshold_ == pytest.approx(local.pixel_threshold_, rel=1e-4)


def test_uploads_and_a_server_folder(scheduler: Any, demo_env: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cluster_panel.DATA_ROOT_ENV, str(demo_env.parent))
    at = t.use_small_settings(t.open_page(t.new_app(), "train"))
    at.file_uploader(key="trainA_files").set_value(t.train_uploads(demo_env)[:5]).run()
    at.button(key="cluster_fit").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert int(t.slot(at).model.n_train_images_) == 5

    at.radio(key="cluster_source").set_value("folder").run()
    at.text_input(key="cluster_folder").set_value("../..").run()
    at.button(key="cluster_fit").click().run()
    assert any("is outside" in e for e in t.errors(at))
    assert int(t.slot(at).model.n_train_images_) == 5       # the model stays

    at.text_input(key="cluster_folder").set_value(demo_env.name).run()
    at.button(key="cluster_fit").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert int(t.slot(at).model.n_train_images_) == 8      # the category's train/good


def test_unreachable_scheduler_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cluster_panel.SCHEDULER_ENV, "tcp://127.0.0.1:9")
    cluster_panel._connection.clear()
    at = t.open_page(t.new_app(), "train")
    assert not t.exceptions(at)
    assert [e for e in t.errors(at) if "no Dask scheduler answered within" in e]
    assert at.button(key="trainA_demo")                    # training here still offered


def test_a_scheduler_that_went_away_is_an_error_and_the_next_visit_connects_again() -> None:
    """The cached client of a scheduler that stopped closes itself and then answers {}
    without raising: the panel showed 0 workers and a disabled button until the app was
    restarted. Now it is one error, and the next call connects afresh."""
    import time

    from padim_core.errors import InvalidInputError

    gone = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                        dashboard_address=None)
    address = gone.scheduler_address
    cluster_panel._connection.clear()
    try:
        client, info = cluster_panel.cluster_info(address)
        assert info.threads == 1
        gone.close()
        deadline = time.monotonic() + 60
        while client.status == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(InvalidInputError, match="scheduler"):
            cluster_panel.cluster_info(address)
        with pytest.raises(InvalidInputError, match="no Dask scheduler answered within"):
            cluster_panel.cluster_info(address)              # a new connection was tried
    finally:
        cluster_panel._connection.clear()
        gone.close()
