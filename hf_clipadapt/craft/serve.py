"""A small HTTP server for a local CLIP behind the black-box protocol (CraFT's owner side).

FastAPI + uvicorn (`pip install hf_clipadapt[serve]`). It binds 127.0.0.1 unless told
otherwise, takes an optional bearer token, refuses requests over `max_request_bytes`
(while reading, so a body without Content-Length is cut off too), and speaks only
JSON and safetensors bytes (`hf_clipadapt.craft.wire`): nothing is unpickled.

Endpoints: GET /info; POST /context (JSON text -> p0 as safetensors); POST /images
(safetensors pixel_values -> JSON handle); POST /query (safetensors contexts + metadata
images/class_names -> safetensors scores); POST /query_texts (JSON -> safetensors).
The owner's `LocalBlackBox` keeps its own query count and budget (HTTP 429 past it).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' `Request` annotations at runtime.

import hmac
import socket
import threading
import time

import numpy as np

from .blackbox import QueryBudgetExceeded
from .wire import pack, unpack

DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20


def create_app(black_box, *, token: str | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
    """A FastAPI app serving `black_box` (a `LocalBlackBox`)."""
    from fastapi import FastAPI, HTTPException, Request, Response

    app = FastAPI(title="hf_clipadapt black box", docs_url=None, redoc_url=None, openapi_url=None)
    octet = "application/octet-stream"

    async def body(request: Request) -> bytes:
        _authorize(request, token, HTTPException)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            raise HTTPException(413, f"request of {declared} bytes is over this server's limit of {max_request_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise HTTPException(413, f"request body is over this server's limit of {max_request_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def guarded(fn, *args):
        try:
            return fn(*args)
        except QueryBudgetExceeded as e:
            raise HTTPException(429, str(e)) from e
        except KeyError as e:
            raise HTTPException(404, str(e.args[0] if e.args else e)) from e
        except (ValueError, TypeError) as e:
            raise HTTPException(422, str(e)) from e

    @app.get("/info")
    async def info(request: Request):
        _authorize(request, token, HTTPException)
        return {**black_box.info(), "queries": black_box.queries, "budget": black_box.budget}

    @app.post("/context")
    async def context(request: Request):
        text = _json(await body(request), HTTPException).get("text")
        if not isinstance(text, str) or not text:
            raise HTTPException(422, "the body needs a non-empty 'text' string")
        return Response(pack({"p0": guarded(black_box.context_embeddings, text)}), media_type=octet)

    @app.post("/images")
    async def images(request: Request):
        arrays, _ = guarded(unpack, await body(request))
        if "pixel_values" not in arrays:
            raise HTTPException(422, "the payload needs a 'pixel_values' array")
        return {"handle": guarded(black_box.upload_images, arrays["pixel_values"])}

    @app.post("/query")
    async def query(request: Request):
        arrays, meta = guarded(unpack, await body(request))
        if "contexts" not in arrays:
            raise HTTPException(422, "the payload needs a 'contexts' array")
        scores = guarded(black_box.query, arrays["contexts"], meta.get("images"), meta.get("class_names"))
        return Response(pack({"scores": scores}), media_type=octet)

    @app.post("/query_texts")
    async def query_texts(request: Request):
        data = _json(await body(request), HTTPException)
        scores = guarded(black_box.query_texts, data.get("texts"), data.get("images"))
        return Response(pack({"scores": np.asarray(scores)}), media_type=octet)

    return app


def _authorize(request, token: str | None, error) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def _json(data: bytes, error) -> dict:
    import json

    try:
        value = json.loads(data)
    except ValueError as e:
        raise error(422, f"the body is not JSON: {e}") from e
    if not isinstance(value, dict):
        raise error(422, "the body must be a JSON object")
    return value


class BlackBoxServer:
    """Serve a black box from a background thread (tests, notebooks, the example).

    `with BlackBoxServer(box, token=...) as server: server.url`; port 0 picks a free port.
    """

    def __init__(self, black_box, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):  # fmt: skip
        import uvicorn

        self.app = create_app(black_box, token=token, max_request_bytes=max_request_bytes)
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

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def serve_black_box(black_box, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:  # fmt: skip
    """Serve `black_box` in the foreground until interrupted."""
    import uvicorn

    uvicorn.run(create_app(black_box, token=token, max_request_bytes=max_request_bytes), host=host, port=port)
