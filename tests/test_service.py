"""``padim serve``: right scores under concurrency, every bad request a 4xx, still serving.

Why: line software talks to the service unattended; a wrong score, a 500 or a dead worker
after one bad upload stops a production line. In-process tests use FastAPI's TestClient;
the disconnect and body-cap tests need a real socket, so they run uvicorn on a free
loopback port in a thread. Small model (d=16, 96 px) to keep this to seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import hostile_inputs as h
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from padim_core import PadimModel, service
from padim_core.demo import make_demo_set
from padim_core.images import load_image
from padim_core.limits import MAX_UPLOAD_MB
from padim_core.service import INTERNAL_ERROR, MicroBatcher, Scored, create_app, header_text
from padim_core.thresholds import is_ng

CAP = 200_000   # a small upload cap for the in-process tests (the real one is tested live)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("serve") / "demo", n_train=12,
                         n_test_good=4, n_test_defect=6, size=128)


@pytest.fixture(scope="module")
def model(demo: Path) -> PadimModel:
    return PadimModel(d=16, image_size=96, crop=96, device="cpu").fit(
        sorted((demo / "train" / "good").glob("*.png")))


@pytest.fixture(scope="module")
def images(demo: Path) -> list[Path]:
    return sorted((demo / "test").glob("*/*.png"))


@pytest.fixture(scope="module")
def client(model: PadimModel) -> Iterator[TestClient]:
    with TestClient(create_app(model, max_wait_ms=50, max_upload_bytes=CAP)) as c:
        yield c


def _post(client: TestClient, path: Path, query: str = "") -> object:
    return client.post(f"/predict{query}", files={"file": (path.name, path.read_bytes(),
                                                           "image/png")})


def _assert_serving(client: TestClient, image: Path) -> None:
    r = _post(client, image)
    assert r.status_code == 200 and r.json()["score"] > 0


def test_scores_equal_predict_under_concurrency(client: TestClient, model: PadimModel,
                                                images: list[Path]) -> None:
    expected = model.predict(images)
    batches_before = client.app.state.batcher.batches
    work = images * 3
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda p: _post(client, p), work))
    assert all(r.status_code == 200 for r in answers)
    by_name = dict(zip([str(p) for p in images], expected.scores, strict=True))
    for path, r in zip(work, answers, strict=True):
        body = r.json()
        ref = by_name[str(path)]
        assert body["score"] == pytest.approx(ref, rel=1e-4)
        assert body["normalized_score"] == pytest.approx(ref / model.image_threshold_, rel=1e-4)
        assert body["verdict"] == ("NG" if is_ng(ref, model.image_threshold_) else "OK")
        assert body["thresholds"] == {"image": model.image_threshold_,
                                      "pixel": model.pixel_threshold_}
        assert len(body["model"]["id"]) == 12
    assert {r.json()["verdict"] for r in answers} == {"OK", "NG"}
    # micro-batching: 30 concurrent requests took fewer backbone passes than images
    assert client.app.state.batcher.batches - batches_before < len(work)


def test_overlay_png(client: TestClient, model: PadimModel, images: list[Path]) -> None:
    r = _post(client, images[-1], "?overlay=png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert load_image(r.content).shape == (96, 96, 3)
    assert float(r.headers["x-padim-score"]) == pytest.approx(
        model.predict(images[-1:]).scores[0], rel=1e-4)
    assert r.headers["x-padim-verdict"] in ("OK", "NG")


def test_health_model_and_docs(client: TestClient, model: PadimModel) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    card = client.get("/model").json()
    assert card["card"]["image_threshold"] == model.image_threshold_
    assert card["model"]["id"] == health["model_id"]
    assert client.get("/docs").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("case, status, fragment", [
    (h.text_renamed_png(), 400, "not an image"),
    (h.truncated_png(), 400, "truncated"),
    (h.one_pixel_png(), 400, "too small"),
    (h.decompression_bomb_png(), 400, "exceeds the limit"),
    (h.empty_file(), 400, "empty"),
], ids=["not-an-image", "truncated", "1x1", "bomb", "empty"])
def test_bad_images_are_4xx_and_service_keeps_serving(
        client: TestClient, images: list[Path], case: tuple[str, bytes], status: int,
        fragment: str) -> None:
    name, data = case
    r = client.post("/predict", files={"file": (name, data, "image/png")})
    assert r.status_code == status
    assert "\n" not in r.text
    error = r.json()["error"]
    assert name in error and fragment in error.lower()
    _assert_serving(client, images[0])


def test_bad_requests_are_4xx_and_service_keeps_serving(client: TestClient,
                                                        images: list[Path]) -> None:
    png = images[0].read_bytes()
    cases = [
        (client.post("/predict", files={"file": ("a.txt", png, "text/plain")}), 415,
         "content type text/plain is not an image"),
        (client.post("/predict", json={"file": "a.png"}), 415, "multipart/form-data"),
        (client.post("/predict", content=png, headers={"content-type": "image/png"}), 415,
         "multipart/form-data"),
        (client.post("/predict", files={"image": ("a.png", png, "image/png")}), 422,
         "file: field required"),
        (client.post("/predict", files={"file": ("big.png", b"\0" * (CAP + 1), "image/png")}),
         413, "upload limit"),
        (client.post("/predict?overlay=jpeg", files={"file": ("a.png", png, "image/png")}),
         422, "overlay"),
        # Two images in one request: FastAPI scored the last and dropped the first unseen.
        (client.post("/predict", files=[("file", ("ng.png", png, "image/png")),
                                        ("file", ("ok.png", png, "image/png"))]),
         422, "file: one image per request, got 2 file parts"),
        # The rest answered {"detail": ...} or named Python classes.
        (client.post("/predict", files={"file": (None, "hello")}), 422,
         "file: must be a file part"),
        (client.post("/predict", content=b"abc",
                     headers={"content-type": "multipart/form-data"}), 400,
         "post /predict: missing boundary"),
        (client.get("/predict"), 405, "get /predict: method not allowed"),
        (client.get("/nothing"), 404, "get /nothing: not found"),
    ]
    for r, status, fragment in cases:
        assert r.status_code == status, r.text
        assert "\n" not in r.text and fragment in r.json()["error"].lower(), r.text
        assert "<class" not in r.text
    assert cases[-2][0].headers["allow"] == "POST"
    _assert_serving(client, images[0])


def test_default_cap_is_the_upload_limit(model: PadimModel) -> None:
    app = create_app(model)
    guard = [m for m in app.user_middleware if m.cls.__name__ == "UploadGuard"][0]
    assert guard.kwargs["max_bytes"] == MAX_UPLOAD_MB * 2**20


def test_batcher_survives_a_failing_batch() -> None:
    calls: list[int] = []

    def score(images: list[np.ndarray]) -> list[Scored]:
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("backbone fell over")
        return [Scored(float(im.sum()), im, im) for im in images]

    batcher = MicroBatcher(score, max_batch=8, max_wait_ms=20)
    batcher.start()

    async def run() -> list[object]:
        first = await asyncio.gather(batcher.submit(np.ones(2)), return_exceptions=True)
        rest = await asyncio.gather(*(batcher.submit(np.full(2, k)) for k in range(5)))
        return [*first, *rest]
    try:
        results = asyncio.run(run())
    finally:
        batcher.stop()
    assert isinstance(results[0], RuntimeError)
    assert [r.score for r in results[1:]] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert sum(calls[1:]) == 5 and len(calls) < 6      # the five came in fewer batches


@pytest.mark.parametrize("ref", ["plates😀@1", "Ölwanne / Linie 3@2", "50%-Probe@7"])
def test_overlay_header_carries_any_model_name(model: PadimModel, images: list[Path],
                                               ref: str) -> None:
    """A model renamed "plates😀" made every overlay request a 500: a header carries only
    Latin-1. The version is percent-encoded UTF-8 now, and decodes back to the name."""
    with TestClient(create_app(model, library_ref=ref)) as c:
        r = _post(c, images[0], "?overlay=png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        header = r.headers["x-padim-version"]
        assert header.isascii() and unquote(header) == ref
        assert _post(c, images[0]).json()["model"]["version"] == ref     # JSON: as it is
    assert header_text("plates@3") == "plates@3"         # ASCII names read as before
    assert header_text("a%b c") == "a%25b c"


def test_at_most_max_concurrent_images_held_at_once(
        model: PadimModel, images: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """40 parallel 64-megapixel uploads were decoded at once (anyio's 40 worker threads),
    about 1 GB each. Reading, decoding and holding a full-size image until it is scored is
    capped at max_concurrent requests; the others wait and are answered."""
    lock, held, peak, decoding, peak_decoding = threading.Lock(), [0], [0], [0], [0]
    decode = service.load_image

    def counting_load_image(data: bytes, name: str) -> np.ndarray:
        with lock:
            held[0] += 1
            decoding[0] += 1
            peak[0], peak_decoding[0] = max(peak[0], held[0]), max(peak_decoding[0],
                                                                   decoding[0])
        try:
            time.sleep(0.05)
            return decode(data, name)
        finally:
            with lock:
                decoding[0] -= 1

    monkeypatch.setattr(service, "load_image", counting_load_image)
    app = create_app(model, max_wait_ms=20, max_concurrent=2)
    assert app.state.max_concurrent == 2
    batcher = app.state.batcher
    score = batcher.score

    def counting_score(decoded: list[np.ndarray]) -> list[Scored]:
        try:
            return list(score(decoded))
        finally:
            with lock:
                held[0] -= len(decoded)      # the full-size pictures are dropped now

    batcher.score = counting_score
    work = images * 2
    with TestClient(app) as c, ThreadPoolExecutor(len(work)) as pool:
        answers = list(pool.map(lambda p: _post(c, p), work))
    assert [r.status_code for r in answers] == [200] * len(work)
    assert peak_decoding[0] <= 2 and peak[0] <= 2, (peak_decoding, peak)
    assert held == [0]
    assert create_app(model).state.max_concurrent == 2 * (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="max_concurrent"):
        create_app(model, max_concurrent=0)


def test_internal_error_is_logged_not_told(client: TestClient, images: list[Path],
                                           monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The 500 answer read "internal error: UnicodeEncodeError: 'latin-1' codec ...": the
    exception's text (paths, internals) went to the client. It goes to the log now, with
    its traceback; the client gets a fixed line, and the service keeps serving."""
    def broken(*_: object) -> bytes:
        raise RuntimeError("secret detail /srv/padim/models")

    monkeypatch.setattr(service, "threshold_overlay_png", broken)
    with caplog.at_level(logging.ERROR, logger="padim_core.service"):
        r = _post(client, images[0], "?overlay=png")
    assert r.status_code == 500 and r.json() == {"error": INTERNAL_ERROR}
    assert "secret" not in r.text and "RuntimeError" not in r.text
    [record] = [rec for rec in caplog.records if rec.name == "padim_core.service"]
    assert "POST /predict" in record.getMessage()
    assert record.exc_info is not None and "secret detail" in str(record.exc_info[1])
    _assert_serving(client, images[0])


# --------------------------------------------------------------------------- a real socket


@pytest.fixture(scope="module")
def live(model: PadimModel) -> Iterator[tuple[str, int]]:
    """The app under uvicorn on a free loopback port (real upload cap)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(model), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(10)


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "padimtestboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _raw(addr: tuple[str, int], head: bytes, body: bytes = b"") -> tuple[int, dict]:
    with socket.create_connection(addr, timeout=30) as s:
        s.sendall(head + body)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, json.loads(reply.split(b"\r\n\r\n", 1)[1])


def _predict_raw(addr: tuple[str, int], image: Path) -> tuple[int, dict]:
    body, ctype = _multipart(image.name, image.read_bytes())
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return _raw(addr, head, body)


def test_live_body_over_the_real_cap_refused_before_upload(live: tuple[str, int],
                                                           images: list[Path]) -> None:
    declared = MAX_UPLOAD_MB * 2**20 + 1
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            f"boundary=b\r\nContent-Length: {declared}\r\n\r\n").encode()
    status, body = _raw(live, head, b"--b\r\n")     # refused without the 200 MB being sent
    assert status == 413 and "upload limit is 200 MB" in body["error"]
    assert _predict_raw(live, images[0])[0] == 200


def test_live_chunked_body_over_the_cap_refused(model: PadimModel, images: list[Path]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(model, max_upload_bytes=50_000),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        body, ctype = _multipart("big.png", b"\0" * 120_000)
        chunks = b"".join(f"{len(body[i:i + 8192]):x}\r\n".encode() + body[i:i + 8192] + b"\r\n"
                          for i in range(0, len(body), 8192)) + b"0\r\n\r\n"
        head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                f"Transfer-Encoding: chunked\r\n\r\n").encode()
        status, answer = _raw(sock.getsockname(), head, chunks)
        assert status == 413 and "upload limit" in answer["error"]
        assert _predict_raw(sock.getsockname(), images[0])[0] == 200
    finally:
        server.should_exit = True
        thread.join(10)


def test_live_client_disconnecting_mid_upload(live: tuple[str, int],
                                              images: list[Path]) -> None:
    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    body, ctype = _multipart(images[0].name, images[0].read_bytes())
    for _ in range(5):
        with socket.create_connection(live, timeout=30) as s:
            s.sendall((f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:len(body) // 2])
        # and one that leaves after sending everything, before the answer
        with socket.create_connection(live, timeout=30) as s:
            s.sendall((f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    time.sleep(0.5)
    status, answer = _predict_raw(live, images[0])
    logging.getLogger("uvicorn.error").removeHandler(handler)
    assert status == 200 and answer["score"] > 0
    assert [r.getMessage() for r in errors] == []     # no "Exception in ASGI application"


def test_live_internal_error_logged_once(live: tuple[str, int], images: list[Path],
                                         monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Under uvicorn too: a generic 500 body, one traceback in the log (ours), not a
    second "Exception in ASGI application" from the server."""
    def broken(*_: object) -> np.ndarray:
        raise RuntimeError("secret detail")

    server_log: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = server_log.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    monkeypatch.setattr(service, "load_image", broken)
    try:
        with caplog.at_level(logging.ERROR, logger="padim_core.service"):
            status, answer = _predict_raw(live, images[0])
    finally:
        monkeypatch.undo()
        logging.getLogger("uvicorn.error").removeHandler(handler)
    assert status == 500 and answer == {"error": INTERNAL_ERROR}
    ours = [r for r in caplog.records if r.name == "padim_core.service"]
    assert len(ours) == 1 and ours[0].exc_info is not None
    assert [r.getMessage() for r in server_log] == []
    assert _predict_raw(live, images[0])[0] == 200


def test_cli_serve_answers_health(tmp_path: Path, model: PadimModel) -> None:
    import subprocess
    import sys
    import urllib.request

    model_file = tmp_path / "m.safetensors"
    model.save(model_file)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "padim_core", "serve", str(model_file),
                             "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    assert json.load(r)["status"] == "ok"
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "padim serve did not answer"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(20)
    assert "serving" in proc.stdout.read()
    assert np.isfinite(model.image_threshold_)


def test_cli_serve_refuses_a_busy_port_and_bad_tuning_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A busy port ended in uvicorn's log and exit status 3 after loading the model;
    --max-batch 0 and --max-wait-ms -1 were taken silently."""
    from padim_core.cli import main

    missing = str(tmp_path / "not-loaded.safetensors")   # refused before the model loads
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", missing, "--port", str(port), "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(
            f"padim: error: --host 127.0.0.1 --port {port}: cannot listen there (")
    for option, value, says in (("--max-batch", "0", "must be at least 1, got 0"),
                                ("--max-wait-ms", "-1", "must be 0 or more, got -1.0"),
                                ("--max-concurrent", "0", "must be at least 1, got 0")):
        assert main(["serve", missing, option, value]) == 2
        assert f"padim: error: {option}: {says}" in capsys.readouterr().err
