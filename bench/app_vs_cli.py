"""Training through the app's upload path vs the CLI ``fit``, on the same images, in one run.

    python -m bench.app_vs_cli [--data DIR] [--repeats N]

The app side is a real Streamlit session (AppTest): the images are handed to the Train page's
file uploader as the bytes a browser would send, then "Train on uploaded images" is clicked;
the time is from the click to the model card. The CLI side is ``python -m padim_core fit``
as a subprocess, wall time. Both use the default backbone and settings. Passes alternate so
machine load hits both sides alike; the best pass of each is reported.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DEFAULT_DATA, REPO
from padim_core.allocator import keep_freed_memory
from padim_core.datasets import training_images


def app_fit_seconds(paths: list[Path]) -> float:
    """Seconds from clicking Train to a trained model, uploads already in the widget."""
    from streamlit.testing.v1 import AppTest

    files = [(p.name, p.read_bytes(), "image/png") for p in paths]
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=1800).run()
    at.switch_page("pages/train.py").run()
    at.file_uploader(key="trainA_files").set_value(files).run()
    start = time.perf_counter()
    at.button(key="trainA_go").click().run()
    elapsed = time.perf_counter() - start
    if at.exception or at.error:
        raise RuntimeError(f"app training failed: {[e.value for e in at.exception or at.error]}")
    return elapsed


def cli_fit_seconds(data: Path) -> float:
    """Wall time of ``python -m padim_core fit DATA`` (process start and backbone load included)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "padim_core", "fit", str(data), "-o",
                        str(Path(tmp) / "m.safetensors"), "--no-progress"], check=True,
                       capture_output=True, cwd=REPO)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.app_vs_cli", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    keep_freed_memory()      # the CLI side sets it in its own process
    paths = training_images(args.data)
    app, cli = [], []
    for _ in range(args.repeats):
        cli.append(cli_fit_seconds(args.data))
        app.append(app_fit_seconds(paths))
    print(f"{len(paths)} training images from {args.data}")
    print(f"CLI fit (process wall time)   best {min(cli):7.1f} s   passes {cli}")
    print(f"app upload path, click->ready best {min(app):7.1f} s   passes {app}")
    print(f"app / CLI                     {min(app) / min(cli):.3f}   target <= 1.3")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
