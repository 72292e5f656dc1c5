"""LiveModel: the snapshot a scoring service answers with, swapped when the library changes.

Why: a service on the line must never stop answering because the library changed or a new
version failed to load, and must never judge a part with a half-switched model.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from padim_core import PadimModel, live_model
from padim_core.demo import make_demo_set
from padim_core.live_model import LiveModel, Served

pytestmark = pytest.mark.filterwarnings("ignore:only .* training images")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[PadimModel, PadimModel]:
    demo = make_demo_set(tmp_path_factory.mktemp("live") / "demo", n_train=6, n_test_good=1,
                         n_test_defect=1, size=128)
    images = sorted((demo / "train" / "good").glob("*.png"))
    return (PadimModel(d=8, image_size=64, crop=64, device="cpu").fit(images),
            PadimModel(d=4, image_size=64, crop=64, device="cpu").fit(images))


def test_served_of_takes_the_models_thresholds_unless_given(
        models: tuple[PadimModel, PadimModel]) -> None:
    model = models[0]
    own = Served.of(model)
    assert (own.image_threshold, own.pixel_threshold) == (model.image_threshold_,
                                                          model.pixel_threshold_)
    saved = Served.of(model, "plates@2", 7, (1.5, 2.5))
    assert saved.thresholds == {"image": 1.5, "pixel": 2.5}
    assert saved.identity["version"] == "plates@2" and saved.identity["d"] == 8


def test_swaps_after_warm_up_and_logs_a_failure_once(
        models: tuple[PadimModel, PadimModel], monkeypatch: pytest.MonkeyPatch) -> None:
    old_model, new_model = models
    first = Served.of(old_model, "plates@1", 1)
    answers: list[object] = []
    lines: list[str] = []
    live = LiveModel(first, lambda served: answers.pop(0), log=lines.append)

    warmed: list[tuple[PadimModel, Served]] = []
    monkeypatch.setattr(live_model, "warm_up",
                        lambda model: warmed.append((model, live.current)))

    answers += [None]
    assert live.check_now() is False and live.current is first and lines == []

    def broken(served: Served) -> Served:
        raise KeyError("header")
    live.poll = broken
    assert live.check_now() is False and live.check_now() is False
    assert live.current is first
    assert lines == ["cannot follow the library ('header'); still serving plates@1"]

    live.poll = lambda served: answers.pop(0)
    answers += [replace(first, image_threshold=9.0)]          # thresholds only: no load
    assert live.check_now() is True and warmed == []
    assert live.current.image_threshold == 9.0 and live.current.model is old_model

    second = Served.of(new_model, "plates@2", 2)
    answers += [second]
    assert live.check_now() is True
    assert warmed[0][0] is new_model and warmed[0][1].ref == "plates@1"   # warmed, then swapped
    assert live.current is second
    assert lines[-2:] == ["thresholds of plates@1: image 9, pixel "      # what they were
                          f"{first.pixel_threshold:.4g} (was image "
                          f"{first.image_threshold:.4g}, pixel {first.pixel_threshold:.4g})",
                          f"now serving plates@2: image {second.image_threshold:.4g}, "
                          f"pixel {second.pixel_threshold:.4g} (was plates@1: image 9, "
                          f"pixel {first.pixel_threshold:.4g})"]


def test_thread_follows_and_stops(models: tuple[PadimModel, PadimModel]) -> None:
    first = Served.of(models[0], "plates@1", 1)

    class Poll:
        calls, closed = 0, False

        def __call__(self, served: Served) -> Served | None:
            self.calls += 1
            return None if self.calls < 3 else replace(served, pixel_threshold=4.0)

        def close(self) -> None:
            self.closed = True

    poll = Poll()
    live = LiveModel(first, poll, every=0.01, log=lambda line: None)
    live.start()
    deadline = time.monotonic() + 30
    while live.current.pixel_threshold != 4.0 and time.monotonic() < deadline:
        time.sleep(0.01)
    live.stop()
    assert live.current.pixel_threshold == 4.0 and poll.calls >= 3 and poll.closed
    calls = poll.calls
    time.sleep(0.05)
    assert poll.calls == calls                     # stopped: no more looks


def test_without_poll_nothing_runs(models: tuple[PadimModel, PadimModel]) -> None:
    live = LiveModel(Served.of(models[0]))
    live.start()
    assert live.check_now() is False and live._thread is None
    live.stop()


def test_a_rename_is_swapped_in_without_a_line_of_its_own(
        models: tuple[PadimModel, PadimModel], monkeypatch: pytest.MonkeyPatch) -> None:
    """After a rename the poll hands back the same model under its new name (and says so
    itself): answers name it at once, nothing is loaded, and no "thresholds of" line claims
    the thresholds moved."""
    first = Served.of(models[0], "plates@1", 1)
    lines: list[str] = []
    renamed = replace(first, ref="plates😀@1", identity={**first.identity,
                                                        "version": "plates😀@1"})
    live = LiveModel(first, lambda served: renamed, log=lines.append)
    monkeypatch.setattr(live_model, "warm_up", lambda model: pytest.fail("nothing to load"))
    assert live.check_now() is True
    assert live.current.ref == live.current.identity["version"] == "plates😀@1"
    assert lines == []
