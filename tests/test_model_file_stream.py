"""Model files written piece by piece are what safetensors would write.

Why: the model library streams a model's arrays into its file (no 700 MB copy of a default
model in memory while saving); the file must be the same header (safetensors orders the
metadata keys at random, ours are sorted, so only the parsed header can be compared) and
the very same tensor bytes, and read back through safetensors as the same arrays.
"""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import safetensors.numpy

from padim_core import model_files
from padim_core.model_files import _DTYPE_NAMES


def split(data: bytes) -> tuple[dict, bytes]:
    """(parsed header, tensor bytes) of a safetensors file."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def same_file(got: bytes, want: bytes) -> bool:
    return split(got) == split(want) and len(got) == len(want)


def pieces_of(tensors: dict[str, np.ndarray], meta: dict) -> tuple[bytes, int, int]:
    out: list[bytes] = []
    size = model_files.stream(tensors, meta, lambda piece: out.append(bytes(piece)))
    return b"".join(out), size, len(out)


def test_every_dtype_and_odd_shapes_give_safetensors_own_bytes() -> None:
    rng = np.random.default_rng(0)
    tensors = {f"t{i}_{dt.name}": (rng.random((3, 5)) * 100).astype(dt)
               for i, dt in enumerate(_DTYPE_NAMES)}
    tensors |= {"empty": np.zeros((0, 4), np.float32), "scalar": np.array(7.5),
                "strided": np.arange(24, dtype=np.int64).reshape(4, 6)[:, ::2],
                "fortran": np.asfortranarray(rng.random((4, 3)).astype(np.float32)),
                "Zz": np.ones(1, np.uint8), "a": np.ones(1, np.uint8)}
    meta = {"config": {"note": 'ünïcode "quoted" \\ \n'}, "grid": [2, 3]}
    got, size, n_pieces = pieces_of(tensors, meta)
    want = safetensors.numpy.save(model_files._c_order(tensors),
                                  metadata=model_files._metadata(meta))
    assert same_file(got, want) and size == len(want)
    loaded = safetensors.numpy.load(got)
    assert set(loaded) == set(tensors)
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)
    assert pieces_of(tensors, meta)[0] == got    # the same bytes every time (sorted keys)
    assert n_pieces == 1 + len(tensors)          # header, then each array's own buffer


def test_a_fitted_model_gives_the_same_bytes_every_way_it_is_written(tmp_path) -> None:
    from padim_core import PadimModel

    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(8)]
    model = PadimModel(backbone="resnet18", weights="random", d=8, image_size=64, crop=64,
                       device="cpu", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(imgs)
    for updatable in (True, False):
        out: list[bytes] = []
        size = model.stream_file(lambda piece, out=out: out.append(bytes(piece)), updatable)
        got = b"".join(out)
        tensors, meta = model._tensors_and_meta(updatable)
        by_safetensors = safetensors.numpy.save(model_files._c_order(tensors),
                                                metadata=model_files._metadata(meta))
        assert same_file(got, by_safetensors) and size == len(got)
        model.save(tmp_path / "m.safetensors", updatable)
        assert got == model.to_bytes(updatable) == (tmp_path / "m.safetensors").read_bytes()
        again = PadimModel.from_bytes(got, device="cpu")
        np.testing.assert_array_equal(again.predict(imgs[:2]).scores,
                                      model.predict(imgs[:2]).scores)
