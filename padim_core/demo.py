"""Synthetic demo data set in MVTec layout: brushed-metal plates with scratches, stains, holes.

Why: the real MVTec AD data is licensed for non-commercial use only and must never be shipped,
yet the app, the CLI, the tests and the benchmarks all need a realistic set to show and check.
Everything here is made from a seed with numpy + OpenCV, so the same seed gives the same bytes
on every run, and the whole default set takes a second or two.

Layout written by :func:`make_demo_set` (same as one MVTec AD category)::

    root/train/good/000.png ...
    root/test/good/000.png ...
    root/test/<scratch|stain|hole>/000.png ...
    root/ground_truth/<scratch|stain|hole>/000_mask.png   (0 = normal, 255 = defect)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import cv2
import numpy as np

DEFECT_TYPES: tuple[str, ...] = ("scratch", "stain", "hole")
"""Defect folders under ``test/`` and ``ground_truth/``, in this order."""

DEMO_VERSION = 1
"""Bump when the images change, so a stale cached set is never reused."""

_SPLIT_CODES = {"train": 0, "test": 1}
_KIND_CODES = {"good": 0, **{name: i + 1 for i, name in enumerate(DEFECT_TYPES)}}
_PAD = 24  # margin rendered around the image so the small random rotation leaves no border


def _rng(seed: int, split: str, kind: str, index: int) -> np.random.Generator:
    """Independent generator per image, so counts can change without changing other images."""
    return np.random.default_rng([seed, _SPLIT_CODES[split], _KIND_CODES[kind], index])


def _unit_noise(noise: np.ndarray, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Blur white noise anisotropically and rescale it to zero mean, unit std."""
    out = cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y)
    out -= out.mean()
    return out / (out.std() + 1e-6)


def _coarse_noise(
    rng: np.random.Generator, big: int, sigma_x: float, sigma_y: float, step: int
) -> np.ndarray:
    """Like :func:`_unit_noise` for wide blurs, but made on a grid ``step`` times coarser
    along each blurred axis and resized up: same look, a fraction of the cost."""
    fx = step if sigma_x >= 4 * step else 1
    fy = step if sigma_y >= 4 * step else 1
    small = rng.standard_normal((big // fy + 2, big // fx + 2)).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma_x / fx, sigmaY=sigma_y / fy)
    out = cv2.resize(small, (big, big), interpolation=cv2.INTER_CUBIC)
    out -= out.mean()
    return out / (out.std() + 1e-6)


def make_surface(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Render one defect-free brushed-metal plate as float32 RGB in [0, 255], shape (size, size, 3).

    Horizontal brushing grain (noise blurred along x), fine sensor noise, low-frequency mottling
    and a mild lighting gradient; then a small random rotation/shift so no two normals line up.
    """
    big = size + 2 * _PAD
    grain = _unit_noise(rng.standard_normal((big, big)).astype(np.float32), 18.0, 0.7)
    streak = _coarse_noise(rng, big, 60.0, 1.4, 8)
    fine = _unit_noise(rng.standard_normal((big, big)).astype(np.float32), 0.6, 0.6)
    mottle = _coarse_noise(rng, big, 30.0, 30.0, 8)
    level = 150.0 + rng.uniform(-6.0, 6.0)
    gray = level + 11.0 * grain + 6.0 * streak + 4.0 * fine + 4.0 * mottle

    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big - 0.5
    theta = rng.uniform(0.0, 2.0 * np.pi)
    gray += rng.uniform(8.0, 16.0) * (np.cos(theta) * xx + np.sin(theta) * yy)
    gray -= 10.0 * (xx**2 + yy**2)  # soft vignette from a ring light

    angle = rng.uniform(-3.0, 3.0)
    shift = rng.uniform(-5.0, 5.0, size=2)
    rot = cv2.getRotationMatrix2D((big / 2.0, big / 2.0), angle, 1.0)
    rot[:, 2] += shift
    gray = cv2.warpAffine(gray, rot, (big, big), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
    gray = gray[_PAD:_PAD + size, _PAD:_PAD + size]

    tint = np.array([0.97, 1.0, 1.04], dtype=np.float32)  # cool steel, R G B
    tint = tint + rng.uniform(-0.01, 0.01, size=3).astype(np.float32)
    return np.clip(gray[..., None] * tint, 0.0, 255.0).astype(np.float32)


def _defect_centre(rng: np.random.Generator, size: int, margin: int) -> tuple[float, float]:
    """A random (x, y) at least ``margin`` pixels from every border."""
    return (float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)))


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin bright or dark curved scratch (quadratic Bezier), 2-3 px wide, 70-150 px long."""
    size = img.shape[0]
    cx, cy = _defect_centre(rng, size, 60)
    length = rng.uniform(70.0, 150.0)
    phi = rng.uniform(0.0, np.pi)
    d = np.array([np.cos(phi), np.sin(phi)]) * length / 2.0
    p0, p2 = np.array([cx, cy]) - d, np.array([cx, cy]) + d
    bend = np.array([-d[1], d[0]]) / (length / 2.0) * rng.uniform(-25.0, 25.0)
    p1 = np.array([cx, cy]) + bend
    t = np.linspace(0.0, 1.0, 64)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    pts = np.clip(np.round(pts), 0, size - 1).astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.polylines(mask, [pts], False, 1, thickness=int(rng.integers(2, 4)), lineType=cv2.LINE_8)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    strength = rng.uniform(70.0, 95.0) * (0.8 + 0.2 * rng.random((size, size), dtype=np.float32))
    delta = (sign * strength)[..., None]
    return img + delta * mask[..., None], mask.astype(bool)


def _stain(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A soft blob of rust, oil or coolant residue, 25-60 px across, with a blurred edge."""
    size = img.shape[0]
    cx, cy = _defect_centre(rng, size, 45)
    blob = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(2, 5))):
        ox, oy = rng.uniform(-12.0, 12.0, size=2)
        axes = (int(rng.uniform(9.0, 22.0)), int(rng.uniform(9.0, 22.0)))
        cv2.ellipse(blob, (int(cx + ox), int(cy + oy)), axes, float(rng.uniform(0, 180)),
                    0, 360, 1.0, thickness=-1)
    blob = cv2.GaussianBlur(blob, (0, 0), sigmaX=6.0)
    patchy = 0.8 + 0.2 * _unit_noise(rng.standard_normal((size, size)).astype(np.float32), 4, 4)
    alpha = np.clip((blob - 0.1) / 0.6, 0.0, 1.0) * patchy * rng.uniform(0.75, 0.95)
    mask = alpha >= 0.1
    alpha = np.where(mask, alpha, 0.0).astype(np.float32)
    colours = np.array([[125, 70, 35], [55, 50, 60], [90, 130, 95]], dtype=np.float32)
    colour = colours[int(rng.integers(0, len(colours)))]
    target = 0.35 * img + 0.65 * colour  # keep some grain visible under the stain
    return img * (1.0 - alpha[..., None]) + target * alpha[..., None], mask


def _hole(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark round hole, radius 6-13 px, with a raised rim lit from one side."""
    size = img.shape[0]
    cx, cy = _defect_centre(rng, size, 30)
    radius = rng.uniform(6.0, 13.0)
    rim = rng.uniform(2.5, 4.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy)
    inner = dist <= radius
    ring = (dist > radius) & (dist <= radius + rim)
    out = img.copy()
    depth = 18.0 + 22.0 * (dist / radius)  # darkest in the middle
    out[inner] = (depth[inner, None] + rng.uniform(-4.0, 4.0, (int(inner.sum()), 1))).astype(
        np.float32
    )
    light = rng.uniform(0.0, 2.0 * np.pi)
    shade = np.cos(np.arctan2(yy - cy, xx - cx) - light)
    out[ring] += (55.0 + 35.0 * shade[ring])[:, None]
    return out, inner | ring


_DEFECTS = {"scratch": _scratch, "stain": _stain, "hole": _hole}


def render_sample(
    seed: int, split: str, kind: str, index: int, size: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one image: ``(clean, image, mask)`` as uint8 RGB, uint8 RGB, bool (size, size).

    ``clean`` is the plate before the defect; for ``kind == "good"`` image equals clean and the
    mask is all False. Every pixel where image differs from clean lies inside the mask.
    """
    if kind not in _KIND_CODES:
        raise ValueError(f"unknown defect kind {kind!r}; expected 'good' or one of {DEFECT_TYPES}")
    if split not in _SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    rng = _rng(seed, split, kind, index)
    surface = make_surface(rng, size)
    clean = np.clip(np.round(surface), 0, 255).astype(np.uint8)
    if kind == "good":
        return clean, clean.copy(), np.zeros((size, size), bool)
    defective, mask = _DEFECTS[kind](surface, rng)
    image = np.clip(np.round(defective), 0, 255).astype(np.uint8)
    image[~mask] = clean[~mask]  # exact: nothing outside the mask changes
    return clean, image, mask


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write an RGB or gray uint8 array as PNG (OpenCV wants BGR)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - only on a broken OpenCV build
        raise OSError(f"{path}: PNG encoding failed")
    path.write_bytes(buf.tobytes())


def _split_counts(n: int) -> dict[str, int]:
    """Spread ``n`` defect images over the defect types as evenly as possible."""
    base, extra = divmod(n, len(DEFECT_TYPES))
    return {name: base + (1 if i < extra else 0) for i, name in enumerate(DEFECT_TYPES)}


def make_demo_set(
    root: Path,
    n_train: int = 60,
    n_test_good: int = 12,
    n_test_defect: int = 18,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write the synthetic demo set in MVTec layout under ``root`` and return ``root``.

    ``root`` must not exist or be empty, so a set is never mixed with left-overs of another.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: folder is not empty; pick a new folder for the demo set")
    if min(n_train, n_test_good, n_test_defect) < 0 or size < 128:
        raise ValueError("counts must be >= 0 and size >= 128")
    jobs: list[tuple[str, str, int]] = [("train", "good", i) for i in range(n_train)]
    jobs += [("test", "good", i) for i in range(n_test_good)]
    for name, count in _split_counts(n_test_defect).items():
        jobs += [("test", name, i) for i in range(count)]
    for folder in ["train/good", "test/good"] + [f"test/{d}" for d in DEFECT_TYPES]:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in DEFECT_TYPES:
        (root / "ground_truth" / name).mkdir(parents=True, exist_ok=True)
    for split, kind, i in jobs:
        _, image, mask = render_sample(seed, split, kind, i, size)
        _write_png(root / split / kind / f"{i:03d}.png", image)
        if kind != "good":
            _write_png(root / "ground_truth" / kind / f"{i:03d}_mask.png",
                       mask.astype(np.uint8) * 255)
    return root


def demo_set_path() -> Path:
    """Where the shared, cached demo set lives (versioned, in the system temp folder)."""
    return Path(tempfile.gettempdir()) / f"padim-inspector-demo-v{DEMO_VERSION}"


def _is_complete(root: Path) -> bool:
    """True when ``root`` holds a finished demo set (it only ever appears whole, by rename)."""
    return (root / "train" / "good").is_dir() and all(
        (root / "ground_truth" / d).is_dir() for d in DEFECT_TYPES
    )


def ensure_demo_set(root: Path | None = None) -> Path:
    """Return a ready demo set at ``root`` (default :func:`demo_set_path`), making it once.

    The set is written into a temporary sibling folder and renamed into place, so a second
    process (another test worker, the app and the CLI at once) never sees a half-written set;
    if another process wins the race, its copy is used and ours is removed.
    """
    root = Path(root) if root is not None else demo_set_path()
    if _is_complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        make_demo_set(tmp)
        try:
            os.rename(tmp, root)  # atomic; fails if root appeared (non-empty) meanwhile
        except OSError:
            if not _is_complete(root):
                if root.is_dir() and not any(root.iterdir()):
                    root.rmdir()  # an empty left-over folder: take its place
                    os.rename(tmp, root)
                else:
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
