"""The benchmark runs end to end (tiny sizes) and reports every figure.

Why: `make bench` is how the README's speed and memory table is produced; if a refactor of
padim_core broke it, nobody would notice until the next time someone measured. This runs the
smoke version (synthetic images, size 64, a small resnet18 in place of Wide-ResNet50) as a
subprocess and checks the JSON has every key with a positive number. It asserts nothing
about timings: CI machines are too noisy for that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow   # about 30 s on a 2-core machine

REQUIRED = {
    "inference": ("backbone_ms_per_image", "predict_ms_per_image", "ratio"),
    "fit": ("backbone_s", "fit_s", "ratio"),
    "memory": ("baseline_rss_mb", "peak_rss_n_mb", "peak_rss_4n_mb", "ratio"),
    "wrn": ("fit_s", "predict_ms_per_image", "backbone_ms_per_image", "peak_rss_mb"),
}


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench ARGS`` from the repository root, as `make bench` runs it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    proc = _bench("--smoke", "--profile", "--devices", "cpu", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_every_figure_is_a_positive_number(smoke: tuple[dict, str]) -> None:
    result, _ = smoke
    for section, keys in REQUIRED.items():
        for key in keys:
            value = result["cpu"][section][key]
            assert isinstance(value, (int, float)) and value > 0, (section, key, value)
    assert result["cpu"]["memory"]["n_4n"] == 4 * result["cpu"]["memory"]["n"]
    for name in ("predict_ratio", "fit_ratio", "memory_ratio", "wrn_peak_rss_mb"):
        assert set(result["targets"][name]) == {"value", "limit", "met"}


def test_profile_and_table(smoke: tuple[dict, str]) -> None:
    result, stdout = smoke
    prof = result["cpu"]["profile"]
    assert prof["predict_ms_per_image"]["total predict"] > 0
    assert prof["predict_ms_per_image"]["  backbone forward"] > 0
    assert prof["fit_s"]["total fit"] > 0
    assert "predict / backbone" in stdout and "peak RSS 4N / N" in stdout


def test_gpu_section_without_cuda(tmp_path: Path) -> None:
    """Without CUDA the GPU section says so instead of failing."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = tmp_path / "gpu.json"
    proc = _bench("--smoke", "--devices", "cuda", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GPU: no CUDA device" in proc.stdout
    assert json.loads(out.read_text())["gpu"] == {"available": False, "note": "no CUDA device"}
