"""Choosing the compute device and describing it to users."""

from __future__ import annotations

import torch

from .errors import InvalidInputError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn "auto" / "cpu" / "cuda[:n]" / "mps" into a torch.device that exists here.

    "auto" prefers CUDA, then Apple MPS, then the CPU. Asking for a device that is not
    present is an error rather than a silent fallback, so timings are never mislabelled.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise InvalidInputError("device", f"unknown device {spec!r} ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device", "CUDA was requested but no CUDA GPU is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidInputError("device", "MPS was requested but is not available")
    if device.type not in {"cpu", "cuda", "mps"}:
        raise InvalidInputError("device", f"unsupported device type {device.type!r}")
    return device


def device_label(device: str | torch.device) -> str:
    """A human-readable name: "CPU (2 threads)" or "CUDA: NVIDIA H100 80GB HBM3"."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"
