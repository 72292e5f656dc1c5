"""``python -m bench.decoding`` (part of `make bench`) runs end to end and reports every side.

Why: it prints issue #18's "from files vs backbone" figure; a refactor that broke it would go
unnoticed until someone measured on a GPU. Tiny synthetic sizes, no timing asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SIDES = ("backbone", "decode", "predict_sequential", "predict_threads", "fit_sequential",
         "fit_threads")


def test_smoke_run_reports_every_side(tmp_path: Path) -> None:
    out = tmp_path / "decoding.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "bench.decoding", "--smoke", "--devices", "cpu",
                           "--workers", "2", "--json", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (case,) = json.loads(out.read_text())["devices"]
    assert case["device"] == "cpu" and case["workers"] == 2 and case["n_images"] == 8
    for side in SIDES:
        assert case["images_per_s"][side] > 0, side
    assert set(case["share_of_backbone"]) == set(SIDES) - {"backbone"}
    assert "predict from files, threads" in proc.stdout and "of backbone" in proc.stdout
