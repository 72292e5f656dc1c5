"""``python -m bench.update`` runs end to end at tiny sizes and reports every figure
(nothing about timings is asserted: a printout, not a timed test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.update import main
from padim_core.demo import make_demo_set


def test_bench_update_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_demo_set(tmp_path / "demo", n_train=10, n_test_good=10, n_test_defect=0,
                         size=128)
    result = main(["--data", str(data), "--d", "8", "--backbone", "resnet18", "--weights",
                   "random", "--size", "64", "--repeats", "1"])
    for key in ("add_1", "add_10"):
        assert set(result[key]) >= {"total_s", "cpu_s", "backbone_s", "beyond_backbone_s"}
        assert result[key]["backbone_s"] > 0
    files = result["files"]
    assert files["compact_mb"] < files["updatable_mb"]
    assert "partial_fit on cpu" in capsys.readouterr().out
