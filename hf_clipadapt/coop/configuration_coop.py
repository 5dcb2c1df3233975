"""Configuration of [`CoOpForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig


class CoOpConfig(CLIPAdaptedConfig):
    r"""Learnable prompt context for a frozen CLIP (Zhou et al., IJCV 2022).

    Args:
        n_ctx: number of context tokens M. None: the token count of `ctx_init` (4 for
            "a photo of a" with the CLIP tokenizer), or 4 for random initialisation;
            CoOp's other setting is 16 random tokens (`ctx_init=None, n_ctx=16`).
        ctx_init: phrase whose word embeddings initialise the context, or None for
            N(0, 0.02²) random initialisation.
        class_specific: one context per class (CoOp-CSC) instead of a shared one.
        suffix: text after the class name (".").
        views: augmented encodings of each training image that `fit` trains on (encoded
            once and cached, never recomputed per epoch).
    """

    model_type = "coop"

    def __init__(self, n_ctx: int | None = None, ctx_init: str | None = "a photo of a", class_specific: bool = False,
                 suffix: str = ".", views: int = 10,
                 **kwargs):  # fmt: skip
        if n_ctx is not None and n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        self.n_ctx, self.ctx_init, self.class_specific, self.suffix = n_ctx, ctx_init, bool(class_specific), suffix
        super().__init__(views=views, **kwargs)
