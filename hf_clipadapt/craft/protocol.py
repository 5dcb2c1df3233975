"""The black-box protocol CraFT (Wang et al., "Connecting the Dots: Collaborative
Fine-tuning for Black-Box Vision-Language Models", ICML 2024) is built on.

The model's owner exposes one thing: prompts and images in, per-class scores out.
`BlackBoxVLM` is that interface, user side. Its rules:

* One query = one prompt set (K class prompts) scored against a set of images, as
  in the paper, where a budget of 8,000 queries is 200 CMA-ES generations of 40.
* Every query is counted, and `QueryBudgetExceeded` is raised *before* a call that
  would overrun the budget: a refused call sends nothing and costs nothing. A query
  is charged only once it is valid (shapes, finite numbers, known image handle);
  an owner-side box (`_refund_on_failure`) gives the charge back if scoring fails.
* Images are uploaded once (`upload_images` returns a handle) and the owner keeps
  their features; uploading is not a query.
* Everything that comes back is a NumPy array (no tensor, no gradient, no
  parameter), and it is checked: a black box that answers with the wrong number of
  classes or with NaN/inf scores raises `BlackBoxError`, naming the query.

Subclasses (`LocalBlackBox`, `RemoteBlackBox`) implement `_score_contexts`,
`_score_texts`, `_upload` and `_context_embeddings`.
"""

from __future__ import annotations

import numpy as np


class QueryBudgetExceeded(RuntimeError):
    """Raised before a black box would be queried past its budget (prompt sets scored);
    the refused call is not charged."""


class BlackBoxError(RuntimeError):
    """The black box answered something unusable (wrong shape, non-finite scores)."""


class UnknownImagesError(BlackBoxError, KeyError):
    """The black box does not know the image handle (never uploaded, evicted from its
    cache, or lost in a restart): upload the images again for a new handle."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BlackBoxVLM:
    """Query-only access to a vision-language classifier, with an exact query budget.

    Args:
        budget: the most queries (prompt sets scored) allowed in total; None: unlimited.
        name: where the black box lives (a CLIP name or path, or a URL), recorded by
            `CraFTForImageClassification` so a saved model can reconnect.
    """

    def __init__(self, budget: int | None = None, name: str | None = None):
        if budget is not None and (not isinstance(budget, int) or budget < 0):
            raise ValueError(f"budget must be a non-negative int or None, got {budget!r}")
        self.budget = budget
        self.name = name
        self.queries = 0

    # An owner-side box refunds a query whose scoring raised (nothing came back); a client
    # refunds only what it knows got no answer (see `RemoteBlackBox`).
    _refund_on_failure = False

    # ------------------------------------------------------------------ budget
    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.queries

    def check_budget(self, n: int) -> None:
        """Raise `QueryBudgetExceeded` if `n` more queries would overrun the budget."""
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"{n} more queries would exceed the budget of {self.budget} ({self.queries} used, "
                f"{self.remaining} left); raise the budget or ask for fewer queries"
            )

    def _charge(self, n: int) -> int:
        self.check_budget(n)
        first = self.queries
        self.queries += n
        return first

    # ------------------------------------------------------------------ public API
    @property
    def text_width(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def context_embeddings(self, text: str) -> np.ndarray:
        """[n, W] token embeddings of `text` (e.g. "a photo of a", the prompt's p0); not a query."""
        return np.asarray(self._context_embeddings(text), dtype=np.float32)

    def upload_images(self, pixel_values) -> str:
        """Send [N, 3, H, W] pixel values once; returns the handle queries refer to. Not a query."""
        pixel_values = np.ascontiguousarray(np.asarray(_numpy(pixel_values), dtype=np.float32))
        if pixel_values.ndim != 4 or pixel_values.shape[0] == 0:
            raise ValueError(f"pixel_values must be a non-empty [N, 3, H, W] batch, got {pixel_values.shape}")
        return self._upload(pixel_values)

    def query(self, contexts, images: str, class_names: list[str]) -> np.ndarray:
        """Score P prompt contexts ([P, n, W], or one [n, W]) for the prompts
        "[context] {class}." on the uploaded `images`: P queries, [P, N, K] scores."""
        contexts = np.asarray(_numpy(contexts), dtype=np.float32)
        single = contexts.ndim == 2
        contexts = contexts[None] if single else contexts
        if contexts.ndim != 3 or contexts.shape[-1] != self.text_width or contexts.shape[0] == 0:
            raise ValueError(
                f"contexts must be [n, {self.text_width}] or [P, n, {self.text_width}], got {contexts.shape}"
            )
        if not np.isfinite(contexts).all():
            raise ValueError("contexts hold NaN or inf values; send finite prompt vectors")
        class_names = _check_class_names(class_names)
        self._check_images(images)
        first = self._charge(len(contexts))
        raw = self._charged(len(contexts), lambda: self._score_contexts(contexts, images, class_names))
        scores = self._validated(raw, first, len(contexts), len(class_names))
        return scores[0] if single else scores

    def query_texts(self, texts: list[str], images: str) -> np.ndarray:
        """Score one prompt set given as K strings (one per class): one query, [N, K] scores."""
        texts = _check_class_names(texts, what="texts")
        self._check_images(images)
        first = self._charge(1)
        raw = self._charged(1, lambda: self._score_texts(texts, images))
        return self._validated(np.asarray(raw)[None], first, 1, len(texts))[0]

    def _charged(self, n: int, score):
        """Run `score()` for `n` charged queries; an owner-side box refunds them if it raises."""
        try:
            return score()
        except BaseException:
            if self._refund_on_failure:
                self.queries -= n
            raise

    def _check_images(self, images) -> None:
        """Refuse an unknown image handle before anything is charged (a hook; the owner's
        box knows its handles, a client learns it from the answer)."""
        if not isinstance(images, str) or not images:
            raise ValueError(f"images must be the handle that upload_images returned, got {images!r}")

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _validated(scores, first: int, n_queries: int, num_classes: int) -> np.ndarray:
        scores = np.asarray(scores)
        if scores.ndim != 3 or scores.shape[0] != n_queries or scores.shape[2] != num_classes:
            raise BlackBoxError(
                f"queries {first + 1}..{first + n_queries}: the black box returned scores of shape {scores.shape}, "
                f"expected [{n_queries}, N, {num_classes}] (one score per class); is it serving the same classes?"
            )
        bad = ~np.isfinite(scores).all(axis=(1, 2))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BlackBoxError(
                f"query {first + i + 1} (prompt {i} of this call): the black box returned NaN or inf "
                "scores; check the prompt (its norm) and the black box"
            )
        return scores.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ subclass hooks
    def _context_embeddings(self, text: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def _upload(self, pixel_values: np.ndarray) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_contexts(self, contexts: np.ndarray, images: str, class_names: list[str]):  # pragma: no cover
        raise NotImplementedError

    def _score_texts(self, texts: list[str], images: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, queries={self.queries}, budget={self.budget})"


def _numpy(x):
    """A NumPy view of an array or tensor, detached (a tensor that requires grad never crosses)."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x


def _check_class_names(names, what: str = "class_names") -> list[str]:
    if isinstance(names, str) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be a non-empty list of non-empty strings, one per class; got {names!r}")
    return list(names)
