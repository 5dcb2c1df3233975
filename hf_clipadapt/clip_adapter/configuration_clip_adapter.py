"""Configuration of [`CLIPAdapterForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig


class CLIPAdapterConfig(CLIPAdaptedConfig):
    r"""A residual bottleneck adapter on CLIP image features (Gao et al., IJCV 2024).

    Args:
        reduction: the bottleneck divides the width D by this (4 in the paper).
        ratio: the residual ratio ρ blending A(x) into x (0.2 in the paper for natural images).
        views: augmented encodings of each training image that `fit` trains on (encoded
            once and cached, never recomputed per epoch).
    """

    model_type = "clip_adapter"

    def __init__(self, reduction: int = 4, ratio: float = 0.2, views: int = 10, **kwargs):  # fmt: skip
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio}")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        self.reduction, self.ratio = int(reduction), float(ratio)
        super().__init__(views=views, **kwargs)
