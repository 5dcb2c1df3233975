"""CLIP-Adapter (Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature
Adapters", IJCV 2024), as functions of tensors.

A bottleneck MLP A (D → D/r → D, ReLU after each layer, no biases) refines the
image feature and is blended back into it with the residual ratio ρ:

    x' = ρ·A(x) + (1 − ρ)·x,   logits = logit_scale·normalise(x')·Tᵀ

with T CLIP's zero-shot text classifier. ρ = 0.2 and r = 4 are the official code's
values (gaopengcuhk/CLIP-Adapter `clip_adapter.py` L97, L104).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def adapter_mlp(dim: int, reduction: int = 4) -> nn.Sequential:
    """D → D/r → D with ReLU after each layer and no biases (`clip_adapter.py` L55-67)."""
    if dim % reduction:
        raise ValueError(f"the embedding width {dim} must divide by the reduction {reduction}")
    return nn.Sequential(
        nn.Linear(dim, dim // reduction, bias=False),
        nn.ReLU(),
        nn.Linear(dim // reduction, dim, bias=False),
        nn.ReLU(),
    )


def blend(features: torch.Tensor, adapted: torch.Tensor, ratio: float) -> torch.Tensor:
    """ρ·A(x) + (1 − ρ)·x, normalised: the adapted image feature."""
    return F.normalize(ratio * adapted + (1.0 - ratio) * features, dim=-1)


def clip_adapter_logits(features, adapter: nn.Module, text_weights, ratio: float, logit_scale: float) -> torch.Tensor:
    """logit_scale·normalise(ρ·A(x) + (1 − ρ)·x)·Tᵀ for normalised image features x."""
    return logit_scale * blend(features, adapter(features), ratio) @ text_weights.T
