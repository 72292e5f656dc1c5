"""Plotly figures for the pages: score histograms with a threshold line, ROC and PR curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from padim_core import thresholds

OK_COLOUR = "#2e7d32"
NG_COLOUR = "#c62828"
THRESHOLD_COLOUR = "#ef6c00"


def _layout(title: str, **extra: object) -> dict[str, object]:
    """Shared look: title top left, legend in one row above the plot."""
    return {"title": {"text": title, "x": 0.0, "xanchor": "left", "y": 0.97},
            "margin": {"l": 50, "r": 20, "t": 80, "b": 45}, "height": 340,
            "legend": {"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.02,
                       "yanchor": "bottom"}, **extra}


def _bins(*arrays: np.ndarray, n: int = 30) -> dict[str, float]:
    """One set of histogram bins for several traces, so their bars line up."""
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays if len(a)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"start": 0.0, "end": 1.0, "size": 1.0 / n}
    lo, hi = float(values.min()), float(values.max())
    size = (hi - lo) / n if hi > lo else max(abs(hi), 1.0) / n
    return {"start": lo, "end": hi + size, "size": size}


def score_histogram(
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    title: str,
    *,
    ng: np.ndarray | None = None,
    reference: Sequence[float] | np.ndarray | None = None,
    reference_name: str = "calibration (normal)",
    x_title: str = "anomaly score",
) -> go.Figure:
    """Histogram of ``scores`` with a vertical threshold line (and an optional reference set).

    ``ng``: the verdicts to colour by (default: the engine's rule, ``thresholds.is_ng``).
    """
    scores = np.asarray(scores, dtype=float)
    ng = thresholds.is_ng(scores, threshold) if ng is None else np.asarray(ng, dtype=bool)
    ref = np.asarray(reference, dtype=float) if reference is not None else np.zeros(0)
    bins = _bins(scores, ref, np.asarray([threshold]))
    fig = go.Figure()
    if ref.size:
        fig.add_trace(go.Histogram(x=ref, name=reference_name, marker_color="#90a4ae",
                                   opacity=0.55, xbins=bins))
    below, above = scores[~ng], scores[ng]
    fig.add_trace(go.Histogram(x=below, name=f"OK ({len(below)})", marker_color=OK_COLOUR,
                               opacity=0.8, xbins=bins))
    fig.add_trace(go.Histogram(x=above, name=f"NG ({len(above)})", marker_color=NG_COLOUR,
                               opacity=0.8, xbins=bins))
    fig.add_vline(x=float(threshold), line_color=THRESHOLD_COLOUR, line_width=2,
                  line_dash="dash", annotation_text=f"threshold {threshold:.3g}",
                  annotation_position="top right")
    fig.update_layout(**_layout(title, barmode="overlay", xaxis_title=x_title,
                                yaxis_title="images"))
    return fig


def calibration_histogram(scores: np.ndarray, threshold: float) -> go.Figure:
    """The model card's histogram: leave-one-out scores of normal images, and the threshold."""
    scores = np.asarray(scores, dtype=float)
    fig = go.Figure(go.Histogram(x=scores, name="calibration images", marker_color="#546e7a",
                                 xbins=_bins(scores, np.asarray([threshold]),
                                             n=min(30, max(8, len(scores))))))
    fig.add_vline(x=float(threshold), line_color=THRESHOLD_COLOUR, line_width=2,
                  line_dash="dash", annotation_text=f"image threshold {threshold:.3g}",
                  annotation_position="top right")
    fig.update_layout(**_layout(f"Calibration scores ({len(scores)} normal images, each left out)",
                                xaxis_title="anomaly score", yaxis_title="images",
                                showlegend=False))
    return fig


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auroc: float | None) -> go.Figure:
    """ROC curve with the chance diagonal."""
    name = f"AUROC {auroc:.3f}" if auroc is not None else "ROC"
    fig = go.Figure(go.Scatter(x=fpr, y=tpr, mode="lines", name=name,
                               line={"color": "#1565c0", "width": 2}))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                             line={"color": "#9e9e9e", "dash": "dot"}))
    fig.update_layout(**_layout("Image ROC", xaxis_title="false positive rate",
                                yaxis_title="true positive rate", xaxis_range=[0, 1],
                                yaxis_range=[0, 1.02]))
    return fig


def pr_figure(precision: np.ndarray, recall: np.ndarray, f1: float | None,
              base_rate: float | None = None) -> go.Figure:
    """Precision-recall curve (recall on x) with the no-skill line."""
    name = f"best F1 {f1:.3f}" if f1 is not None else "PR"
    fig = go.Figure(go.Scatter(x=recall, y=precision, mode="lines", name=name,
                               line={"color": "#6a1b9a", "width": 2}))
    if base_rate is not None:
        fig.add_trace(go.Scatter(x=[0, 1], y=[base_rate, base_rate], mode="lines",
                                 name="no skill", line={"color": "#9e9e9e", "dash": "dot"}))
    fig.update_layout(**_layout("Image precision-recall", xaxis_title="recall",
                                yaxis_title="precision", xaxis_range=[0, 1],
                                yaxis_range=[0, 1.02]))
    return fig
