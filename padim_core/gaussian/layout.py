"""How the statistics stores cut the P second-moment matrices into blocks and lay them out.

Shared by the CPU and torch stores, so that shards built anywhere agree and can be merged.
"""

from __future__ import annotations

BLOCK_BYTES = 64 << 20
MIN_BLOCKS = 16
FULL_STORAGE_BYTES = 1 << 30   # above this, second moments are stored as upper triangles


def block_bounds(n_patches: int, dim: int, block_bytes: int = BLOCK_BYTES,
                 ) -> list[tuple[int, int]]:
    """(lo, hi) patch ranges of the blocks: at most ``block_bytes`` of float64 d×d each.

    Blocks are also finalize's unit of work: enough of them that the threads finish
    together. (Not derived from the thread count: shards must agree to merge.)
    """
    per_patch = dim * dim * 8
    step = max(1, min(block_bytes // per_patch, -(-n_patches // MIN_BLOCKS)))
    return [(lo, min(lo + step, n_patches)) for lo in range(0, n_patches, step)]


def packed_by_default(n_patches: int, dim: int) -> bool:
    """Whether to store upper triangles only.

    Full d×d blocks are cheapest to update; upper triangles halve the memory when it
    matters (d = 550: 3.8 GB instead of 7.6 GB).
    """
    return n_patches * dim * dim * 8 > FULL_STORAGE_BYTES


def stored_width(dim: int, packed: bool) -> int:
    """Numbers stored per patch for its d×d second moments."""
    return dim * (dim + 1) // 2 if packed else dim * dim
