"""Tip-Adapter's cache model (Zhang et al., "Tip-Adapter: Training-free Adaption of
CLIP for Few-shot Classification", ECCV 2022), as functions of tensors.

The cache holds the few-shot training features F [N, D] as keys and their one-hot
labels L [N, K] as values. For an L2-normalised image feature x,

    logits = logit_scale·x·Tᵀ + α·exp(−β·(1 − x·Fᵀ))·L

where T [K, D] is CLIP's zero-shot text classifier. α weighs the cache against
zero-shot CLIP and β sharpens the affinities; both are chosen by Tip-Adapter's grid
search (`tip_search_grid`), here on the few-shot validation shots (the official code
uses the full validation split). Tip-Adapter-F makes F learnable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..metrics import accuracy


def tip_search_grid(search_scale=(7.0, 3.0), search_step=(200, 20)) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(βs, αs) of Tip-Adapter's search: search_step[j] values 0.1 + i·(search_scale[j] − 0.1)/search_step[j],
    i = 0 … search_step[j] − 1, for β (j = 0) and α (j = 1); the upper bound itself is never
    tried (gaopengcuhk/Tip-Adapter `utils.py` L103-104; the bounds are per dataset in
    `configs/*.yaml`, e.g. [7, 3] for ImageNet, the default here)."""
    grids = []
    for scale, steps in zip(search_scale, search_step):
        if int(steps) < 1 or scale < 0.1:
            raise ValueError(f"search_step must be >= 1 and search_scale >= 0.1; got {search_step}, {search_scale}")
        grids.append(tuple(i * (float(scale) - 0.1) / int(steps) + 0.1 for i in range(int(steps))))
    return grids[0], grids[1]


TIP_BETAS, TIP_ALPHAS = tip_search_grid()


def cache_logits(
    features: torch.Tensor, cache_keys: torch.Tensor, cache_labels: torch.Tensor, num_classes: int, beta: float
) -> torch.Tensor:
    """exp(−β(1 − x·Fᵀ))·L: [B, K] votes of the cache entries, weighted by affinity."""
    affinity = features @ cache_keys.T
    values = F.one_hot(cache_labels, num_classes).to(affinity.dtype)
    return torch.exp(-beta * (1.0 - affinity)) @ values


def tip_adapter_logits(
    features: torch.Tensor,
    cache_keys: torch.Tensor,
    cache_labels: torch.Tensor,
    num_classes: int,
    beta: float,
    alpha: float = 1.0,
    zero_shot_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Tip-Adapter logits: α·cache, plus the zero-shot logits when given."""
    cache = alpha * cache_logits(features, cache_keys, cache_labels, num_classes, beta)
    return cache if zero_shot_logits is None else zero_shot_logits + cache


def select_tip_params(
    val_features,
    val_labels,
    cache_keys,
    cache_labels,
    num_classes,
    zero_shot_logits=None,
    betas: Sequence[float] = TIP_BETAS,
    alphas: Sequence[float] = TIP_ALPHAS,
) -> tuple[float, float]:
    """(α, β) with the best validation accuracy, Tip-Adapter's grid search.

    With `zero_shot_logits` (the validation images' zero-shot logits) the full
    Tip-Adapter is scored; without them α only scales the cache logits, which
    cannot change a prediction, so α = 1. Ties go to the smaller β, then smaller α.
    """
    return select_tip_params_with_scores(
        val_features, val_labels, cache_keys, cache_labels, num_classes, zero_shot_logits, betas, alphas
    )[0]


def select_tip_params_with_scores(
    val_features,
    val_labels,
    cache_keys,
    cache_labels,
    num_classes,
    zero_shot_logits=None,
    betas=TIP_BETAS,
    alphas=TIP_ALPHAS,
):
    """`select_tip_params` plus the validation accuracy of every (α, β) tried."""
    alphas = sorted(alphas) if zero_shot_logits is not None else [1.0]
    best, best_acc, scores = (1.0, float(sorted(betas)[0])), -1.0, {}
    for b in sorted(betas):
        cache = cache_logits(val_features, cache_keys, cache_labels, num_classes, b)
        for a in alphas:
            logits = a * cache if zero_shot_logits is None else zero_shot_logits + a * cache
            acc = accuracy(logits, val_labels)
            scores[(float(a), float(b))] = acc
            if acc > best_acc:  # strict: keeps the first (smallest) on ties
                best, best_acc = (float(a), float(b)), acc
    return best, scores


def select_tip_beta(
    val_features, val_labels, cache_keys, cache_labels, num_classes, betas: Sequence[float] = TIP_BETAS
) -> float:
    """β with the best validation accuracy (the smaller one on ties), cache logits alone."""
    return select_tip_params(val_features, val_labels, cache_keys, cache_labels, num_classes, betas=betas)[1]


def mean_view_keys(features: torch.Tensor, views: int) -> torch.Tensor:
    """Cache keys from `views` augmented encodings of N images, stacked view-major
    ([views·N, D], as `extract_features` returns them): the normalised mean per image."""
    if features.shape[0] % views:
        raise ValueError(f"{features.shape[0]} feature rows are not a whole number of {views} views")
    return F.normalize(features.view(views, -1, features.shape[-1]).mean(0), dim=-1)
