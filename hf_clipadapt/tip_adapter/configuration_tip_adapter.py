"""Configuration of [`TipAdapterForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig
from .functional import TIP_ALPHAS, TIP_BETAS


class TipAdapterConfig(CLIPAdaptedConfig):
    r"""A Tip-Adapter cache on a CLIP: logits = logit_scale·x·Tᵀ + α·exp(−β(1 − x·Fᵀ))·L.

    Args:
        alpha / beta: the cache weight and sharpness, chosen by `fit` on the few-shot
            validation split from `alphas` × `betas`.
        cache_size: N, the number of cache entries (one per training image; set by `fit`).
        train_keys: Tip-Adapter-F: the keys F are a trained parameter (False: the
            training-free Tip-Adapter, keys are fixed buffers).
        views: augmented encodings averaged into each key (10 in the paper).
        param_scores: validation accuracy per "α,β", recorded by `fit`.
    """

    model_type = "tip_adapter"

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        alphas: list[float] | None = None,
        betas: list[float] | None = None,
        cache_size: int = 0,
        train_keys: bool = False,
        views: int = 10,
        param_scores: dict | None = None,
        **kwargs,
    ):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.alphas = [float(a) for a in (TIP_ALPHAS if alphas is None else alphas)]
        self.betas = [float(b) for b in (TIP_BETAS if betas is None else betas)]
        self.cache_size, self.train_keys = int(cache_size), bool(train_keys)
        self.param_scores = {str(k): float(v) for k, v in (param_scores or {}).items()}
        super().__init__(views=views, **kwargs)
