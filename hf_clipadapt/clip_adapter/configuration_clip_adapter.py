"""Configuration of [`CLIPAdapterForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig


class CLIPAdapterConfig(CLIPAdaptedConfig):
    r"""A residual bottleneck adapter on CLIP image features (Gao et al., IJCV 2024).

    Args:
        reduction: the bottleneck divides the width D by this (4: `clip_adapter.py` L97).
        ratio: the residual ratio ρ blending A(x) into x (0.2: `clip_adapter.py` L104).
        epochs: epochs of freshly augmented images to train for. The official code has no
            config of its own: it runs inside CoOp's Dassl trainer with CoOp's configs
            (README: "follow CoOp's command"), so None means CoOp's rule by shot count,
            with CoOp's warm-up and cosine; the preset "imagenet" sets 50.
        views: augmented encodings of each training image that `fit` trains on (encoded
            once and cached, never recomputed per epoch): random crops of area
            `view_scale` = (0.08, 1) and flips, as Dassl draws them. The official code
            draws fresh crops every epoch; `views=` the epoch count reproduces that
            sampling exactly (one pass, every image under E distinct crops).
    """

    model_type = "clip_adapter"
    PRESETS = {"imagenet": dict(epochs=50)}  # CoOp's ImageNet schedule, which the official code runs under

    def __init__(self, reduction: int = 4, ratio: float = 0.2, views: int = 10, epochs: int | None = None, **kwargs):
        if epochs is not None and int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1 (or None for CoOp's rule by shot count), got {epochs}")
        self.epochs = None if epochs is None else int(epochs)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio}")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        self.reduction, self.ratio = int(reduction), float(ratio)
        # Dassl's random_resized_crop keeps its default area (0.08, 1) in CoOp's configs
        # (dassl/config/defaults.py L40, configs/trainers/CoOp/*.yaml L13), plus random flips.
        kwargs.setdefault("view_scale", (0.08, 1.0))
        super().__init__(views=views, **kwargs)
