"""`RemoteBlackBox`: the user side of a black box served by `hf_clipadapt.craft.serve`, over httpx.

It counts queries and enforces its budget before sending, like every `BlackBoxVLM`
(the server keeps its own count too). A dropped or refused connection is retried
with exponential backoff; when the retries are spent it raises
`BlackBoxConnectionError`, saying what failed, and gives back the charge of the
query that got no answer (the collaborative loop then saves its state; see
`CollaborativeLoop.run`). A retried query may be counted twice by the server if
the first attempt reached it and only its answer was lost.
"""

from __future__ import annotations

import time

import numpy as np

from .blackbox import QueryBudgetExceeded
from .protocol import BlackBoxError, BlackBoxVLM
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
        retries / backoff: attempts after the first on a dropped connection, and the
            first wait in seconds (doubled after each attempt).
        timeout: seconds per request.
    """

    def __init__(self, url: str, *, token: str | None = None, budget: int | None = None, retries: int = 3,
                 backoff: float = 0.5, timeout: float = 120.0):  # fmt: skip
        import httpx

        super().__init__(budget=budget, name=url.rstrip("/"))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.name, headers=headers, timeout=timeout)
        self.retries, self.backoff = retries, backoff
        self._info: dict | None = None

    # ------------------------------------------------------------------ transport
    def _request(self, method: str, path: str, what: str, **kwargs):
        import httpx

        dropped = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError,
                   httpx.ConnectTimeout, httpx.PoolTimeout)  # fmt: skip
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, path, **kwargs)
                break
            except dropped as e:
                last = e
                if attempt < self.retries:
                    time.sleep(self.backoff * 2**attempt)
        else:
            raise BlackBoxConnectionError(
                f"could not reach the black box at {self.name} for {what} after {self.retries + 1} attempts "
                f"({type(last).__name__}: {last}); check that the server runs and the URL is right"
            ) from last
        _raise_for_status(response, what, self.name)
        return response

    @property
    def info(self) -> dict:
        if self._info is None:
            self._info = self._request("GET", "/info", "its description").json()
        return self._info

    @property
    def text_width(self) -> int:
        return int(self.info["text_width"])

    @property
    def crop_size(self) -> int:
        return int(self.info["crop_size"])

    # ------------------------------------------------------------------ protocol hooks
    def _context_embeddings(self, text: str) -> np.ndarray:
        arrays, _ = unpack(self._request("POST", "/context", f"the embedding of {text!r}", json={"text": text}).content)
        return arrays["p0"]

    def _upload(self, pixel_values: np.ndarray) -> str:
        response = self._request("POST", "/images", f"an upload of {len(pixel_values)} images",
                                 content=pack({"pixel_values": pixel_values}))  # fmt: skip
        return response.json()["handle"]

    def _answered(self, n: int, what: str, send):
        try:
            return send()
        except BlackBoxConnectionError:
            self.queries -= n  # no answer came back: the query is not spent on this side
            raise

    def _score_contexts(self, contexts: np.ndarray, images: str, class_names: list[str]) -> np.ndarray:
        what = f"{len(contexts)} queries (queries {self.queries - len(contexts) + 1}..{self.queries})"
        payload = pack({"contexts": contexts}, {"images": images, "class_names": class_names})
        response = self._answered(len(contexts), what, lambda: self._request("POST", "/query", what, content=payload))
        return unpack(response.content)[0]["scores"]

    def _score_texts(self, texts: list[str], images: str) -> np.ndarray:
        what = f"query {self.queries} (text prompts)"

        def send():
            return self._request("POST", "/query_texts", what, json={"texts": texts, "images": images})

        return unpack(self._answered(1, what, send).content)[0]["scores"]

    def close(self) -> None:
        self._client.close()


def _raise_for_status(response, what: str, url: str) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    status = response.status_code
    if status == 401:
        raise BlackBoxAuthError(f"the black box at {url} refused {what}: {detail}; pass the right token= "
                                "(or set HF_CLIPADAPT_BLACK_BOX_TOKEN)")  # fmt: skip
    if status == 413:
        raise ValueError(f"the black box at {url} refused {what} as too large: {detail}; send fewer images per upload")
    if status == 429:
        raise QueryBudgetExceeded(f"the black box at {url} refused {what}: {detail}")
    raise BlackBoxError(f"the black box at {url} failed on {what} (HTTP {status}): {detail}")
