"""Configuration of [`UEOForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig

OOD_SCORE_KINDS = ("max_softmax_cosine", "max_softmax", "energy")
OBJECTIVES = ("ueo", "information_maximization", "oracle")


class UEOConfig(CLIPAdaptedConfig):
    r"""UEO (Liang et al., "Realistic Unsupervised CLIP Fine-tuning with Universal Entropy
    Optimization", ICML 2024): a CoOp-style soft prompt plus the affine parameters of
    every LayerNorm in CLIP's vision tower, trained without labels.

    Args:
        n_ctx: context tokens (None: the token count of `ctx_init`, 4 for "a photo of a").
        ctx_init: phrase whose word embeddings initialise the context.
        suffix: text after the class name (".").
        ood_score: the OOD score `forward` returns, higher = more likely one of the known classes:
            "max_softmax_cosine" (default; the official code's: max softmax of the unscaled
            cosine similarities, tim-learn/UEO demo.py lines 291-303 and 321), "max_softmax" (of
            the scaled logits; another ranking) or "energy".
        objective / trade: provenance of the last `fit` ("ueo", "information_maximization"
            or "oracle"; the marginal-entropy weight λ), for the model card.
        views / view_scale / view_flip: the training augmentation (random resized crop of
            area `view_scale`, horizontal flip), as in the official code.
    """

    model_type = "ueo"

    def __init__(
        self,
        n_ctx: int | None = None,
        ctx_init: str = "a photo of a",
        suffix: str = ".",
        ood_score: str = "max_softmax_cosine",
        objective: str | None = None,
        trade: float | None = None,
        **kwargs,
    ):
        if n_ctx is not None and n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        if not ctx_init:
            raise ValueError("UEO initialises its context from a phrase (ctx_init, e.g. 'a photo of a'); got none")
        if ood_score not in OOD_SCORE_KINDS:
            raise ValueError(f"ood_score must be one of {OOD_SCORE_KINDS}, got {ood_score!r}")
        if objective is not None and objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.n_ctx, self.ctx_init, self.suffix, self.ood_score = n_ctx, ctx_init, suffix, ood_score
        self.objective, self.trade = objective, trade
        super().__init__(**kwargs)
