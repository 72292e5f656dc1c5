"""Views of stored results for the pages: result tables, heatmap images, downloads.

Everything here works on scores and maps already computed (kept in ``st.session_state``), so
moving a threshold or opacity slider re-draws without running the model. The colour mapping
and mask/contour drawing come from :mod:`padim_core.visualize`.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from padim_core import thresholds, visualize
from padim_core.regions import defect_regions
from padim_core.tables import spreadsheet_safe

DEFAULT_COLORMAP = "jet"


@dataclass(frozen=True)
class Display:
    """How heatmaps are drawn: colour scale, opacity and colour map."""

    vmin: float
    vmax: float
    alpha: float = 0.5
    colormap: str = DEFAULT_COLORMAP


def colormaps() -> list[str]:
    """Colour map names offered in the UI (the engine's list, default first)."""
    names = list(visualize.COLORMAPS)
    if DEFAULT_COLORMAP in names:
        names.remove(DEFAULT_COLORMAP)
        names.insert(0, DEFAULT_COLORMAP)
    return names


def shared_scale(maps: Sequence[np.ndarray] | np.ndarray) -> tuple[float, float]:
    """One colour scale (min, max) for several anomaly maps, so colours compare across them."""
    lo = min(float(np.min(m)) for m in maps)
    hi = max(float(np.max(m)) for m in maps)
    if not np.isfinite(lo) or not np.isfinite(hi):
        return 0.0, 1.0
    if hi <= lo:
        hi = lo + 1e-6
    return lo, hi


def ratio(score: float, threshold: float) -> float:
    """score / threshold, infinite for a zero threshold."""
    return float(score) / float(threshold) if threshold > 0 else float("inf")


def is_ng(score: float, threshold: float) -> bool:
    """Verdict of one score, by the engine's one rule (``thresholds.is_ng``)."""
    return bool(thresholds.is_ng(score, threshold))


@dataclass(frozen=True)
class DefectRule:
    """What the Inspect page counts as a defect, and which verdict rule it shows."""

    min_area: int
    rule: str

    @classmethod
    def of(cls, model: Any) -> DefectRule:
        """The model's own minimum defect area and verdict rule."""
        return cls(int(model.config.min_defect_area), model.config.verdict_rule)


def area_steps(top: int, current: int = 0) -> list[int]:
    """Minimum-area choices from 0 to ``top`` (crop²): 1-2-5 steps per decade, and the model's
    own value. A linear slider over 0…50 176 px moved ~200 px² per screen pixel, so small
    areas such as 40 px could not be picked with the mouse."""
    steps, decade = {0, int(top), int(current)}, 1
    while decade <= top:
        steps.update(m * decade for m in (1, 2, 5) if m * decade <= top)
        decade *= 10
    return sorted(steps)


def verdict_ng(score: float, amap: np.ndarray, image_threshold: float, pixel_threshold: float,
               region: np.ndarray | None, rule: DefectRule) -> bool:
    """One image's verdict under ``rule``, as ``PredictResult.verdicts`` gives it for a batch:
    by score, or by a defect region (inside ``region``) of at least the minimum area."""
    if rule.rule == "area":
        found = defect_regions(amap, pixel_threshold, region, rule.min_area)[0]
        return bool(thresholds.is_ng_by_area(np.asarray([score]), np.asarray([len(found)]))[0])
    return bool(thresholds.is_ng(score, image_threshold))


def calibration_scores(model: object) -> np.ndarray:
    """The leave-one-out scores of a model's normal images (empty for older model files)."""
    return np.asarray(getattr(model, "calibration_scores_", []), dtype=float)


def slider_step(hi: float) -> float:
    """A slider step giving roughly 500 positions over [0, hi]."""
    raw = max(hi, 1e-9) / 500.0
    return float(10 ** np.floor(np.log10(raw)))


def threshold_ranges(model: object, batch_scores: np.ndarray | None = None,
                     batch_pixel_max: float | None = None) -> tuple[float, float]:
    """Upper ends of the image / pixel threshold sliders of a model, the same on every page:
    past the calibration scores, the model's thresholds and the scores and maps of the batch
    it scored last (when given)."""
    image_values = [2.0 * float(model.image_threshold_)]  # type: ignore[attr-defined]
    pixel_values = [2.0 * float(model.pixel_threshold_)]  # type: ignore[attr-defined]
    calibration = calibration_scores(model)
    if calibration.size:
        image_values.append(1.25 * float(calibration.max()))
    if batch_scores is not None and len(batch_scores):
        image_values.append(1.25 * float(np.max(batch_scores)))
    if batch_pixel_max is not None:
        pixel_values.append(1.1 * float(batch_pixel_max))
    return max(image_values), max(pixel_values)


def ranked(scores: Sequence[float] | np.ndarray) -> list[int]:
    """Image indices, most suspect (highest score) first."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=float))]


def extreme_pair(names: Sequence[str], scored: dict[str, float] | None) -> tuple[int, int]:
    """Indices into ``names`` of the most and the least suspect image by ``scored`` (name ->
    score), when at least two are scored; else the first two names."""
    if scored is not None and len(scored) > 1:
        order = sorted(scored, key=scored.__getitem__)
        if order[-1] in names and order[0] in names:
            return list(names).index(order[-1]), list(names).index(order[0])
    return 0, (1 if len(names) > 1 else 0)


def gallery_pages(order: Sequence[int], ng: np.ndarray, show: str,
                  per_page: int) -> list[list[int]]:
    """The gallery's pages: indices (in ``order``) of the images ``show`` asks for ("All",
    "NG only", "OK only"), ``per_page`` at a time; one empty page when none."""
    picked = [j for j in order if show == "All" or (show == "NG only") == bool(ng[j])]
    return [picked[k:k + per_page] for k in range(0, len(picked), per_page)] or [[]]


def metric_text(value: float | None) -> str:
    """A metric with three decimals, or a dash when it could not be computed."""
    return "—" if value is None else f"{value:.3f}"


def defect_type_rows(per_defect_type: dict[str, dict[str, object]]) -> pd.DataFrame:
    """The evaluation report's per-defect-type figures as a table."""
    return pd.DataFrame([{"defect type": name, "images": v.get("count"),
                          "defective": v.get("n_anomalous"),
                          # "n/a" as the CLI prints it (one class only: the good images)
                          "image AUROC": "n/a" if v.get("image_auroc") is None
                          else f"{v['image_auroc']:.3f}",
                          "mean score": v.get("mean_score")}
                         for name, v in per_defect_type.items()])


def no_mask_rows(missing: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Defective images without a ground-truth mask, and why, as a table."""
    return pd.DataFrame(list(missing), columns=["image", "reason"])


@dataclass(frozen=True)
class Curves:
    """Image-level ROC and precision-recall points of an evaluation."""

    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    base_rate: float


def image_curves(labels: np.ndarray, scores: np.ndarray) -> Curves | None:
    """ROC and PR points; None unless there are both good and defective images."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.size or labels.all() or not labels.any():
        return None
    from padim_core.metrics import pr_curve_points, roc_curve_points

    fpr, tpr, _ = roc_curve_points(labels, scores)
    precision, recall, _ = pr_curve_points(labels, scores)
    return Curves(fpr, tpr, precision, recall, float(labels.mean()))


def relative_map(amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """A map in multiples of its model's pixel threshold (1.0 = at the threshold)."""
    return np.asarray(amap, dtype=np.float32) / np.float32(max(pixel_threshold, 1e-12))


def verdict_labels(ng: np.ndarray) -> list[str]:
    """"NG" / "OK" per image from a boolean NG array."""
    return ["NG" if bool(x) else "OK" for x in np.asarray(ng)]


def results_table(names: Sequence[str], scores: np.ndarray, threshold: float,
                  ng: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: name, score, score / threshold, verdict (NG at/above threshold);
    the column names of ``padim predict``'s results.csv, so the two files line up."""
    scores = np.asarray(scores, dtype=float)
    if ng is None:
        ng = thresholds.is_ng(scores, threshold)
    return pd.DataFrame({
        "name": list(names),
        "score": scores,
        "normalized_score": scores / threshold if threshold > 0 else np.full_like(scores, np.inf),
        "verdict": verdict_labels(ng),
    })


def table_csv(table: pd.DataFrame) -> bytes:
    """The results table as UTF-8 CSV, with text cells made spreadsheet-safe."""
    safe = table.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(lambda v: spreadsheet_safe(str(v)))
    return safe.to_csv(index=False, float_format="%.6g").encode("utf-8")


def overlay_image(image: np.ndarray, amap: np.ndarray, display: Display) -> np.ndarray:
    """Heatmap blended over the (cropped) input."""
    return visualize.overlay(image, amap, display.vmin, display.vmax, display.alpha,
                             display.colormap)


def mask_of(amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """Boolean defect mask at the pixel threshold."""
    return np.asarray(visualize.defect_mask(amap, pixel_threshold), dtype=bool)


def contour_image(image: np.ndarray, amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """The input with the outline of every region above the pixel threshold."""
    return visualize.draw_contours(image, mask_of(amap, pixel_threshold))


def mask_image(amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """The defect mask as a black / white RGB image."""
    mask = mask_of(amap, pixel_threshold)
    return np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)


def defect_fraction(amap: np.ndarray, pixel_threshold: float) -> float:
    """Share of the image above the pixel threshold."""
    return float(mask_of(amap, pixel_threshold).mean())


def _member_name(name: str) -> str:
    """A safe relative path inside a zip for an image name."""
    parts = [re.sub(r"[^A-Za-z0-9._ -]+", "_", p) for p in name.replace("\\", "/").split("/")]
    parts = [p for p in parts if p not in {"", ".", ".."}] or ["image"]
    stem = parts[-1].rsplit(".", 1)[0] or "image"
    return "/".join([*parts[:-1], f"{stem}_overlay.png"])


def overlays_zip(
    names: Sequence[str],
    images: np.ndarray,
    maps: np.ndarray,
    table: pd.DataFrame,
    display: Display,
    pixel_threshold: float,
) -> bytes:
    """A .zip with one overlay PNG (heatmap + defect contours) per image and the CSV table."""
    buf = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("results.csv", table_csv(table))
        for i, name in enumerate(names):
            base = member = _member_name(name)
            n = 2
            while member in used:
                member = base.removesuffix(".png") + f"-{n}.png"
                n += 1
            used.add(member)
            over = overlay_image(images[i], maps[i], display)
            over = visualize.draw_contours(over, mask_of(maps[i], pixel_threshold))
            zf.writestr(f"overlays/{member}", visualize.encode_png(over))
    return buf.getvalue()
