"""``python -m bench.line --smoke`` (what ``make bench`` runs last) goes end to end: ONNX vs
torch, ``padim serve`` under load vs ``padim predict``, the LocalCluster fit, one summary.

Why: these three scripts produce docs/export.md's and docs/cluster.md's figures; a refactor
that broke one would go unnoticed until the next measurement. Nothing about timings is
asserted (a printout, not a timed test); correctness figures are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.line import main

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:only .* training images"),
              pytest.mark.filterwarnings("ignore:Port .* is already in use")]


def test_bench_line_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "line.json"
    assert main(["--smoke", "--serve-seconds", "3", "--clients", "4", "--n-test", "4",
                 "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    onnx, serve, cluster = result["onnx_vs_torch"], result["serve_load"], result["cluster"]
    assert onnx["score_max_rel_diff"] <= 1e-4 and onnx["map_max_rel_diff"] <= 1e-3
    assert onnx["onnxruntime_ms_per_image"] > 0 and onnx["torch_ms_per_image"] > 0
    assert serve["requests"] > 0 and serve["errors"] == 0, serve.get("first_errors")
    assert serve["padim_predict_images_per_second"] > 0
    assert cluster["same_thresholds"] is True and cluster["shard_statistics_bytes"] > 0
    printed = capsys.readouterr().out
    assert "onnxruntime / torch, ms per image" in printed
    assert "fit on LocalCluster 2x1 / one process" in printed
