"""Bringing predict's results from the device to the host without idling the device.

On a GPU, kernels run in the order they were queued while the host goes on; fetching a
batch's maps makes the host wait for them. If the next batch is queued first and the copy
runs on a side stream that waits only for its own batch, the device works on the next batch
while the host copies and wraps this one. On the CPU everything is already on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def predict_lookahead(device: torch.device) -> int:
    """Batches predict queues on ``device`` before fetching the oldest one's results."""
    return 1 if device.type == "cuda" else 0


@dataclass
class QueuedResult:
    """A batch's maps and scores queued on the device, and the event that marks them done
    (None off CUDA)."""

    maps: torch.Tensor
    scores: torch.Tensor
    ready: Any = None


class ResultFetcher:
    """Brings queued results to the host. On CUDA the copy runs on a side stream that
    waits only for that batch's event, so work queued after it (the next batch) keeps
    the device busy meanwhile."""

    def __init__(self, device: torch.device) -> None:
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def queue(self, maps: torch.Tensor, scores: torch.Tensor) -> QueuedResult:
        queued = QueuedResult(maps, scores.double())
        if self.stream is not None:     # marks the end of this batch's work so far
            queued.ready = torch.cuda.Event()
            queued.ready.record(torch.cuda.current_stream(maps.device))
        return queued

    def __call__(self, queued: QueuedResult) -> tuple[np.ndarray, np.ndarray]:
        """(maps (b, crop, crop) float32, scores (b,) float64) as numpy."""
        if self.stream is None:
            return queued.maps.cpu().numpy(), queued.scores.cpu().numpy()
        self.stream.wait_event(queued.ready)
        with torch.cuda.stream(self.stream):
            for t in (queued.maps, queued.scores):
                t.record_stream(self.stream)     # freed only after this stream used them
            # into pageable host memory: returns when the copy is complete
            return queued.maps.cpu().numpy(), queued.scores.cpu().numpy()
