"""`RemoteBlackBox`: the user side of a black box served by `hf_clipadapt.craft.serve`, over httpx.

It counts queries and enforces its budget before sending, like every `BlackBoxVLM`
(the server keeps its own count too). A dropped or refused connection, a timeout
and a busy server (HTTP 503) are retried a bounded number of times with exponential
backoff; when the retries are spent it raises `BlackBoxConnectionError`, saying what
failed, and gives back the charge of the queries that got no answer (the
collaborative loop then saves its state; see `CollaborativeLoop.run`). A retried
query may be counted twice by the server if the first attempt reached it and only
its answer was lost. An answer that cannot be read (not safetensors, not JSON, a
missing field) raises `BlackBoxError`; an image handle the server no longer knows
(evicted, or a restart) raises `UnknownImagesError`. A query larger than the
server's published limits (/info "limits") is sent in several requests.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from .protocol import BlackBoxError, BlackBoxVLM, QueryBudgetExceeded, UnknownImagesError
from .wire import pack, unpack


class BlackBoxConnectionError(ConnectionError):
    """The black box could not be reached (after the retries)."""


class BlackBoxAuthError(PermissionError):
    """The server refused the bearer token (or its absence)."""


class RemoteBlackBox(BlackBoxVLM):
    """A black box at `url` (e.g. "http://127.0.0.1:8000").

    Args:
        url: the server's address.
        token: its bearer token, if it has one.
        budget: the most queries this client may spend (None: unlimited here).
        retries / backoff: attempts after the first on a dropped connection, a timeout
            or a busy server, and the first wait in seconds (doubled after each attempt).
        timeout: seconds per request (a read that takes longer is retried, then raised
            as `BlackBoxConnectionError`).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        budget: int | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 120.0,
    ):
        import httpx

        super().__init__(budget=budget, name=url.rstrip("/"))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.name, headers=headers, timeout=timeout)
        self.retries, self.backoff = retries, backoff
        self._info: dict | None = None

    # ------------------------------------------------------------------ transport
    def _request(self, method: str, path: str, what: str, **kwargs):
        import httpx

        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as e:  # dropped, refused, timed out (connect, read, write, pool)
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if response.status_code != 503:
                    break
                last = f"HTTP 503: {_detail(response)}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        else:
            raise BlackBoxConnectionError(
                f"could not reach the black box at {self.name} for {what} after {self.retries + 1} attempts "
                f"({last}); check that the server runs and the URL is right"
            )
        _raise_for_status(response, what, self.name)
        return response

    def _read(self, response, what: str, key: str, as_json: bool = False):
        """`key` of a JSON or safetensors answer; anything unreadable is the black box's `BlackBoxError`."""
        try:
            body = response.json() if as_json else unpack(response.content)[0]
            return body[key]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BlackBoxError(
                f"the black box at {self.name} answered {what} with something unreadable (expected "
                f"{'JSON' if as_json else 'safetensors'} with {key!r}: {type(e).__name__}); is the "
                "URL a hf_clipadapt black box?"
            ) from e

    @property
    def info(self) -> dict:
        if self._info is None:
            response = self._request("GET", "/info", "its description")
            for key in ("text_width", "crop_size"):
                self._read(response, "its description", key, as_json=True)
            self._info = response.json()
        return self._info

    def _prompts_per_request(self, num_classes: int) -> int:
        """How many prompts one /query may carry under the server's published limits."""
        limits = self.info.get("limits") if isinstance(self.info.get("limits"), dict) else {}
        most = limits.get("max_prompts"), limits.get("max_prompt_classes")
        per = [
            m for m in (most[0], most[1] // num_classes if isinstance(most[1], int) else None) if isinstance(m, int)
        ]
        return max(1, min(per)) if per else 2**31

    @property
    def text_width(self) -> int:
        return int(self.info["text_width"])

    @property
    def crop_size(self) -> int:
        return int(self.info["crop_size"])

    # ------------------------------------------------------------------ protocol hooks
    def _context_embeddings(self, text: str) -> np.ndarray:
        what = f"the embedding of {text!r}"
        return self._read(self._request("POST", "/context", what, json={"text": text}), what, "p0")

    def _upload(self, pixel_values: np.ndarray) -> str:
        what = f"an upload of {len(pixel_values)} images"
        response = self._request("POST", "/images", what, content=pack({"pixel_values": pixel_values}))
        handle = self._read(response, what, "handle", as_json=True)
        if not isinstance(handle, str) or not handle:
            raise BlackBoxError(f"the black box at {self.name} answered {what} without an image handle")
        return handle

    def _answered(self, n: int, send):
        try:
            return send()
        except (BlackBoxConnectionError, UnknownImagesError):
            self.queries -= n  # no answer came back: these queries are not spent on this side
            raise

    def _score_contexts(self, contexts: np.ndarray, images: str, class_names: list[str]) -> np.ndarray:
        first = self.queries - len(contexts)  # already charged for all of them
        step, parts = self._prompts_per_request(len(class_names)), []
        for start in range(0, len(contexts), step):
            chunk = contexts[start : start + step]
            what = f"{len(chunk)} queries (queries {first + start + 1}..{first + start + len(chunk)})"
            payload = pack({"contexts": chunk}, {"images": images, "class_names": class_names})
            send = functools.partial(self._request, "POST", "/query", what, content=payload)
            response = self._answered(len(contexts) - start, send)  # refunds this chunk and the ones after it
            parts.append(self._read(response, what, "scores"))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _score_texts(self, texts: list[str], images: str) -> np.ndarray:
        what = f"query {self.queries} (text prompts)"

        def send():
            return self._request("POST", "/query_texts", what, json={"texts": texts, "images": images})

        return self._read(self._answered(1, send), what, "scores")

    def close(self) -> None:
        self._client.close()


def _detail(response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return str(detail)[:500]


def _raise_for_status(response, what: str, url: str) -> None:
    if response.status_code < 400:
        return
    detail, status = _detail(response), response.status_code
    if status == 401:
        raise BlackBoxAuthError(
            f"the black box at {url} refused {what}: {detail}; pass the right token= "
            "(or set HF_CLIPADAPT_BLACK_BOX_TOKEN)"
        )
    if status == 413:
        raise ValueError(f"the black box at {url} refused {what} as too large: {detail}")
    if status == 404 and "image handle" in detail:
        raise UnknownImagesError(f"the black box at {url} refused {what}: {detail}")
    if status == 429:
        raise QueryBudgetExceeded(f"the black box at {url} refused {what}: {detail}")
    raise BlackBoxError(f"the black box at {url} failed on {what} (HTTP {status}): {detail}")
