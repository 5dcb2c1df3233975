"""A CLIP behind a query-only interface, for black-box adaptation (CraFT, ICML 2024).

Black-box methods (CraFT's derivative-free prompt search, BBT-style CMA-ES) may
send inputs to a model and read its scores, nothing else. `BlackBoxCLIP` enforces
that on a local model by convention (the backbone is a name-mangled private
attribute: a discipline for honest experiments, not a security boundary): it
returns detached NumPy scores, never builds an autograd graph, and counts queries (one query = one image
scored against the class prompts), raising `QueryBudgetExceeded` past `budget`.

Two kinds of prompt are accepted, as in the black-box literature:

* ``query_texts(pixel_values, texts)``: natural-language prompts, one per class;
* ``query_context(pixel_values, context, classnames)``: continuous prompt
  vectors (the soft-prompt context, `[n_ctx, W]` shared or `[K, n_ctx, W]` per
  class), the input of CraFT's prompt generator and of BBT.

Scores are ``logit_scale · cos(image, prompt)`` logits, or softmax probabilities with
``output="probs"`` (what a prediction API usually returns).
"""

from __future__ import annotations

import numpy as np
import torch


class QueryBudgetExceeded(RuntimeError):
    """Raised before a black box would be queried past its budget (`BlackBoxVLM`: prompt sets
    scored; `BlackBoxCLIP`: images scored); the refused call is not charged."""


class BlackBoxCLIP:
    """Query-only access to a CLIP backbone.

    Args:
        backbone: a `hf_clipadapt.clip.CLIPBackbone` (e.g. `load_testbed_clip()`).
        budget: the most images that may be scored in total (None: unlimited).
        output: "logits" or "probs".
    """

    def __init__(self, backbone, *, budget: int | None = None, output: str = "logits"):
        if output not in ("logits", "probs"):
            raise ValueError(f"output must be 'logits' or 'probs', got {output!r}")
        if budget is not None and budget < 0:
            raise ValueError(f"budget must be >= 0 or None, got {budget}")
        self.__backbone = backbone  # name-mangled: not part of the public surface
        self.__encoder = None
        self.budget = budget
        self.output = output
        self.queries = 0

    @property
    def text_width(self) -> int:
        """W, the width of a context vector for `query_context`."""
        return int(self.__backbone.config.text_config.hidden_size)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.queries

    def _charge(self, n: int) -> None:
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"scoring {n} more images would exceed the budget of {self.budget} "
                f"({self.queries} used); raise `budget` or query fewer images"
            )
        self.queries += n

    def _scores(self, pixel_values: torch.Tensor, text_features: torch.Tensor) -> np.ndarray:
        image_features = self.__backbone.encode_images(pixel_values)
        logits = self.__backbone.logit_scale * image_features @ text_features.t().to(image_features)
        if self.output == "probs":
            logits = logits.softmax(-1)
        return logits.float().cpu().numpy()

    @torch.no_grad()
    def query_texts(self, pixel_values: torch.Tensor, texts: list[str]) -> np.ndarray:
        """[N, 3, H, W] images × T text prompts -> [N, T] scores."""
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("query_texts needs a non-empty list of prompts, one per class")
        self._charge(len(pixel_values))
        return self._scores(pixel_values, self.__backbone.encode_texts(list(texts)))

    @torch.no_grad()
    def query_context(self, pixel_values: torch.Tensor, context, classnames: list[str]) -> np.ndarray:
        """[N, 3, H, W] images, a prompt context ([n_ctx, W] or [K, n_ctx, W], array or
        tensor) and K class names -> [N, K] scores for "context {classname}."."""
        from ..clip import SoftPromptTextEncoder

        context = torch.as_tensor(np.asarray(context), dtype=torch.float32)
        if context.ndim not in (2, 3) or context.shape[-1] != self.text_width:
            raise ValueError(
                f"context must be [n_ctx, {self.text_width}] or [K, n_ctx, {self.text_width}], got {tuple(context.shape)}"
            )
        if self.__encoder is None:
            self.__encoder = SoftPromptTextEncoder(self.__backbone.model, self.__backbone.tokenizer)
        self._charge(len(pixel_values))
        text_features = self.__encoder(context.to(self.__backbone.device), list(classnames))
        return self._scores(pixel_values, torch.nn.functional.normalize(text_features, dim=-1))

    def __repr__(self) -> str:
        return f"BlackBoxCLIP(queries={self.queries}, budget={self.budget}, output={self.output!r})"
