"""``python -m bench.device_profile`` (a step of bench/gpu_check.sh) runs and names every step.

Why: on a GPU session every minute counts; a renamed engine function would make the profile
step fail there, or silently drop a step from the breakdown. Tiny synthetic sizes on the CPU,
no timing asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import device_profile
from padim_core import model as model_module
from padim_core.backbones import FeatureExtractor

REPO = Path(__file__).resolve().parents[1]


def test_every_step_still_exists_and_is_restored() -> None:
    before = (FeatureExtractor.forward, model_module.finalize, model_module.mahalanobis)
    with device_profile.labelled_steps():
        assert FeatureExtractor.forward is not before[0]
        assert model_module.finalize is not before[1]
    assert (FeatureExtractor.forward, model_module.finalize, model_module.mahalanobis) == before


@pytest.mark.slow
def test_smoke_run_times_the_steps_of_fit_and_predict(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "bench.device_profile", "--smoke",
                           "--device", "cpu", "--json", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    fit_steps = {r["name"]: r for r in result["fit"]["steps"]}
    for label in ("backbone forward", "embedding", "statistics update (numpy)",
                  "finalize (Cholesky, inverse, leave-one-out)", "sums kept for updates",
                  "thresholds (maps of calibration images)"):
        assert fit_steps[f"## {label}"]["calls"] >= 1, label
    predict_steps = {r["name"] for r in result["predict"]["steps"]}
    assert {"## backbone forward", "## mahalanobis", "## maps (upsample + blur)"} <= predict_steps
    assert fit_steps["## backbone forward"]["cpu_ms"] > 0
    assert "engine steps" in proc.stdout
