"""A fitted model's kept sums plus a few new images, added inside ``finalize``'s block loop.

``PadimModel.partial_fit`` needs the union's Σxxᵀ twice: unpacked (rows, d, d) for the
factorization, and packed (upper triangles) for the model to keep. Copying the kept sums
into a store, adding the new images there (unpack, syrk, pack per patch) and copying them
out again costs three passes over 127 MB at d = 100. Here each block is unpacked once from
the kept sums (which are never changed), the new images are added to it with one rank-k
syrk, and it is packed into the new sums as ``finalize`` takes it: one pass.

Each thread unpacks into one scratch block of its own, reused for every block it takes: fresh
pages for every block cost a page fault per 4 KiB, 0.5 s of CPU at d = 192 (925 MB), more
than the unpacking itself. Only upper triangles are ever written into it (unpacking, the
rank-k update, the factorization), so the zeros below them stay from its first use.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from .. import lapack
from ..allocator import page_backed
from .cpu_statistics import STAGE_BYTES, CpuPatchStatistics
from .layout import BLOCK_BYTES
from .statistics import PatchStatistics


class UpdatedSums(PatchStatistics):
    """n, Σx and Σxxᵀ of the kept sums (``packed_sums`` layout) plus the images added
    through ``update``. The union's packed Σxxᵀ exists once ``finalize`` has taken every
    block (``sums_after_finalize``); ``packed_sums`` returns it then."""

    device = torch.device("cpu")
    sums_after_finalize = True

    def __init__(self, n: int, total: np.ndarray, packed: np.ndarray,
                 workers: int | None = None, stage_bytes: int = STAGE_BYTES) -> None:
        n_patches, dim = total.shape
        if packed.shape != (n_patches, dim * (dim + 1) // 2):
            raise ValueError(f"expected sums of (P={n_patches}, d={dim}), got {total.shape} "
                             f"and {packed.shape}")
        self._new = CpuPatchStatistics(n_patches, dim, packed=True, workers=workers,
                                       stage_bytes=stage_bytes)
        super().__init__(n_patches, dim, BLOCK_BYTES, True)
        self.bounds, self.workers = self._new.bounds, self._new.workers
        self.n, self._kept_n, self._kept_total, self._kept = int(n), int(n), total, packed
        self.second = [packed[lo:hi] for lo, hi in self.bounds]
        self._out = page_backed(packed.shape)
        self._done = [False] * len(self.bounds)
        self._scratch = threading.local()

    def update(self, x: np.ndarray | torch.Tensor) -> UpdatedSums:
        """Add a batch of embeddings, shape (P, B, d)."""
        self._new.update(x)
        self.n = self._kept_n + self._new.n
        return self

    def flush(self) -> None:
        """Nothing to do: the new images are added block by block in ``second_moments``."""

    @property
    def sum(self) -> np.ndarray:
        return self._kept_total + self._new.pending_sum()

    def second_moments(self, i: int) -> np.ndarray:
        """Block i's Σxxᵀ of the union (rows, d, d), upper triangles over zeros; also
        written, packed, into the new sums. The array is this thread's scratch block: valid
        until the thread takes its next block."""
        lo, hi = self.bounds[i]
        full = self._scratch_block(hi - lo)
        lapack.unpack_upper(np.ascontiguousarray(self._kept[lo:hi]), full)
        self._new.add_second_to(i, full)
        lapack.pack_upper(full, self._out[lo:hi])
        self._done[i] = True
        return full

    def _scratch_block(self, rows: int) -> np.ndarray:
        """This thread's (rows, d, d) scratch, zero below the diagonal (see the module)."""
        block = getattr(self._scratch, "block", None)
        if block is None or block.shape[0] < rows:
            block = np.zeros((max(hi - lo for lo, hi in self.bounds), self.dim, self.dim))
            self._scratch.block = block
        return block[:rows]

    def packed_sums(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(n, Σx, Σxxᵀ upper triangles) of the union, once every block was taken."""
        if not all(self._done):
            raise RuntimeError("the updated sums exist once finalize has taken every block")
        return self.n, self.sum, self._out

    def _write_packed_block(self, i: int, out: np.ndarray) -> None:
        raise NotImplementedError("UpdatedSums builds its packed sums inside finalize")

    def _set_packed_block(self, i: int, rows: np.ndarray) -> None:
        raise NotImplementedError("UpdatedSums is built from kept sums, not loaded")
