"""Few-shot baselines on features, shared by every method's comparisons.

GDA's demo and benchmark use them today; the testbed, SHIP (Tip-Adapter-F) and
UEO comparisons build on the same functions. Small enough to read in one sitting:

* nearest class mean (cosine similarity to the normalised class means);
* Tip-Adapter, training-free (Zhang et al., ECCV 2022): a key-value cache of the
  training features, logits = [logit_scale·x·Tᵀ] + α·exp(−β·(1 − x·Fᵀ))·L;
* a logistic-regression linear probe (scikit-learn, L-BFGS), C picked on validation,
  as in CLIP's and CoOp's linear-probe protocol.

All take L2-normalised features. Hyper-parameters are chosen on the few-shot
validation split, never on test, exactly like GDA's α.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import accuracy

TIP_BETAS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0)
PROBE_CS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
TIP_ALPHAS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)


def nearest_class_mean(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K, D] normalised class means; logits = x·Mᵀ (cosine nearest class mean)."""
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype).index_add_(0, labels, features)
    return F.normalize(sums, dim=1)


def tip_adapter_logits(
    features: torch.Tensor,
    cache_keys: torch.Tensor,
    cache_labels: torch.Tensor,
    num_classes: int,
    beta: float,
    alpha: float = 1.0,
    zero_shot_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Training-free Tip-Adapter: α·exp(−β(1 − x·Fᵀ))·L, plus the zero-shot logits when given."""
    affinity = features @ cache_keys.T
    cache = torch.exp(-beta * (1.0 - affinity)) @ F.one_hot(cache_labels, num_classes).to(features.dtype)
    return alpha * cache if zero_shot_logits is None else zero_shot_logits + alpha * cache


def select_tip_beta(
    val_features, val_labels, cache_keys, cache_labels, num_classes, betas: Sequence[float] = TIP_BETAS
) -> float:
    """β with the best validation accuracy (the smaller one on ties), cache logits alone."""
    return select_tip_params(val_features, val_labels, cache_keys, cache_labels, num_classes, betas=betas)[1]


def select_tip_params(
    val_features, val_labels, cache_keys, cache_labels, num_classes, zero_shot_logits=None,
    betas: Sequence[float] = TIP_BETAS, alphas: Sequence[float] = TIP_ALPHAS,
) -> tuple[float, float]:  # fmt: skip
    """(α, β) with the best validation accuracy, Tip-Adapter's grid search.

    With `zero_shot_logits` (the validation images' zero-shot logits) the full
    Tip-Adapter is scored; without them α only scales the cache logits, which
    cannot change a prediction, so α = 1. Ties go to the smaller β, then smaller α.
    """
    alphas = sorted(alphas) if zero_shot_logits is not None else [1.0]
    best, best_acc = (1.0, float(sorted(betas)[0])), -1.0
    for b in sorted(betas):
        for a in alphas:
            logits = tip_adapter_logits(val_features, cache_keys, cache_labels, num_classes, b, a, zero_shot_logits)
            acc = accuracy(logits, val_labels)
            if acc > best_acc:  # strict: keeps the first (smallest) on ties
                best, best_acc = (float(a), float(b)), acc
    return best


def logistic_probe(train_x, train_y, val_x, val_y, Cs: Sequence[float] = PROBE_CS, seed: int = 0, max_iter: int = 1000):
    """A scikit-learn LogisticRegression with C picked by validation accuracy (smaller C on ties)."""
    from sklearn.linear_model import LogisticRegression

    best, best_acc = None, -1.0
    for c in Cs:
        clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        clf.fit(train_x.numpy(), train_y.numpy())
        acc = 100.0 * float((clf.predict(val_x.numpy()) == val_y.numpy()).mean())
        if acc > best_acc:
            best, best_acc = clf, acc
    return best
