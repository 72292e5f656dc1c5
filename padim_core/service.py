"""Scoring service for line software: a FastAPI app around one fitted model.

``create_app(model)`` builds the app; ``padim serve`` runs it under uvicorn.

- ``POST /predict`` (multipart, image in field ``file``) → JSON score, normalized score,
  verdict (``thresholds.is_ng``, or ``is_ng_by_area`` under the model's area rule),
  thresholds, model id (and library version, when served from the workspace) and the defect
  regions (docs/regions.md); ``?overlay=png`` returns the
  overlay PNG instead (score and verdict in ``X-Padim-*`` headers).
  The library version in ``X-Padim-Version`` is percent-encoded UTF-8 (:func:`header_text`):
  a header carries only Latin-1, and a model may be named in any script.
- ``GET /health``, ``GET /model`` (the card), OpenAPI page at ``/docs``.
- Given a :class:`live_model.LiveModel` that follows the library (``padim serve --model NAME
  --follow``), each batch is scored, and each answer judged, by the version served when the
  batch started; a new version is loaded beside the old one and swapped in between batches.
- With ``check_token`` (``padim serve`` on a network address, or ``--require-token``) every
  request but the API description (``/docs``, ``/openapi.json``) needs
  ``Authorization: Bearer TOKEN``; without a valid token: 401, before any body is read.

Concurrent requests are micro-batched: each request decodes its image in a worker thread
of the server and queues it; one scoring thread takes whatever arrived within
``max_wait_ms`` (up to ``max_batch`` images) and scores it in one backbone pass, so a busy
service runs batches like ``padim predict`` on a folder. Nothing is kept between requests
(stateless: replicas behind any load balancer give the same answers).

At most ``max_concurrent`` requests (default 2 × CPU cores) hold an image at a time: the
upload read into memory, its decoding and the full-size picture until it is scored. The
others wait their turn, as they wait for the scoring thread, so a burst of large images
(64 megapixels decode through about 1 GB each) is bounded in memory by the cap, not by the
server's 40 worker threads.

Bad input never reaches the model and never stops the service: a body over
``limits.MAX_UPLOAD_MB`` (413, checked on the declared length and while reading), a
request that is not multipart or a part that is not an image type (415), a missing field
(422), and anything ``images.load_image`` refuses — not an image, truncated, too small,
a decompression bomb (400) — each answer one line of JSON ``{"error": "..."}``. Anything
else that goes wrong is logged with its traceback (logger ``padim_core.service``) and
answered 500 ``{"error": "internal error (see the service log)"}``: exception text can
name paths and internals, and stays in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import InvalidInputError
from .images import load_image
from .limits import MAX_UPLOAD_MB
from .live_model import LiveModel, Served, warm_up
from .model import PadimModel, __version__
from .regions import defect_regions, summary
from .thresholds import is_ng, is_ng_by_area
from .visualize import threshold_overlay_png

#: Images the scoring thread takes at once, and how long it waits for more after the first.
DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_WAIT_MS = 5.0
#: Part content types taken as "maybe an image" (the bytes decide): what curl, browsers and
#: HTTP libraries send for image files or when they do not know.
_IMAGE_PART_TYPES = ("image/", "application/octet-stream")
#: What a client is told of an unexpected failure (the details go to the log).
INTERNAL_ERROR = "internal error (see the service log)"
#: Printable ASCII but '%': left as it is in header values, so ASCII names read unchanged.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")

log = logging.getLogger(__name__)


def default_max_concurrent() -> int:
    """Requests holding an image at once unless told otherwise: 2 × CPU cores."""
    return 2 * (os.cpu_count() or 1)


def header_text(text: str) -> str:
    """``text`` as an HTTP header value: UTF-8, percent-encoded (RFC 3986) outside printable
    ASCII and for '%' itself, so ``urllib.parse.unquote`` (``decodeURIComponent``) gives it
    back. An ASCII name without '%' comes through unchanged (``plates@3``)."""
    return quote(text, safe=_HEADER_SAFE)


@dataclass(frozen=True)
class Scored:
    """One image's result from the scoring thread, and the model snapshot that scored it
    (its answer is judged with that snapshot's thresholds and region)."""

    score: float
    map: np.ndarray
    crop: np.ndarray
    served: Served | None = None


class MicroBatcher:
    """Collects images from many requests and scores them together on one thread.

    ``score`` takes a list of decoded images and returns one ``Scored`` per image. Requests
    wait on asyncio futures that the thread settles on the request's event loop; a request
    whose client went away just finds nobody waiting for its answer.
    """

    def __init__(self, score: Callable[[list[np.ndarray]], Sequence[Scored]],
                 max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_ms: float = DEFAULT_MAX_WAIT_MS) -> None:
        self.score = score
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.images = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="padim-batcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def submit(self, image: np.ndarray) -> Scored:
        """Queue one decoded image and wait for its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Scored] = loop.create_future()
        self._queue.put((image, future, loop))
        return await future

    def _collect(self) -> tuple[list[Any], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch, deadline = [first], time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=timeout) if timeout > 0 \
                    else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._collect()
            if not batch:
                continue
            try:
                results: Sequence[Any] = self.score([item[0] for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"scored {len(results)} of {len(batch)} images")
            except Exception as err:  # every waiting request gets the error, the thread lives
                results = [err] * len(batch)
            self.batches += 1
            self.images += len(batch)
            for (_, future, loop), result in zip(batch, results, strict=True):
                loop.call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():      # the request was cancelled (client gone)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _score_with(live: LiveModel) -> Callable[[list[np.ndarray]], list[Scored]]:
    def score(images: list[np.ndarray]) -> list[Scored]:
        served = live.current     # one snapshot for the whole batch
        res = served.model.predict(images, names=[f"#{i}" for i in range(len(images))])
        if len(res.names) != len(images):
            first = res.skipped[0] if res.skipped else ("image", "unreadable")
            raise InvalidInputError(*first)
        return [Scored(float(res.scores[i]), res.maps[i], res.images[i], served)
                for i in range(len(images))]
    return score


# --------------------------------------------------------------------------- errors


def _error_body(message: str) -> bytes:
    return json.dumps({"error": " ".join(str(message).split())}, separators=(",", ":")).encode()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


async def _send_error(send: Send, status: int, message: str,
                      extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = _error_body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra_headers]})
    await send({"type": "http.response.body", "body": body})


class UploadGuard:
    """ASGI middleware in front of ``path``: refuses non-multipart requests (415) and bodies
    over ``max_bytes`` (413) — by the declared Content-Length before reading anything, and
    by counting while reading when there is none — and ends quietly when the client leaves
    mid-upload."""

    def __init__(self, app: ASGIApp, path: str, max_bytes: int) -> None:
        self.app, self.path, self.max_bytes = app, path, int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        ctype = headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            await _send_error(send, 415, f"request: Content-Type must be multipart/form-data "
                                         f"with the image in field 'file', got "
                                         f"{ctype or 'none'}")
            return
        cap = f"the upload limit is {self.max_bytes / 2**20:g} MB"
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, f"request: bad Content-Length {declared!r}")
                return
            if int(declared) > self.max_bytes:
                await _send_error(send, 413, f"request: body of {int(declared)} bytes; {cap}")
                return
        received, answered = 0, False

        async def guarded_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    answered = True
                    await _send_error(send, 413, f"request: body over {self.max_bytes} "
                                                 f"bytes; {cap}")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not answered:
                await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except ClientDisconnect:
            return
        except Exception:
            if not answered:
                raise


class BearerGuard:
    """ASGI middleware: 401 unless ``Authorization: Bearer TOKEN`` carries a token that
    ``check_token`` accepts (checked in a worker thread: it may read the store)."""

    OPEN_PATHS = ("/docs", "/docs/oauth2-redirect", "/openapi.json")

    def __init__(self, app: ASGIApp, check_token: Callable[[str], bool]) -> None:
        self.app, self.check_token = app, check_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await _send_error(send, 401, "request: an API token is required (header "
                                         "'Authorization: Bearer TOKEN'; padim tokens add)",
                              [(b"www-authenticate", b'Bearer realm="padim"')])
            return
        if not await run_in_threadpool(self.check_token, token):
            await _send_error(send, 401, "request: the API token is not valid (unknown or "
                                         "revoked)",
                              [(b"www-authenticate", b'Bearer error="invalid_token"')])
            return
        await self.app(scope, receive, send)


class InternalErrorGuard:
    """ASGI middleware, outermost: an exception nothing else answered is logged with its
    traceback and the request gets 500 with :data:`INTERNAL_ERROR`, never the exception's
    text. (Starlette's own last-resort handler would also re-raise it to the server, which
    logs it a second time.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            log.exception("internal error answering %s %s", scope.get("method"),
                          scope.get("path"))
            if not started:      # else the answer is cut short; the server closes it
                await _send_error(send, 500, INTERNAL_ERROR)


# --------------------------------------------------------------------------- the app


def create_app(model: PadimModel | LiveModel, max_batch: int = DEFAULT_MAX_BATCH,
               max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
               max_upload_bytes: int = MAX_UPLOAD_MB * 2**20,
               check_token: Callable[[str], bool] | None = None,
               library_ref: str | None = None,
               max_concurrent: int | None = None) -> FastAPI:
    """A FastAPI app scoring images with the fitted ``model`` (see the module docstring), or
    with whatever a :class:`LiveModel` serves at the time (it follows the library).
    ``check_token``: when given, every request needs a bearer token it accepts.
    ``library_ref``: with a PadimModel, the workspace version served (``NAME@N``), named in
    every answer so line software can log which version judged a part (a LiveModel's
    snapshots carry their own).
    ``max_concurrent``: requests holding an image (upload bytes, decoding, the full-size
    picture until scored) at once, default :func:`default_max_concurrent`; the rest wait.

    The scoring thread (and a LiveModel's follower) start and stop with the app's lifespan
    (uvicorn, or ``with TestClient(app)``).
    """
    live = model if isinstance(model, LiveModel) else LiveModel(Served.of(model, library_ref))
    batcher = MicroBatcher(_score_with(live), max_batch, max_wait_ms)
    cap = default_max_concurrent() if max_concurrent is None else int(max_concurrent)
    if cap < 1:
        raise ValueError(f"max_concurrent: must be at least 1, got {max_concurrent!r}")
    slots = asyncio.Semaphore(cap)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        nonlocal slots
        slots = asyncio.Semaphore(cap)      # one per run: a semaphore keeps to its event loop
        await run_in_threadpool(warm_up, live.current.model)
        batcher.start()
        live.start()
        try:
            yield
        finally:
            live.stop()
            batcher.stop()

    app = FastAPI(title="PaDiM Inspector scoring service", version=__version__,
                  lifespan=lifespan,
                  description="Anomaly score, verdict and heat-map overlay for one image per "
                              "request, from one fitted PaDiM model.")
    app.add_middleware(UploadGuard, path="/predict", max_bytes=max_upload_bytes)
    if check_token is not None:   # added after the upload guard: runs before it, before
        app.add_middleware(BearerGuard, check_token=check_token)   # any body is read
    app.add_middleware(InternalErrorGuard)      # added last: around everything
    app.state.batcher, app.state.live, app.state.max_concurrent = batcher, live, cap

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            msg = str(err.get("msg", "invalid"))
            if "UploadFile" in msg:     # pydantic's words name Python classes
                msg = "must be a file part (multipart/form-data with a filename), not text"
            problems.append(f"{where or 'request'}: {msg}")
        return _error(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's class: also the router's 404 / 405 and the form parser's 400s
        answer = _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")
        answer.headers.update(exc.headers or {})
        return answer

    async def decoded_and_scored(file: UploadFile, name: str) -> Scored | JSONResponse:
        """One of ``cap`` requests at a time: read, decode and score the image; the
        full-size picture is dropped on return, before the slot goes to the next."""
        async with slots:
            data = await file.read()
            try:
                image = await run_in_threadpool(load_image, data, name)
            except InvalidInputError as err:
                return _error(400, str(err))
            del data
            return await batcher.submit(image)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and what is being served."""
        served = live.current
        return {"status": "ok", "model_id": served.identity["id"], "version": served.ref,
                "queued": batcher.pending, "batches": batcher.batches, "images": batcher.images}

    @app.get("/model")
    async def model_card() -> dict[str, Any]:
        """The model card (backbone, d, sizes, thresholds, calibration) and its id."""
        served = live.current
        return {"model": served.identity, "card": served.card,
                "thresholds": served.thresholds}

    @app.post("/predict", responses={200: {"content": {"image/png": {}}},
                                     400: {"description": "not a usable image"},
                                     413: {"description": "body over the upload limit"},
                                     415: {"description": "not multipart / not an image type"},
                                     422: {"description": "missing field"}})
    async def predict(
            request: Request,
            file: Annotated[UploadFile, File(description="the image (PNG, JPEG, ...)")],
            overlay: Annotated[Literal["png"] | None, Query(
                description="'png': return the heat-map overlay PNG instead of JSON")] = None,
    ) -> Any:
        """Score one image: JSON with score, normalized score, verdict and thresholds."""
        name = file.filename or "file"
        parts = len((await request.form()).getlist("file"))    # parsed once, cached
        if parts > 1:     # FastAPI would score the last one and drop the others unseen
            return _error(422, f"file: one image per request, got {parts} file parts")
        ctype = (file.content_type or "").lower()
        if ctype and not ctype.startswith(_IMAGE_PART_TYPES):
            return _error(415, f"{name}: content type {ctype} is not an image")
        result = await decoded_and_scored(file, name)
        if not isinstance(result, Scored):
            return result
        served, score = result.served or live.current, result.score
        model_ = served.model
        region, min_area = model_.region_, model_.config.min_defect_area
        found = defect_regions(result.map, served.pixel_threshold, region, min_area)[0]
        ng = bool(is_ng_by_area(score, len(found)) if model_.config.verdict_rule == "area"
                  else is_ng(score, served.image_threshold))
        identity = served.identity
        if overlay == "png":
            png = await run_in_threadpool(threshold_overlay_png, result.crop, result.map,
                                          served.pixel_threshold, region, min_area)
            return Response(png, media_type="image/png", headers={
                "X-Padim-Score": f"{score:.9g}", "X-Padim-Verdict": "NG" if ng else "OK",
                "X-Padim-Model": identity["id"],
                "X-Padim-Version": header_text(served.ref or "")})
        finite = math.isfinite(score)
        return {"name": name, "score": score if finite else None,
                "normalized_score": score / served.image_threshold if finite else None,
                "verdict": "NG" if ng else "OK", "thresholds": served.thresholds,
                "model": identity, **summary(found)}

    return app
