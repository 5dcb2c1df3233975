"""A small HTTP server for a local CLIP behind the black-box protocol (CraFT's owner side).

FastAPI + uvicorn (`pip install hf_clipadapt[serve]`). It binds 127.0.0.1 unless told
otherwise and speaks only JSON and safetensors bytes (`hf_clipadapt.craft.wire`):
nothing is unpickled. One authenticated client must not be able to take it down, so:

* every request is bounded (`ServeLimits`: body bytes, text length, prompts P,
  classes K, P×K text sequences per query, images per upload, cached images); a
  request over a limit gets HTTP 413, a malformed one (wrong shape, NaN/inf, 1- or
  5-channel images, nested JSON) 422, each naming what to change;
* the torch work runs on one worker thread with a bounded queue (HTTP 503 past
  `max_pending`), never on the event loop, so `/info` answers while a query runs;
* the owner's image-feature cache is LRU-bounded (`LocalBlackBox.limit_cache`);
* any other failure is HTTP 500 with a short message (the traceback goes to the
  server's log, never to the client), and `/info` shows no path of the owner's;
* a query is charged only once it is valid and its image handle is known;
* without a token it binds loopback only (with a warning); a non-loopback address
  without a token is refused.

Endpoints: GET /info; POST /context (JSON text -> p0 as safetensors); POST /images
(safetensors pixel_values -> JSON handle); POST /query (safetensors contexts + metadata
images/class_names -> safetensors scores); POST /query_texts (JSON -> safetensors).
The owner's `LocalBlackBox` keeps its own query count and budget (HTTP 429 past it).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' `Request` annotations at runtime.

import asyncio
import dataclasses
import hmac
import ipaddress
import logging
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .local import DEFAULT_MAX_CACHED_IMAGES, DEFAULT_MAX_CACHED_UPLOADS
from .protocol import QueryBudgetExceeded, UnknownImagesError
from .wire import pack, unpack

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the server (all positive ints; /info publishes them).

    Args:
        max_request_bytes: a request body (64 MiB).
        max_json_bytes: a JSON body, /context and /query_texts (1 MiB).
        max_text_chars: the /context text, each class name and each text prompt (1,000).
        max_prompts: contexts P in one /query (256).
        max_classes: classes K in one /query or /query_texts (1,000).
        max_prompt_classes: P×K, the text sequences one /query encodes (4,096): the
            memory and time of a query grow with it (CraFT's 40 candidates × 100 classes fit).
        max_images_per_upload: images in one /images (1,024).
        max_cached_images / max_cached_uploads: the LRU feature cache (50,000 images, 256 uploads).
        max_pending: requests waiting for the worker thread before HTTP 503 (16).
    """

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_json_bytes: int = 2**20
    max_text_chars: int = 1_000
    max_prompts: int = 256
    max_classes: int = 1_000
    max_prompt_classes: int = 4_096
    max_images_per_upload: int = 1_024
    max_cached_images: int = DEFAULT_MAX_CACHED_IMAGES
    max_cached_uploads: int = DEFAULT_MAX_CACHED_UPLOADS
    max_pending: int = 16

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ServeLimits.{field.name} must be a positive int, got {value!r}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Refused(Exception):
    """A request refused with an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _over(what: str, value: int, name: str, limit: int, hint: str) -> None:
    if value > limit:
        raise _Refused(413, f"{what} ({value}) is over this server's {name}={limit}; {hint}")


def _text(value, what: str, limits: ServeLimits) -> str:
    if not isinstance(value, str) or not value:
        raise _Refused(422, f"{what} must be a non-empty string")
    _over(f"the length of {what}", len(value), "max_text_chars", limits.max_text_chars, "send a shorter text")
    return value


def _names(value, what: str, limits: ServeLimits) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _Refused(422, f"'{what}' must be a non-empty list of strings, one per class")
    _over(f"the number of {what}", len(value), "max_classes", limits.max_classes, "ask about fewer classes at once")
    return [_text(v, f"each of '{what}'", limits) for v in value]


def _json(data: bytes) -> dict:
    import json

    try:
        value = json.loads(data)
    except RecursionError as e:
        raise _Refused(422, "the JSON body is nested too deeply") from e
    except ValueError as e:
        raise _Refused(422, f"the body is not JSON: {e}") from e
    if not isinstance(value, dict):
        raise _Refused(422, "the body must be a JSON object")
    return value


def _array(arrays: dict, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    if name not in arrays:
        raise _Refused(422, f"the payload needs a '{name}' array")
    value = arrays[name]
    if value.ndim not in ndims or 0 in value.shape:
        raise _Refused(
            422,
            f"'{name}' must be a non-empty array with {' or '.join(map(str, ndims))} dimensions, "
            f"got shape {value.shape}",
        )
    if not np.isfinite(value).all():
        raise _Refused(422, f"'{name}' holds NaN or inf values; send finite numbers")
    return value


class _Handlers:
    """The endpoints' work, run on the worker thread: validate against the limits, then call the box."""

    def __init__(self, black_box, limits: ServeLimits):
        self.box, self.limits = black_box, limits

    def context(self, data: bytes) -> bytes:
        text = _text(_json(data).get("text"), "'text'", self.limits)
        return pack({"p0": self.box.context_embeddings(text)})

    def images(self, data: bytes) -> dict:
        x = _array(unpack(data)[0], "pixel_values", (4,))
        _over(
            "the images in this upload",
            len(x),
            "max_images_per_upload",
            self.limits.max_images_per_upload,
            "upload fewer at a time",
        )
        return {"handle": self.box.upload_images(x)}

    def query(self, data: bytes) -> bytes:
        arrays, meta = unpack(data)
        contexts = _array(arrays, "contexts", (2, 3))
        names, lim = _names(meta.get("class_names"), "class_names", self.limits), self.limits
        p = 1 if contexts.ndim == 2 else len(contexts)
        _over("the prompts P in this query", p, "max_prompts", lim.max_prompts, "send fewer prompts per request")
        _over(
            f"P×K = {p}×{len(names)}, the text sequences of this query,",
            p * len(names),
            "max_prompt_classes",
            lim.max_prompt_classes,
            "send fewer prompts per request",
        )
        n, most = contexts.shape[-2], getattr(self.box, "max_context_tokens", None)
        if most is not None and n > most:
            raise _Refused(422, f"a context of {n} tokens is longer than a prompt can hold ({most})")
        return pack({"scores": self.box.query(contexts, meta.get("images"), names)})

    def query_texts(self, data: bytes) -> bytes:
        body = _json(data)
        texts = _names(body.get("texts"), "texts", self.limits)
        return pack({"scores": np.asarray(self.box.query_texts(texts, body.get("images")))})


def _guarded(http_error, fn, data):
    """Run `fn(data)`, mapping every failure to an HTTP error with a short message (no traceback,
    no path: those go to the server's log)."""
    try:
        return fn(data)
    except _Refused as e:
        raise http_error(e.status, str(e)) from None
    except QueryBudgetExceeded as e:
        raise http_error(429, str(e)) from None
    except UnknownImagesError as e:
        raise http_error(404, str(e)) from None
    except RecursionError:
        raise http_error(422, "the payload is nested too deeply") from None
    except (ValueError, TypeError) as e:
        raise http_error(422, str(e)[:500]) from None
    except MemoryError:
        logger.exception("the black box ran out of memory")
        raise http_error(503, "the black box ran out of memory on this request; send a smaller one") from None
    except Exception:  # noqa: BLE001 - anything else is the server's fault: logged here, not sent
        logger.exception("the black box failed on a request")
        raise http_error(500, "internal error in the black box; its owner's log has the details") from None


def create_app(
    black_box, *, token: str | None = None, max_request_bytes: int | None = None, limits: ServeLimits | None = None
):
    """A FastAPI app serving `black_box` (a `LocalBlackBox`) within `limits` (see `ServeLimits`;
    `max_request_bytes`, if given, overrides its field of that name)."""
    from fastapi import FastAPI, HTTPException, Request, Response

    limits = limits or ServeLimits()
    if max_request_bytes is not None:
        limits = dataclasses.replace(limits, max_request_bytes=max_request_bytes)
    if hasattr(black_box, "limit_cache"):  # the tighter of the box's own bounds and the server's
        black_box.limit_cache(
            min(black_box.max_cached_images, limits.max_cached_images),
            min(black_box.max_cached_uploads, limits.max_cached_uploads),
        )
    app = FastAPI(title="hf_clipadapt black box", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-clipadapt-black-box")
    app.state.limits = limits
    handlers, octet, queue = _Handlers(black_box, limits), "application/octet-stream", _Queue(limits.max_pending)

    async def work(request: Request, fn, most: int):
        _authorize(request, token, HTTPException)
        data = await _read_body(request, most, HTTPException)
        future = queue.submit(app.state.executor, _guarded, HTTPException, fn, data)
        if future is None:
            raise HTTPException(
                503,
                f"the black box is busy ({limits.max_pending} requests waiting, max_pending="
                f"{limits.max_pending}); retry later",
            )
        return await asyncio.wrap_future(future)

    @app.get("/info")
    async def info(request: Request):
        _authorize(request, token, HTTPException)
        return {
            **black_box.info(),
            "queries": black_box.queries,
            "budget": black_box.budget,
            "limits": limits.as_dict(),
        }

    @app.post("/context")
    async def context(request: Request):
        return Response(await work(request, handlers.context, limits.max_json_bytes), media_type=octet)

    @app.post("/images")
    async def images(request: Request):
        return await work(request, handlers.images, limits.max_request_bytes)

    @app.post("/query")
    async def query(request: Request):
        return Response(await work(request, handlers.query, limits.max_request_bytes), media_type=octet)

    @app.post("/query_texts")
    async def query_texts(request: Request):
        return Response(await work(request, handlers.query_texts, limits.max_json_bytes), media_type=octet)

    return app


class _Queue:
    """At most `most` jobs submitted and not yet finished; a job counts until it is done, even
    if its client went away (so disconnecting clients cannot pile up work)."""

    def __init__(self, most: int):
        self.most, self.count, self.lock = most, 0, threading.Lock()

    def submit(self, executor, fn, *args):
        with self.lock:
            if self.count >= self.most:
                return None
            self.count += 1
        future = executor.submit(fn, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future) -> None:
        with self.lock:
            self.count -= 1


async def _read_body(request, most: int, error) -> bytes:
    """The body, refused (413) once it is over `most` bytes, even without a Content-Length."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > most:
        raise error(413, f"request of {declared} bytes is over this server's limit of {most}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > most:
            raise error(413, f"request body is over this server's limit of {most} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _authorize(request, token: str | None, error) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """The binding rule: without a token, loopback only (with a warning); a token for anything else."""
    if token:
        return
    if not _is_loopback(host):
        raise ValueError(
            f"refusing to serve the black box on {host!r} without a token: anyone who can reach it "
            "could spend its budget. Pass token=... (clients send it as a bearer token), or bind "
            "127.0.0.1"
        )
    warnings.warn(
        f"serving the black box on {host} without a token: any process on this machine can query it "
        "and spend its budget; pass token=... to require one",
        UserWarning,
        stacklevel=3,
    )


class BlackBoxServer:
    """Serve a black box from a background thread (tests, notebooks, the example).

    `with BlackBoxServer(box, token=...) as server: server.url`; port 0 picks a free port.
    `limits` bounds every request (`ServeLimits`).
    """

    def __init__(
        self,
        black_box,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        max_request_bytes: int | None = None,
        limits: ServeLimits | None = None,
    ):
        import uvicorn

        check_bind(host, token)
        self.app = create_app(black_box, token=token, max_request_bytes=max_request_bytes, limits=limits)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BlackBoxServer":
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the black-box server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
        self.app.state.executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def serve_black_box(
    black_box,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    max_request_bytes: int | None = None,
    limits: ServeLimits | None = None,
) -> None:
    """Serve `black_box` in the foreground until interrupted (the binding rule of `check_bind`)."""
    import uvicorn

    check_bind(host, token)
    app = create_app(black_box, token=token, max_request_bytes=max_request_bytes, limits=limits)
    try:
        uvicorn.run(app, host=host, port=port)
    finally:
        app.state.executor.shutdown(wait=False, cancel_futures=True)
