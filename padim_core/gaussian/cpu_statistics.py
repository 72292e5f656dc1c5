"""Per-patch statistics on the CPU: numpy sums updated through OpenBLAS/LAPACK (``lapack``).

Where the CPU time goes, and why the code is shaped this way (2-core VM, d = 100, 3136
patches): the d×d sums are 250 MB, and a rank-32 update per batch is bound by streaming them
through memory, so small batches are *staged* (float32, up to ``stage_bytes``) and added as
one rank-128 update: 3-4x less time per image. Each update is a syrk per patch (packed
storage: unpacked into a cached scratch and packed back with LAPACK's tpttr/trttp), run by
``workers`` threads drawing a few patches at a time from one queue, each with one BLAS thread.
torch's batched CPU solvers are slow or fail on some processors for these shapes, hence
numpy here and torch only on accelerators (``torch_statistics``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from .. import lapack
from ..allocator import page_backed
from ..threads import default_workers, in_threads, single_blas_thread
from .layout import BLOCK_BYTES, stored_width
from .statistics import PatchStatistics

Array = np.ndarray | torch.Tensor
STAGE_BYTES = 160 << 20        # float32 embeddings staged before one larger rank-k update
MAX_STAGE_IMAGES = 128
CHUNK_BYTES = 8 << 20          # float64 working copy of the staged embeddings per worker


class CpuPatchStatistics(PatchStatistics):
    """n, Σx (P, d) and Σxxᵀ (P blocks of upper triangles) in float64 numpy arrays.

    ``packed`` forces (or forbids) upper-triangle storage, chosen by size when None;
    ``workers`` threads share the work (default: torch's thread count). Only the upper
    triangle of each Σxxᵀ is ever written.
    """

    device = torch.device("cpu")

    def __init__(self, n_patches: int, dim: int, block_bytes: int = BLOCK_BYTES,
                 packed: bool | None = None, stage_bytes: int = STAGE_BYTES,
                 workers: int | None = None) -> None:
        super().__init__(n_patches, dim, block_bytes, packed)
        self.workers = max(1, int(workers or default_workers()))
        per_image = self.n_patches * self.dim * 4
        self._stage_cap = min(MAX_STAGE_IMAGES, stage_bytes // per_image)
        self._stage: np.ndarray | None = None
        self._staged = 0
        self._sum = np.zeros((self.n_patches, self.dim))
        self._added = False     # whether anything reached ``second`` (not only staged)
        # Big (packed) sums get their own pages, returned block by block as finalize
        # frees them; smaller ones come from the heap, which reuses them unfaulted.
        new = page_backed if self.packed else np.zeros
        width = stored_width(self.dim, self.packed)
        self.second: list[np.ndarray | None] = [new((hi - lo, width)) for lo, hi in self.bounds]

    # -------------------------------------------------------------- adding images
    def update(self, x: Array) -> CpuPatchStatistics:
        """Add a batch of embeddings, shape (P, B, d)."""
        self._check_batch(x)
        x = x.numpy() if isinstance(x, torch.Tensor) else x
        b = int(x.shape[1])
        slot = self._slot(b)
        if slot is None:
            self._add(x)
        else:
            if not _same_view(slot, x):
                slot[...] = x
            self._staged += b
        self.n += b
        return self

    def update_from(self, b: int, produce: Callable[[np.ndarray | None], Array]) -> Array:
        """Add b images whose (P, b, d) embeddings ``produce(out)`` returns.

        ``out`` is the store's own float32 (P, b, d) buffer for them (``produce`` fills it
        and returns it, which saves one copy of the batch: fit's embedder writes straight
        into it), or None where the batch is not staged (``produce`` returns new ones).
        The embeddings returned stay valid until the next update.
        """
        x = produce(self._slot(b))
        self.update(x)
        return x

    def _slot(self, b: int) -> np.ndarray | None:
        """The (P, b, d) view of the staging buffer that the next ``update`` of b images
        fills, or None where b is above the capacity."""
        if b > self._stage_cap:
            return None
        if self._staged + b > self._stage_cap:
            self._add_staged()
        if self._stage is None:
            self._stage = np.empty((self.n_patches, self._stage_cap, self.dim), np.float32)
        return self._stage[:, self._staged:self._staged + b]

    def _add_staged(self) -> None:
        """Add the staged embeddings to the sums."""
        if self._staged:
            self._add(self._stage[:, :self._staged])
            self._staged = 0

    def _add(self, x: np.ndarray) -> None:
        """Add (P, k, d) embeddings to the sums: float64 copies of a few patches at a time
        (one buffer per worker), a rank-k syrk per patch."""
        k, d = x.shape[1], self.dim
        self._added = True
        chunk = max(1, CHUNK_BYTES // (k * d * 8))
        items = [(i, lo, min(lo + chunk, hi)) for i, (blo, hi) in enumerate(self.bounds)
                 for lo in range(blo, hi, chunk)]

        def work(my_items: Iterable[tuple[int, int, int]]) -> None:
            buffer = np.empty((chunk, k, d))
            for i, lo, hi in my_items:
                xb = buffer[:hi - lo]
                np.copyto(xb, x[lo:hi])
                self._sum[lo:hi] += xb.sum(1)
                off = self.bounds[i][0]
                acc = self.second[i][lo - off:hi - off]
                if self.packed:
                    lapack.syrk_packed_upper(acc, xb)
                else:
                    lapack.syrk_upper(acc.reshape(hi - lo, d, d), xb)

        with single_blas_thread():
            in_threads(work, items, self.workers)

    def flush(self) -> None:
        """Add any staged embeddings to the sums and free the staging buffer."""
        self._add_staged()
        self._stage = None

    # -------------------------------------------------------------- reading them
    def pending_sum(self) -> np.ndarray:
        """Σx (P, d) with the staged embeddings, as a new array; nothing is flushed."""
        total = self._sum.copy()
        if self._staged:
            total += self._stage[:, :self._staged].sum(1, dtype=np.float64)
        return total

    def add_second_to(self, i: int, full: np.ndarray) -> None:
        """Add block i's Σxxᵀ, staged embeddings included, onto the upper triangles of
        ``full`` (rows, d, d); the store is left as it is (nothing is flushed)."""
        lo, hi = self.bounds[i]
        if self._added:         # more images than one stage holds: some are in ``second``
            block = self.second[i]
            if self.packed:
                summed = np.zeros_like(full)
                lapack.unpack_upper(block, summed)
                full += summed
            else:
                full += block.reshape(full.shape)
        if self._staged:
            x = np.ascontiguousarray(self._stage[lo:hi, :self._staged], np.float64)
            lapack.syrk_upper(full, x)

    def second_moments(self, i: int) -> np.ndarray:
        """Block i's Σxxᵀ as (rows, d, d): the block itself when stored full, else a fresh
        expansion. Only the upper triangle is filled and the rest stays zero (the update and
        every factorization touch only that triangle), so the whitener needs no masking."""
        self.flush()
        block = self.second[i]
        rows = block.shape[0]
        if not self.packed:
            return block.reshape(rows, self.dim, self.dim)
        full = page_backed((rows, self.dim, self.dim))      # zeros below the diagonal
        lapack.unpack_upper(block, full)
        return full

    def _write_packed_block(self, i: int, out: np.ndarray) -> None:
        block = self.second[i]
        if self.packed:
            out[...] = block
        else:   # LAPACK's trttp per patch: 4-5x faster than a gather through index arrays
            lapack.pack_upper(block.reshape(block.shape[0], self.dim, self.dim), out)

    def _set_packed_block(self, i: int, rows: np.ndarray) -> None:
        block = self.second[i]
        if self.packed:
            block[...] = rows
        else:           # upper triangles over the zeros below them, as update writes them
            lapack.unpack_upper(rows, block.reshape(block.shape[0], self.dim, self.dim))


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether b is exactly the memory of a (same start, shape and strides)."""
    return (a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])
