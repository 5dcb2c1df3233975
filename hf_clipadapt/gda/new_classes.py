"""GDA's heads for classes without images (base-to-new), and the choice of their α.

The official base-to-new script (mrflogs/ICLR24, main_base2new.py, lines 85-111) builds a
new class's Gaussian from the k base features nearest to its text embedding plus copies of
that embedding (`new_class_classifier`, ``head="official"``). `select_new_class_alpha`
chooses α on base classes alone (held-out folds of base classes play the new ones), never
reading a new-class image or label. Plain tensors in, tensors out, like `gda.functional`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..configuration_utils import DEFAULT_SEED
from .functional import (
    ALPHAS,
    NEW_CLASS_HEADS,
    GDAStatistics,
    _check_features,
    _check_labels,
    _check_nonempty_classes,
    _classifier_from_moments,
    _classifier_from_precision,
    gda_logits,
)

__all__ = ["new_class_classifier", "pseudo_new_splits", "select_new_class_alpha"]


def _official_new_heads(x: torch.Tensor, text: torch.Tensor, k: int, text_copies: int):
    """The new-class heads of mrflogs/ICLR24, main_base2new.py, lines 85-111.

    For new class j with text embedding t_j, V_j = the k base features with the
    largest x·t_j (line 88). Mean (lines 86-92): the average of V_j and
    `text_copies` copies of t_j, (Σ V_j + c·t_j) / (k + c). Precision (lines
    94-107): for each class, D·(S_j + tr(S_j)/(k − 1)·I)⁻¹ with S_j = Σ_{v∈V_j}
    (v − t_j)(v − t_j)ᵀ the scatter about the text embedding (their
    (k − 1)·cov + tr(cov)·I with cov = S_j/(k − 1); the official code writes the
    dimension as the literal 512 of ViT-B/16), averaged over the new classes.
    Weight and bias follow with a uniform prior over the new classes (lines 109-111).
    """
    dim = x.shape[1]
    nearest = (text @ x.T).topk(k, dim=1).indices  # [K_new, k]
    means = (x[nearest].sum(dim=1) + text_copies * text) / (k + text_copies)
    precision = torch.zeros(dim, dim, dtype=x.dtype, device=x.device)
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    for j in range(text.shape[0]):
        dev = x[nearest[j]] - text[j]
        scatter = dev.T @ dev
        shrunk = scatter + torch.diagonal(scatter).sum() / (k - 1) * eye
        precision += dim * torch.cholesky_inverse(torch.linalg.cholesky(shrunk))
    return _classifier_from_precision(means, precision / text.shape[0])


def new_class_classifier(
    base_features: torch.Tensor,
    base_labels: torch.Tensor | None,
    new_text_weights: torch.Tensor,
    k: int = 64,
    *,
    head: str = "official",
    text_copies: int = 16,
    num_base_classes: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GDA classifier for classes that have only a text embedding (base-to-new).

    Returns (weight [K_new, D], bias [K_new]) with a uniform prior over the new
    classes; the ensemble with the text classifier reuses the base α in the
    official code. Pass L2-normalised features and text embeddings, as the
    official code does: similarities are plain dot products.

    * ``head="official"`` (default; mrflogs/ICLR24, main_base2new.py, lines 85-111):
      each new class's mean averages its `k` nearest base features and
      `text_copies` (16) copies of its text embedding; the precision is the
      Kubokawa–Srivastava estimate from each class's neighbours about its text
      embedding, averaged over the new classes (`_official_new_heads`).
      `base_labels` are not used. The official code takes the neighbours among
      all augmented views of the base shots (lines 42-53): pass those features.
    * ``head="knn_mean"``: this library's earlier head, kept to reproduce its
      results: the mean of the `k` nearest base features (cosine) and the base
      classes' KS precision from `base_labels`. It is not the official head.
    """
    if head not in NEW_CLASS_HEADS:
        raise ValueError(f"head must be one of {NEW_CLASS_HEADS}, got {head!r}")
    _check_features(base_features, "base_features")
    _check_features(new_text_weights, "new_text_weights")
    if new_text_weights.shape[1] != base_features.shape[1]:
        raise ValueError(
            f"text embeddings have dim {new_text_weights.shape[1]}, base features {base_features.shape[1]}"
        )
    min_k = 2 if head == "official" else 1  # the official scatter about the text divides by k − 1
    if not isinstance(k, int) or k < min_k:
        raise ValueError(f"k must be an int >= {min_k} for head={head!r}, got {k!r}")
    if k > base_features.shape[0]:
        raise ValueError(f"k={k} exceeds the {base_features.shape[0]} base features available")
    x = base_features.to(dtype)
    if head == "official":
        if not isinstance(text_copies, int) or text_copies < 0:
            raise ValueError(f"text_copies must be an int >= 0, got {text_copies!r}")
        weight, bias = _official_new_heads(x, new_text_weights.to(dtype), k, text_copies)
        return weight.to(base_features.dtype), bias.to(base_features.dtype)
    if base_labels is None:
        raise ValueError('head="knn_mean" estimates the base classes\' covariance: pass base_labels')
    num_base = int(base_labels.max()) + 1 if num_base_classes is None else num_base_classes
    stats = GDAStatistics(num_base, base_features.shape[1], dtype=dtype, device=base_features.device)
    stats.update(base_features, base_labels)
    t = torch.nn.functional.normalize(new_text_weights.to(dtype), dim=1)
    sims = t @ torch.nn.functional.normalize(x, dim=1).T  # [K_new, N]
    new_means = x[sims.topk(k, dim=1).indices].mean(dim=1)
    weight, bias = _classifier_from_moments(new_means, stats.scatter(), stats.num_samples, stats.total_energy)
    return weight.to(base_features.dtype), bias.to(base_features.dtype)


def pseudo_new_splits(num_classes: int, num_folds: int = 4, *, seed: int = DEFAULT_SEED) -> list[torch.Tensor]:
    """Disjoint groups of base classes to hold out as pseudo-new classes, one group per fold.

    A seeded permutation of the `num_classes` base classes cut into `num_folds`
    near-equal groups, so every base class is pseudo-new exactly once. Each group
    needs at least 2 classes (accuracy among one class says nothing) and must leave
    at least one class behind as pseudo-base, so the folds are capped at
    ⌊num_classes / 2⌋; with 3 classes the single fold holds out 2 of them.
    Returns sorted class-index tensors.
    """
    if not isinstance(num_classes, int) or num_classes < 3:
        raise ValueError(
            f"pseudo-new splits need at least 3 base classes (2 held out, 1 left to build from), got {num_classes!r}"
        )
    if not isinstance(num_folds, int) or num_folds < 1:
        raise ValueError(f"num_folds must be a positive int, got {num_folds!r}")
    folds = min(num_folds, num_classes // 2)
    order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))
    if folds == 1:  # a single group must leave a pseudo-base class behind
        return [order[: num_classes - 1].sort().values]
    return [group.sort().values for group in order.tensor_split(folds)]


def select_new_class_alpha(
    base_features: torch.Tensor,
    base_labels: torch.Tensor,
    base_text_weights: torch.Tensor,
    *,
    k: int = 64,
    alphas: Sequence[float] = ALPHAS,
    num_folds: int = 4,
    seed: int = DEFAULT_SEED,
    logit_scale: float = 100.0,
    head: str = "official",
    text_copies: int = 16,
) -> tuple[float, dict[float, float]]:
    """α for new-class heads (base-to-new) chosen on base classes only: (α, {α: pseudo-new accuracy %}).

    The official code (mrflogs/ICLR24, main_base2new.py, line 113) reuses the base α
    for the new classes, whose heads come from k nearest base features and the text
    embedding instead of their own images; nothing says the same weight suits them.
    This rule is this library's addition, not part of the official code. This rule simulates base-to-new inside the
    labelled base data: for each fold of `pseudo_new_splits`, the held-out classes
    get heads exactly as new classes do (`new_class_classifier` with the same
    `head`, `k` and `text_copies`, on the remaining classes' features and the
    held-out classes' text embeddings), and their own
    features are classified among themselves by the ensemble
    logit_scale·x·Tᵀ + α·(x·Wᵀ + b). α maximises the accuracy pooled over folds;
    ties keep the smaller α (closer to zero-shot). The base heads keep their own α,
    so for the harmonic mean of base and new accuracy on the pseudo split this is
    also the H-maximising α. No new-class data enters.

    Args:
        base_features: (N, D) L2-normalised base-class training features.
        base_labels: (N,) base class ids in [0, C).
        base_text_weights: (C, D) the base classes' text embeddings.
        k: nearest base features per new-class head (capped at the pseudo-base count).
        alphas: candidate α values; ties keep the smaller.
        num_folds: groups of base classes held out in turn (at most C // 2).
        seed: seeds the split of base classes into folds.
        logit_scale: CLIP's logit scale for the zero-shot term.
        head: "official" or "knn_mean", as in `new_class_classifier`.
        text_copies: copies of the text embedding in the official head's mean.
    """
    if len(alphas) == 0:
        raise ValueError("alphas is empty")
    _check_features(base_features, "base_features")
    num_classes = base_text_weights.shape[0]
    labels = _check_labels(base_labels, base_features.shape[0], num_classes).to(base_features.device)
    _check_nonempty_classes(torch.bincount(labels, minlength=num_classes))
    grid = sorted(float(a) for a in alphas)
    correct = torch.zeros(len(grid), dtype=torch.float64)
    total = 0
    for held in pseudo_new_splits(num_classes, num_folds, seed=seed):
        fold_correct, fold_total = _pseudo_new_fold(
            base_features, labels, base_text_weights, held.to(labels.device), grid, k, head, text_copies, logit_scale
        )
        correct += fold_correct
        total += fold_total
    scores = {a: 100.0 * c / total for a, c in zip(grid, correct.tolist())}
    best = max(scores.values())
    return next(a for a, s in scores.items() if s == best), scores


def _pseudo_new_fold(base_features, labels, base_text_weights, held, grid, k, head, text_copies, logit_scale):
    """One fold of `select_new_class_alpha`: give the `held` classes new-class heads from
    the other classes' features, classify the held-out features among themselves under
    each α of `grid`. Kept apart so the selection loop reads as a sum over folds.
    Returns (correct count per α as a float64 tensor, number of held-out features).
    """
    num_classes = base_text_weights.shape[0]
    is_held = torch.isin(labels, held)
    kept = torch.ones(num_classes, dtype=torch.bool, device=labels.device)
    kept[held] = False
    remap = torch.cumsum(kept, 0) - 1  # base id -> pseudo-base id
    x_base, y_base = base_features[~is_held], remap[labels[~is_held]]
    text = base_text_weights[held].to(base_features.dtype)
    weight, bias = new_class_classifier(
        x_base,
        y_base,
        text,
        k=min(k, x_base.shape[0]),
        head=head,
        text_copies=text_copies,
        num_base_classes=int(kept.sum()),
    )
    x_new = base_features[is_held]
    y_new = torch.searchsorted(held, labels[is_held])  # base id -> position among the held-out
    zero_shot = logit_scale * x_new @ text.T
    gda = gda_logits(x_new, weight, bias)
    correct = torch.zeros(len(grid), dtype=torch.float64)
    for i, a in enumerate(grid):
        correct[i] += ((zero_shot + a * gda).argmax(1) == y_new).sum().item()
    return correct, x_new.shape[0]


def new_head_model(base_model, class_names, templates, alpha_rule, head):
    """An unfitted GDA model for `class_names` on `base_model`'s backbone, carrying its config
    (α, scale, views, covariance, preset) and the new-class rules, for `new_classes_head`
    to fill. Kept here so the modeling module stays within its size limit.

    Args:
        base_model: the fitted `GDAForImageClassification` on the base classes.
        class_names: the new classes' names.
        templates: prompt templates for the new classes' text embeddings.
        alpha_rule: "reuse" or "pseudo_new", recorded in the config.
        head: "official" or "knn_mean", recorded in the config.
    """
    c = base_model.config
    return type(base_model).from_clip(
        base_model.require_backbone("new_classes_head"),
        class_names,
        templates,
        alpha=c.alpha,
        logit_scale=c.logit_scale,
        views=c.views,
        dataset_name=c.dataset_name,
        new_class_alpha_rule=alpha_rule,
        new_class_head=head,
        covariance=c.covariance,
        view_scale=c.view_scale,
        view_flip=c.view_flip,
        preset=c.preset,
    )


def fill_new_head(new, x, labels, k, head, text_copies, num_base_classes):
    """Copy `new_class_classifier`'s W and b, built from the base features `x` and the
    `new` model's own text embeddings, into `new` (for `new_classes_head`).

    Args:
        new: the new-class model from `new_head_model`.
        x: (N, D) normalised float64 base features; labels: (N,) base class ids or None.
        k, head, text_copies, num_base_classes: as in `new_class_classifier`.
    """
    weight, bias = new_class_classifier(
        x,
        labels,
        new.text_weights.double(),
        k=k,
        head=head,
        text_copies=text_copies,
        num_base_classes=num_base_classes,
    )
    new.weight.copy_(weight)
    new.bias.copy_(bias)


def set_pseudo_new_alpha(new, base_model, x, labels, k, alphas, num_folds, seed, head, text_copies):
    """`new_classes_head`'s ``alpha_rule="pseudo_new"``: α of the `new` head chosen on the
    base data by `select_new_class_alpha`, its scores kept in `new.config.alpha_scores`.

    Args:
        new: the new-class model whose config receives α and the scores.
        base_model: the base model (its text embeddings and logit scale are used).
        x: (N, D) normalised float64 base features; labels: (N,) base class ids.
        k, alphas, num_folds, seed, head, text_copies: as in `select_new_class_alpha`.
    """
    alpha, scores = select_new_class_alpha(
        x,
        labels,
        base_model.text_weights.double(),
        k=k,
        alphas=alphas,
        num_folds=num_folds,
        seed=seed,
        logit_scale=base_model.config.logit_scale,
        head=head,
        text_copies=text_copies,
    )
    new.config.alpha = alpha
    new.config.alpha_scores = {str(a): s for a, s in scores.items()}


# --------------------------------------------------------------------------- unsupervised EM
