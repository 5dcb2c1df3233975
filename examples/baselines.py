"""Few-shot baselines on features, shared by every method's comparisons.

GDA's demo and benchmark use them today; the testbed, SHIP (Tip-Adapter-F) and
UEO comparisons build on the same functions. Small enough to read in one sitting:

* nearest class mean (cosine similarity to the normalised class means);
* Tip-Adapter, training-free (Zhang et al., ECCV 2022): a key-value cache of the
  training features, logits = [logit_scale·x·Tᵀ] + α·exp(−β·(1 − x·Fᵀ))·L
  (re-exported from `hf_clipadapt.tip_adapter`, where it is also a model);
* a logistic-regression linear probe (scikit-learn, L-BFGS), C picked on validation,
  as in CLIP's and CoOp's linear-probe protocol.

All take L2-normalised features. Hyper-parameters are chosen on the few-shot
validation split, never on test, exactly like GDA's α.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from hf_clipadapt.metrics import accuracy  # noqa: F401
from hf_clipadapt.tip_adapter.functional import (  # noqa: F401  (re-exported: the baselines' Tip-Adapter)
    TIP_ALPHAS,
    TIP_BETAS,
    select_tip_beta,
    select_tip_params,
    tip_adapter_logits,
)

PROBE_CS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)


def nearest_class_mean(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K, D] normalised class means; logits = x·Mᵀ (cosine nearest class mean)."""
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype).index_add_(0, labels, features)
    return F.normalize(sums, dim=1)


def logistic_probe(
    train_x, train_y, val_x, val_y, Cs: Sequence[float] = PROBE_CS, seed: int = 0, max_iter: int = 1000
):
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
