"""The threaded decoding pipeline gives exactly what decoding one image after another gives.

Why: fit, predict and evaluate decode their inputs in worker threads, a batch ahead of the
backbone (``padim_core.loading``). That must change nothing but the speed: the same bytes in
the same order, the same unreadable inputs skipped with the same messages, the same model and
scores; and a consumer that stops early or fails must not leave threads running.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from padim_core import PadimModel
from padim_core.errors import InvalidInputError
from padim_core.images import load_image, resize_and_crop
from padim_core.loading import THREAD_PREFIX, decode_batches, ordered_map

SIZE, CROP = 64, 56
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _decoders_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """14 images of different sizes and formats, with unreadable ones at positions 4 and 5
    (a truncated PNG and a text file) — in the middle of a batch of 3."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i in range(14):
        path = root / f"img_{i:02d}.{'jpg' if i % 3 == 0 else 'png'}"
        if i == 4:
            whole = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (80, 80, 3), np.uint8)).save(whole, "PNG")
            path.write_bytes(whole.getvalue()[:300])
        elif i == 5:
            path.write_text("not an image")
        else:
            side = 48 + 9 * i
            Image.fromarray(rng.integers(0, 256, (side, side + i, 3), np.uint8)).save(path)
        out.append(path)
    return out


def _sequential(sources: list[object]) -> tuple[list[int], np.ndarray, list[tuple[str, str]]]:
    """The reference: each input decoded on its own, one after another."""
    kept, crops, skipped = [], [], []
    for i, source in enumerate(sources):
        name = Path(source).name if isinstance(source, Path) else f"image_{i}"
        try:
            crops.append(resize_and_crop(load_image(source, name), SIZE, CROP))
            kept.append(i)
        except InvalidInputError as err:
            skipped.append((name, err.problem))
    return kept, np.stack(crops), skipped


@pytest.mark.parametrize("workers", [0, 1, 4])
def test_batches_are_byte_equal_to_sequential_decoding(files: list[Path], workers: int) -> None:
    sources: list[object] = list(files)
    sources[7] = files[7].read_bytes()            # bytes and arrays go through it too
    sources[9] = load_image(files[9])
    batches = list(decode_batches(sources, None, SIZE, CROP, batch_size=3, workers=workers))
    kept, crops, skipped = _sequential(sources)
    assert [len(b.indices) + len(b.skipped) for b in batches] == [3, 3, 3, 3, 2]
    assert [i for b in batches for i in b.indices] == kept
    got = np.concatenate([b.crops for b in batches])
    assert got.dtype == np.uint8 and got.shape == crops.shape
    assert got.tobytes() == crops.tobytes()
    for b in batches:                              # the tensor is the same memory as the array
        assert b.pixels.numpy().tobytes() == b.crops.tobytes()
        assert [n for n in b.names] == [Path(files[i]).name if i not in (7, 9) else
                                        f"image_{i}" for i in b.indices]
    assert [s for b in batches for s in b.skipped] == skipped


@pytest.mark.parametrize("workers", [0, 3])
def test_digests_are_those_of_the_readable_files_in_order(files: list[Path],
                                                          workers: int) -> None:
    """fit records what it learned by these: one per readable input, None for an array,
    none for the skipped; only when asked for."""
    sources: list[object] = list(files)
    sources[7] = files[7].read_bytes()
    sources[9] = load_image(files[9])
    batches = list(decode_batches(sources, None, SIZE, CROP, batch_size=3, workers=workers,
                                  digests=True))
    got = [d for b in batches for d in b.digests]
    want = [None if i == 9 else hashlib.sha256(Path(files[i]).read_bytes()).hexdigest()
            for i in range(len(files)) if i not in (4, 5)]
    assert got == want
    assert all(b.digests == [] for b in decode_batches(sources, None, SIZE, CROP, 3, workers))


def test_bad_files_mid_batch_are_skipped_and_listed(files: list[Path]) -> None:
    batches = list(decode_batches(files, None, SIZE, CROP, batch_size=3, workers=3))
    middle = batches[1]                            # inputs 3, 4, 5: one good, two bad
    assert middle.indices == [3]
    assert middle.names == ["img_03.jpg"]
    assert middle.crops.shape == (1, CROP, CROP, 3)
    assert [name for name, _ in middle.skipped] == ["img_04.png", "img_05.png"]
    assert "truncated" in middle.skipped[0][1] or "damaged" in middle.skipped[0][1]
    assert "not an image file" in middle.skipped[1][1]


def test_given_names_name_the_skipped() -> None:
    names = ["first.png", "broken.png"]
    batches = list(decode_batches([np.zeros((64, 64, 3), np.uint8), b"junk"], names,
                                  SIZE, CROP, batch_size=8, workers=2))
    assert batches[0].names == ["first.png"]
    assert batches[0].skipped == [("broken.png", "not an image file (cannot identify image "
                                                 "format)")]


def test_a_batch_with_nothing_readable_is_empty() -> None:
    (batch,) = decode_batches([b"x", b"y"], None, SIZE, CROP, batch_size=4, workers=2)
    assert batch.crops.shape == (0, CROP, CROP, 3) and batch.indices == []
    assert len(batch.skipped) == 2


def test_order_is_kept_when_later_items_finish_first() -> None:
    def slow_first(i: int) -> int:
        time.sleep(0.002 * (20 - i))
        return i

    assert list(ordered_map(slow_first, range(20), workers=6, ahead=10)) == list(range(20))


def test_work_ahead_is_bounded() -> None:
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        return i

    results = ordered_map(work, range(1000), workers=4, ahead=8)
    assert next(results) == 0
    time.sleep(0.2)                                # give the threads every chance to run on
    assert len(started) <= 1 + 8
    results.close()
    assert len(started) <= 1 + 8


def test_stopping_early_ends_the_threads(files: list[Path]) -> None:
    before = len(_decoders_alive())
    batches = decode_batches(files * 20, None, SIZE, CROP, batch_size=3, workers=4)
    first = next(batches)
    assert len(first.indices) == 3
    assert len(_decoders_alive()) > before         # the next batches are being decoded
    batches.close()
    assert len(_decoders_alive()) == before


def test_an_error_in_the_consumer_ends_the_threads(files: list[Path]) -> None:
    before = len(_decoders_alive())

    def consume() -> None:
        for _ in decode_batches(files * 20, None, SIZE, CROP, batch_size=3, workers=4):
            raise RuntimeError("the model failed")

    with pytest.raises(RuntimeError, match="the model failed"):
        consume()
    assert len(_decoders_alive()) == before


def test_an_unexpected_worker_error_is_raised_in_order_and_ends_the_threads() -> None:
    before = len(_decoders_alive())
    sources: list[object] = [np.zeros((64, 64, 3), np.uint8)] * 5 + [object()] + \
        [np.zeros((64, 64, 3), np.uint8)] * 50
    seen = []
    with pytest.raises(TypeError, match="unsupported image source type"):
        for batch in decode_batches(sources, None, SIZE, CROP, batch_size=2, workers=3):
            seen += batch.indices
    assert seen == [0, 1, 2, 3]                    # the batches before the bad one came out
    assert len(_decoders_alive()) == before


def test_pin_memory_without_cuda_is_ignored_or_pinned(files: list[Path]) -> None:
    (batch, *_) = decode_batches(files, None, SIZE, CROP, batch_size=3, workers=2,
                                 pin_memory=True)
    assert batch.pixels.is_pinned() == torch.cuda.is_available()


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from padim_core.demo import make_demo_set

    root = tmp_path_factory.mktemp("plates")
    make_demo_set(root, n_train=10, n_test_good=3, n_test_defect=3, size=128, seed=0)
    return root


def _model(device: str, workers: int) -> PadimModel:
    return PadimModel(backbone="resnet18", weights="random", d=16, image_size=64, crop=64,
                      batch_size=3, calibration_fraction=0.3, device=device,
                      decode_workers=workers)


@pytest.mark.filterwarnings("ignore:only 10 training images")
@pytest.mark.parametrize("device", DEVICES)
def test_fit_and_predict_from_files_match_sequential_decoding(plates: Path, device: str,
                                                              files: list[Path]) -> None:
    train = sorted((plates / "train" / "good").iterdir())
    train.insert(4, files[5])                      # an unreadable file mid-batch
    test = sorted(p for p in (plates / "test").rglob("*.png"))
    one = _model(device, 0).fit(train)
    many = _model(device, 4).fit(train)
    for attr in ("mean_", "whitener_"):
        a, b = getattr(one, attr), getattr(many, attr)
        a = a.cpu().numpy() if isinstance(a, torch.Tensor) else a
        b = b.cpu().numpy() if isinstance(b, torch.Tensor) else b
        assert a.tobytes() == b.tobytes(), attr
    assert one.image_threshold_ == many.image_threshold_
    assert one.skipped_ == many.skipped_ == [("img_05.png", one.skipped_[0][1])]
    a, b = one.predict(test), many.predict(test)
    assert a.names == b.names and len(a.names) == len(test)
    assert a.scores.tobytes() == b.scores.tobytes()
    assert a.maps.tobytes() == b.maps.tobytes()


def test_one_open_stream_given_twice_is_decoded_safely(files: list[Path]) -> None:
    with open(files[1], "rb") as stream:
        sources = [stream, files[2], stream] * 4
        batches = list(decode_batches(sources, None, SIZE, CROP, batch_size=3, workers=4))
    got = np.concatenate([b.crops for b in batches])
    want = resize_and_crop(load_image(files[1]), SIZE, CROP)
    assert len(got) == 12 and all(got[i].tobytes() == want.tobytes() for i in range(0, 12, 3))


def test_arrays_only_are_cropped_without_threads() -> None:
    arrays = [np.full((70, 70, 3), i, np.uint8) for i in range(9)]
    before = len(_decoders_alive())
    batches = decode_batches(arrays, None, SIZE, CROP, batch_size=3, workers=4)
    first = next(batches)
    assert len(_decoders_alive()) == before        # no pool for already decoded images
    assert [int(c[0, 0, 0]) for c in first.crops] == [0, 1, 2]
    batches.close()
