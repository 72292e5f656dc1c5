"""Load test of ``padim serve`` on loopback, next to ``padim predict`` on the same folder.

    python -m bench.serve_load [--data DIR] [--model FILE] [--clients 16] [--seconds 60]
                               [--max-requests N] [--json FILE]

1. ``padim predict MODEL DATA/test/* --out TMP`` (a subprocess, wall time: process start,
   backbone load, decoding, scoring and overlays) gives the reference score of every test
   image and images/s of the CLI; the engine alone (``PadimModel.predict`` on the paths, in
   this process) gives images/s without start-up and overlays.
2. ``padim serve MODEL --host 127.0.0.1`` (a subprocess) gets ``--clients`` concurrent
   clients (threads, one keep-alive connection each) posting the test images in turn for
   ``--seconds`` seconds or ``--max-requests`` requests, whichever comes first.
3. Reported: errors (non-200 answers, failed connections, and answers whose score differs
   from ``padim predict``'s by more than 1e-4 relative; zero expected), p50 / p99 latency,
   images/s of the service, and its ratio to both predict figures.

Loopback only; bounded in time (the server is stopped at the end whatever happens).
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEFAULT_DATA, REPO, image_set
from padim_core.allocator import keep_freed_memory

BOUNDARY = "padimloadtest"
TOLERANCE = 1e-4


def _multipart(path: Path) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: image/png\r\n\r\n").encode() \
        + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def _padim(*args: str) -> list[str]:
    return [sys.executable, "-m", "padim_core", *args]


def cli_predict(model: Path, folders: list[Path], out: Path) -> tuple[dict[str, float], float]:
    """Scores by absolute path from ``padim predict``, and its wall time."""
    start = time.perf_counter()
    subprocess.run(_padim("predict", str(model), *map(str, folders), "--out", str(out),
                          "--no-progress"), check=True, capture_output=True, cwd=REPO)
    wall = time.perf_counter() - start
    with open(out / "results.csv", newline="") as fh:
        scores = {str(Path(r["path"]).resolve()): float(r["score"]) for r in csv.DictReader(fh)}
    return scores, wall


def engine_seconds(model_file: Path, paths: list[Path], repeats: int = 2) -> float:
    """``PadimModel.predict`` on the paths (decode + score), model already loaded; best of
    ``repeats``."""
    from padim_core import PadimModel

    model = PadimModel.load(model_file)
    model.predict(paths[:2])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(paths)
        best = min(best, time.perf_counter() - start)
    return best


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, limit: float = 180.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"padim serve exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("padim serve did not answer /health in time")


def load(port: int, bodies: list[tuple[str, bytes]], expected: dict[str, float],
         clients: int, seconds: float, max_requests: int) -> dict[str, Any]:
    """``clients`` threads posting ``bodies`` round-robin until time or count runs out."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = [0]
    stop_at = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.monotonic() < stop_at:
            with lock:
                if issued[0] >= max_requests:
                    return
                issued[0] += 1
            key, body = bodies[i % len(bodies)]
            i += clients
            start = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, {
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
                resp = conn.getresponse()
                payload = resp.read()
                elapsed = time.perf_counter() - start
                problem = None
                if resp.status != 200:
                    problem = f"HTTP {resp.status}: {payload[:200]!r}"
                else:
                    score = json.loads(payload)["score"]
                    if abs(score - expected[key]) > TOLERANCE * abs(expected[key]):
                        problem = f"{key}: score {score} != padim predict {expected[key]}"
            except (OSError, http.client.HTTPException, ValueError) as err:
                elapsed, problem = time.perf_counter() - start, f"{type(err).__name__}: {err}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                latencies.append(elapsed)
                if problem:
                    errors.append(problem)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "first_errors": errors[:5],
            "wall_seconds": round(wall, 2),
            "images_per_second": round(len(latencies) / wall, 2),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if len(lat) else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, help="model file (default: fit one on DATA)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    keep_freed_memory()      # as the CLI and the service do in their own processes
    data = image_set(args.data, args.data.name)
    folders = sorted({p.parent for p in data.test})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = args.model
        if model is None:
            model = tmp / "model.safetensors"
            subprocess.run(_padim("fit", str(args.data), "-o", str(model), "--no-progress"),
                           check=True, capture_output=True, cwd=REPO)
        expected, cli_wall = cli_predict(model, folders, tmp / "pred")
        engine_s = engine_seconds(model, data.test)
        bodies = [(str(p.resolve()), _multipart(p)) for p in data.test]
        port = _free_port()
        with open(tmp / "serve.log", "w") as log:
            proc = subprocess.Popen(_padim("serve", str(model), "--host", "127.0.0.1",
                                           "--port", str(port)),
                                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            try:
                _wait_ready(port, proc)
                served = load(port, bodies, expected, args.clients, args.seconds,
                              args.max_requests)
            finally:
                proc.terminate()
                proc.wait(30)
        cli_wall_after = cli_predict(model, folders, tmp / "pred2")[1]
    n = len(data.test)
    cli_ips = n / min(cli_wall, cli_wall_after)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "data": str(args.data),
        "clients": args.clients, "seconds": args.seconds, **served,
        "padim_predict_images_per_second": round(cli_ips, 2),
        "padim_predict_wall_seconds": [round(cli_wall, 2), round(cli_wall_after, 2)],
        "engine_predict_images_per_second": round(n / engine_s, 2),
        "service_over_padim_predict": round(served["images_per_second"] / cli_ips, 3),
        "service_over_engine_predict": round(served["images_per_second"] * engine_s / n, 3),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
    }
    print(f"padim serve, {args.clients} clients, {served['wall_seconds']} s, "
          f"{served['requests']} requests: {served['errors']} errors")
    print(f"  latency p50 {served['latency_ms_p50']} ms, p99 {served['latency_ms_p99']} ms")
    print(f"  service        {served['images_per_second']:7.2f} images/s")
    print(f"  padim predict  {result['padim_predict_images_per_second']:7.2f} images/s "
          f"({n} images, best of 2 runs, process start and overlays included) -> service "
          f"x{result['service_over_padim_predict']}")
    print(f"  engine predict {result['engine_predict_images_per_second']:7.2f} images/s "
          f"(in-process, best of 2, no start-up, no overlays) -> service "
          f"x{result['service_over_engine_predict']}")
    print(f"  load average {result['machine']['load_average']}")
    for line in served["first_errors"]:
        print(f"  error: {line}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if served["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
