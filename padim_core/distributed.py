"""Fit and score on a Dask cluster (``dask.distributed``): ``connect``, ``fit``, ``iter_predict``.

Fit is a map-reduce: the input list is cut into contiguous shards, each worker embeds its
shards and returns their per-patch statistics (the same store a local fit builds) plus the
calibration images' embeddings and the unreadable inputs; the statistics are summed pairwise
in a fixed tree on the workers, and the client only receives the total. Everything after that
(factorization, leave-one-out calibration, thresholds) is ``PadimModel.fit``'s own code, so
the model equals a single-process fit up to the order of the float64 sums.

Every task is a pure function of its inputs (merges copy, never add in place), so when a
worker dies Dask recomputes what it held and no shard is counted twice. Workers need the
package, the same backbone weights and the same image paths (a shared file system).

>>> with connect("local:2") as client:                             # doctest: +SKIP
...     model = fit(PadimModel(d=100), paths, client)
...     result = predict(model, test_paths, client)
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from distributed import Client, Future, LocalCluster, wait

from .backbones import FeatureExtractor, load_feature_extractor
from .embedding import Embedder
from .errors import ClusterError, InvalidInputError
from .gaussian import HoldoutStore, PatchStatistics, patch_statistics
from .images import image_list, input_name, seems_readable
from .model import PadimModel, PredictResult, Progress, _placed, too_few_readable
from .threads import default_workers

CONNECT_TIMEOUT_S = 5
LOCAL_PREFIX = "local:"
SHARDS_PER_WORKER = 2          # a few per worker: a lost worker costs little, load evens out
PREDICT_BATCHES_PER_WORKER = 2  # batches in flight per worker thread while predicting
#: Seconds without a single worker after which fit / predict on a cluster stop with an error
#: (Dask itself would wait for a worker forever); a worker that joins in time carries on.
NO_WORKERS_S = 60.0
HEADER_CHECKS_PER_TASK = 512   # inputs per header-check task (a few kB read each)
POLL_S = 2.0


# --------------------------------------------------------------------------- connecting


@contextmanager
def connect(where: str) -> Iterator[Client]:
    """A client for ``where``: ``local:N`` (a LocalCluster of N worker processes, one thread
    each, closed on exit) or a scheduler address such as ``tcp://host:8786``.

    An unreachable scheduler is one InvalidInputError after at most ``CONNECT_TIMEOUT_S``.
    """
    if where.startswith(LOCAL_PREFIX):
        n = where[len(LOCAL_PREFIX):]
        if not n.isdigit() or int(n) < 1:
            raise InvalidInputError("--cluster", f"expected local:N with N >= 1, got {where!r}")
        with (LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                           dashboard_address=None) as cluster,
              Client(cluster) as client):
            yield client
        return
    with open_client(where) as client:
        yield client


def open_client(address: str) -> Client:
    """A client of the scheduler at ``address`` (the caller closes it). An unreachable
    scheduler is one InvalidInputError after at most ``CONNECT_TIMEOUT_S``."""
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as err:
        raise InvalidInputError(address, f"no Dask scheduler answered within "
                                         f"{CONNECT_TIMEOUT_S} s ({type(err).__name__})") from None
    except ValueError as err:       # not an address
        raise InvalidInputError(address, f"not a scheduler address ({err})") from None


def _for_workers(images: Sequence[Any]) -> list[Any]:
    """Paths made absolute (workers may run in another folder); other sources as they are."""
    return [Path(im).absolute() if isinstance(im, (str, PurePath)) else im for im in images]


def _worker_threads(client: Client) -> int:
    return max(1, sum(client.nthreads().values()))


# --------------------------------------------------------------------------- worker side


@functools.lru_cache(maxsize=2)
def _worker_extractor(backbone: str, weights: str | None, device: str,
                      seed: int) -> FeatureExtractor:
    """The backbone, loaded once per worker process and kept for its later tasks.

    Module-level on purpose: this cache lives in the *worker* processes, which outlive their
    tasks; loading a backbone costs seconds and a shard a fraction of that. The extractor is
    read-only, and the key is everything that defines it.
    """
    return load_feature_extractor(backbone, weights, device, seed)


def _worker_model(config: dict[str, Any]) -> PadimModel:
    """A model of ``config`` around the worker's cached backbone. It decodes in the task's
    own thread: Dask already runs one task per worker thread, and code on a worker may
    expect to run in it (``distributed.get_worker``)."""
    extractor = _worker_extractor(config["backbone"], config["weights"], config["device"],
                                  config["seed"])
    return PadimModel(**config, decode_workers=0).use_extractor(extractor)


@dataclass
class _Shard:
    """One shard's contribution: statistics (None when nothing was readable), the calibration
    images' embeddings (P, h, d) float32 in input order, the patch grid, unreadable inputs,
    and the SHA-256 of each image used (None for arrays)."""

    stats: PatchStatistics | None
    held: np.ndarray | None
    grid: tuple[int, int] | None
    skipped: list[tuple[str, str]]
    digests: list[str | None]


def _readable_flags(images: list[Any]) -> list[bool]:
    return [seems_readable(im) for im in images]


def _fit_shard(config: dict[str, Any], embedder: Embedder, images: list[Any],
               names: list[str], is_cal: np.ndarray, packed: bool | None) -> _Shard:
    """Embed one shard and sum its statistics (in a CPU store, so that shards from any
    device merge and travel)."""
    model = _worker_model(config)
    stats: PatchStatistics | None = None
    held: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    digests: list[str | None] = []
    grid = None
    for batch in model._decoded_batches(images, names, digests=True):
        idx = batch.indices
        skipped += batch.skipped
        digests += batch.digests
        if not len(idx):
            continue
        x, grid = model._patch_embeddings(batch.pixels, embedder)
        x = x.cpu().numpy() if isinstance(x, torch.Tensor) else x
        if stats is None:
            stats = patch_statistics(x.shape[0], x.shape[2], "cpu", packed=packed)
        stats.update(x)
        rows = np.flatnonzero(is_cal[idx])
        if len(rows):
            held.append(x[:, rows])
    if stats is not None:
        stats.flush()
    return _Shard(stats, np.concatenate(held, axis=1) if held else None, grid, skipped,
                  digests)


def _statistics_of(shard: _Shard) -> PatchStatistics | None:
    return shard.stats


def _calibration_of(shard: _Shard) -> _Shard:
    """The shard without its statistics: what the client fetches."""
    return replace(shard, stats=None)


def _merged(a: PatchStatistics | None, b: PatchStatistics | None) -> PatchStatistics | None:
    """a + b as a new store. Never in place: a task must not change its inputs, which Dask
    may still hold (and reuse after a worker loss)."""
    if a is None or b is None:
        return b if a is None else a
    return copy.deepcopy(a).merge(b)


# --------------------------------------------------------------------------- fit


class _FitOnCluster(PadimModel):
    """``PadimModel.fit`` with its accumulate step (embed and sum every image) on a cluster;
    the calibration split, factorization and thresholds stay fit's own."""

    def __init__(self, client: Client, config: dict[str, Any], shard_images: int | None,
                 packed: bool | None) -> None:
        super().__init__(**config)
        self.client, self.shard_images, self.packed = client, shard_images, packed

    def _readable_flags(self, images: list[Any]) -> list[bool]:
        """Header checks on the workers, which see the files (the client may not)."""
        images = _for_workers(images)
        step = HEADER_CHECKS_PER_TASK
        tasks = [self.client.submit(_readable_flags, images[lo:lo + step], pure=False)
                 for lo in range(0, len(images), step)]
        return [ok for part in _in_order(tasks, None, [], "headers") for ok in part]

    def _accumulate(self, images: list[Any], names: Sequence[str] | None, embedder: Embedder,
                    cal_idx: np.ndarray, progress: Progress | None,
                    ) -> tuple[PatchStatistics, HoldoutStore, tuple[int, int],
                               list[tuple[str, str]], None, list[str | None]]:
        names = list(names) if names is not None else [input_name(im, i)
                                                        for i, im in enumerate(images)]
        images = _for_workers(images)
        is_cal = np.zeros(len(images), bool)
        is_cal[cal_idx] = True
        config = {**asdict(self.config), "device": "auto"}   # each worker's own best device
        # Whole batches per shard: each image is embedded in the same batch as in a local
        # fit, so the embeddings are the same to the bit (the backbone's float32 rounding
        # depends on the batch), and only the order of the float64 sums differs.
        bs = self.config.batch_size
        size = self.shard_images or -(-len(images)
                                      // (SHARDS_PER_WORKER * _worker_threads(self.client)))
        size = -(-size // bs) * bs
        bounds = [(lo, min(lo + size, len(images))) for lo in range(0, len(images), size)]
        submit = self.client.submit
        # config and embedder (a few hundred kB) go inline with each task, not scattered:
        # scattered data lost with a worker cannot be recomputed.
        shards = [submit(_fit_shard, config, embedder, images[lo:hi], names[lo:hi],
                         is_cal[lo:hi], self.packed, pure=False) for lo, hi in bounds]
        level = [submit(_statistics_of, s) for s in shards]
        parts = [submit(_calibration_of, s) for s in shards]
        del shards
        while len(level) > 1:     # fixed pairs: the same sums in the same order every run
            level = [submit(_merged, *level[i:i + 2]) if i + 1 < len(level) else level[i]
                     for i in range(0, len(level), 2)]
        held, grid, skipped, digests = HoldoutStore(), (0, 0), [], []
        try:
            for shard in _in_order(parts, progress, [hi for _, hi in bounds], "features"):
                skipped += shard.skipped
                digests += shard.digests
                grid = shard.grid or grid
                if shard.held is not None:
                    held.append(shard.held)
            stats = level[0].result()
        except BaseException:
            held.close()
            raise
        used = 0 if stats is None else stats.n
        if used < 2:
            held.close()
            raise too_few_readable(used, skipped)
        stats.workers = default_workers()   # the client's threads finalize it
        return stats, held, grid, skipped, None, digests   # no mean image from a cluster


def fit(model: PadimModel, images: Sequence[Any], client: Client,
        progress: Progress | None = None, names: Sequence[str] | None = None,
        shard_images: int | None = None, packed: bool | None = None) -> PadimModel:
    """Fit ``model`` on ``images`` with the workers of ``client``; returns ``model``.

    Same result and fitted attributes as ``model.fit(images, progress, names)`` (skipped
    inputs, calibration and thresholds included; equal to the bit in the embeddings when
    the workers and the client use the same torch thread count). ``shard_images``: images
    per task, rounded up to whole batches (default: a couple of shards per worker thread).
    ``packed``: store the shards' second moments as upper triangles (half the bytes each
    shard sends); None chooses by size as a local fit does.
    """
    remote = _FitOnCluster(client, asdict(model.config), shard_images, packed)
    remote.region = model.region
    remote.use_extractor(model.extractor)
    remote.fit(images, progress=progress, names=names)
    threads = client.nthreads()
    where = getattr(client.scheduler, "address", None) or "a Dask cluster"
    # The card says where the features were computed, not the client that only finished.
    model.state_ = replace(remote.state_, device=(
        f"Dask: {len(threads)} worker(s), {sum(threads.values())} thread(s), {where}"))
    model._placement = None
    return model


# --------------------------------------------------------------------------- predict


def _score_batch(config: dict[str, Any], state: Any, images: list[Any],
                 names: list[str]) -> PredictResult:
    model = _worker_model(config)
    model.state_ = state
    return model.predict(images, names=names)


def iter_predict(model: PadimModel, images: Sequence[Any], client: Client,
                 progress: Progress | None = None, names: Sequence[str] | None = None,
                 ) -> Iterator[PredictResult]:
    """``model.iter_predict`` with the batches scored on the workers: results come back in
    input order, at most a few batches per worker thread in flight.

    The fitted Gaussians are scattered to the workers once. Scattered data cannot be
    recomputed, so a worker lost during a predict ends it with Dask's error (run it again);
    fit has no such step and survives worker losses.
    """
    state = model._state()
    images = image_list(images)
    names = list(names) if names is not None else [input_name(im, i)
                                                    for i, im in enumerate(images)]
    if len(names) != len(images):
        raise InvalidInputError("names", "must have one name per image")
    images = _for_workers(images)
    config = {**asdict(model.config), "device": "auto"}   # each worker's own best device
    on_cpu = replace(state, gaussian=_placed(state.gaussian, torch.device("cpu")))
    [config_f, state_f] = client.scatter([config, on_cpu], broadcast=True, hash=False)
    bs = model.config.batch_size
    bounds = [(lo, min(lo + bs, len(images))) for lo in range(0, len(images), bs)]
    window = PREDICT_BATCHES_PER_WORKER * _worker_threads(client)

    def submitted() -> Iterator[Future]:
        for lo, hi in bounds:
            yield client.submit(_score_batch, config_f, state_f, images[lo:hi],
                                names[lo:hi], pure=False)

    yield from _in_order(submitted(), progress, [hi for _, hi in bounds], "predict",
                         window=window)


def predict(model: PadimModel, images: Sequence[Any], client: Client,
            progress: Progress | None = None,
            names: Sequence[str] | None = None) -> PredictResult:
    """``model.predict`` with the batches scored on the workers of ``client``."""
    state = model._state()
    return PredictResult.concat(list(iter_predict(model, images, client, progress, names)),
                                state.image_threshold, state.pixel_threshold,
                                model.config.crop)


# --------------------------------------------------------------------------- streaming


def _in_order(futures: Sequence[Future] | Iterator[Future], progress: Progress | None,
              done_after: list[int], stage: str, window: int | None = None,
              no_workers_s: float | None = None) -> Iterator[Any]:
    """The futures' results in the order given, fetched as they finish (a reorder buffer
    of finished futures; their data stays on the workers until its turn). ``window`` bounds
    how many are in flight when ``futures`` is an iterator that submits them lazily.
    ``done_after[i]``: inputs done once result i is out, for ``progress``. A cluster left
    without workers for ``no_workers_s`` (or without its scheduler) is a ClusterError, the
    futures cancelled, instead of a wait without end."""
    source = iter(futures)
    total = done_after[-1] if done_after else 0
    index_of: dict[str, int] = {}
    finished: dict[int, Future] = {}
    pending: set[Future] = set()
    watch = _WorkerWatch(NO_WORKERS_S if no_workers_s is None else no_workers_s)

    def submit_next() -> bool:
        future = next(source, None)
        if future is None:
            return False
        index_of[future.key] = len(index_of)
        pending.add(future)
        return True

    while (window is None or len(index_of) < window) and submit_next():
        pass
    following = 0
    try:
        while pending:
            try:
                done = wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                watch.check(next(iter(pending)).client, stage)
                continue
            for future in done:
                pending.discard(future)
                finished[index_of[future.key]] = future
            while following in finished:
                result = finished.pop(following).result()
                if progress:
                    progress(done_after[following], total, stage)
                following += 1
                if window is not None:
                    submit_next()
                yield result
    except ClusterError:
        for future in pending:
            future.cancel()
        raise


_WORDS = {"features": "the fit", "headers": "the fit", "predict": "scoring"}


class _WorkerWatch:
    """Counts how long the scheduler has had no worker while results are awaited."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s, self.since = limit_s, None

    def check(self, client: Client, stage: str) -> None:
        where = getattr(client.scheduler, "address", None) or "the Dask scheduler"
        try:
            workers = len(client.nthreads())
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"{where}: the scheduler does not answer "
                               f"({type(err).__name__}), so {_WORDS.get(stage, stage)} "
                               "stopped") from None
        if workers:
            self.since = None
            return
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        if now - self.since >= self.limit_s:
            raise ClusterError(f"{where}: no worker for {self.limit_s:g} s, so "
                               f"{_WORDS.get(stage, stage)} stopped "
                               "(every worker left or was stopped); start workers "
                               f"(dask worker {where}) and run it again")
