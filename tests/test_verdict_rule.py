"""One verdict rule: the engine, the CLI's CSV and the app's pages agree, NaN and inf included."""

from __future__ import annotations

import numpy as np

from inspector_ui import views
from padim_core.model import PredictResult
from padim_core.thresholds import is_ng

SCORES = np.array([0.5, 1.0, 1.5, np.nan, np.inf, -np.inf])
EXPECTED = np.array([False, True, True, True, True, True])


def _result(scores: np.ndarray) -> PredictResult:
    n = len(scores)
    return PredictResult([f"i{k}" for k in range(n)], scores, np.zeros((n, 4, 4), np.float32),
                         np.zeros((n, 4, 4, 3), np.uint8), 1.0, 1.0)


def test_rule_flags_at_threshold_and_non_finite_scores() -> None:
    assert is_ng(SCORES, 1.0).tolist() == EXPECTED.tolist()


def test_engine_cli_and_pages_give_the_same_verdicts() -> None:
    engine = _result(SCORES).verdicts()            # what `padim predict` writes to its CSV
    page_one = [views.is_ng(s, 1.0) for s in SCORES]   # Compare's per-image verdict
    table = views.results_table([f"i{k}" for k in range(len(SCORES))], SCORES, 1.0)  # Inspect
    assert engine.tolist() == EXPECTED.tolist()
    assert page_one == EXPECTED.tolist()
    assert (table["verdict"] == "NG").tolist() == EXPECTED.tolist()
