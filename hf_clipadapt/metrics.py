"""Evaluation metrics shared by every method.

Plain torch (and scikit-learn for AUROC): the single implementation. Every
function accepts tensors or array-likes and returns Python floats, in percent where
the papers report percent. The same metrics in the `evaluate` library's form
(`hf_clipadapt.evaluate_modules`, loaded offline with `load_metric(name)`) are thin
wrappers over these functions, for `Trainer(compute_metrics=...)` and
`evaluate.combine`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _as_tensor(x) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _preds(logits_or_preds) -> torch.Tensor:
    t = _as_tensor(logits_or_preds)
    return t.argmax(-1) if t.ndim == 2 else t.long()


def _check_same_length(preds: torch.Tensor, labels: torch.Tensor) -> None:
    if preds.shape[0] != labels.shape[0]:
        raise ValueError(f"predictions ({preds.shape[0]}) and labels ({labels.shape[0]}) differ in length")
    if labels.numel() == 0:
        raise ValueError("cannot compute a metric over zero samples")


def accuracy(logits_or_preds, labels) -> float:
    """Top-1 accuracy in percent. Takes [N, K] logits or [N] predicted indices."""
    preds, labels = _preds(logits_or_preds), _as_tensor(labels).long()
    _check_same_length(preds, labels)
    return 100.0 * (preds == labels).double().mean().item()


def topk_accuracy(logits, labels, k: int = 5) -> float:
    """Top-k accuracy in percent over [N, K] logits."""
    logits, labels = _as_tensor(logits), _as_tensor(labels).long()
    _check_same_length(logits, labels)
    k = min(k, logits.shape[-1])
    topk = logits.topk(k, dim=-1).indices
    return 100.0 * (topk == labels[:, None]).any(-1).double().mean().item()


def per_class_accuracy(logits_or_preds, labels, classes: Sequence[int] | None = None) -> float:
    """Mean over classes of the per-class recall, in percent.

    `classes` restricts the mean to those class ids (the GZSL seen/unseen halves,
    the shared classes of universal DA). Classes with no test sample are skipped:
    their recall is undefined, and counting them as 0 would punish the model for
    the split, not its predictions.
    """
    preds, labels = _preds(logits_or_preds), _as_tensor(labels).long()
    _check_same_length(preds, labels)
    if classes is None:
        classes = labels.unique().tolist()
    recalls = []
    for c in classes:
        mask = labels == int(c)
        if mask.any():
            recalls.append((preds[mask] == int(c)).double().mean().item())
    if not recalls:
        raise ValueError(f"none of the classes {list(classes)[:10]} has a sample in `labels`")
    return 100.0 * float(np.mean(recalls))


def harmonic_mean(a: float, b: float) -> float:
    """2ab/(a+b), 0 when both are 0. Used for GZSL H, the H-score and UEO's summary."""
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def auroc(scores, is_positive) -> float:
    """Area under the ROC curve in percent, for OOD detection (known = positive)."""
    from sklearn.metrics import roc_auc_score

    scores = _as_tensor(scores).double().numpy()
    is_positive = _as_tensor(is_positive).bool().numpy()
    if is_positive.all() or not is_positive.any():
        raise ValueError("AUROC needs both positive (known) and negative (unknown) samples")
    return 100.0 * float(roc_auc_score(is_positive, scores))


def gzsl_scores(logits_or_preds, labels, seen_classes: Sequence[int], unseen_classes: Sequence[int]) -> dict:
    """Generalized zero-shot scores: per-class accuracy on seen (s) and unseen (u)
    test samples, each over the full label space, and H = 2us/(u+s)."""
    preds, labels = _preds(logits_or_preds), _as_tensor(labels).long()
    overlap = set(map(int, seen_classes)) & set(map(int, unseen_classes))
    if overlap:
        raise ValueError(f"seen and unseen classes overlap: {sorted(overlap)[:10]}")
    seen_mask = torch.isin(labels, torch.as_tensor(list(seen_classes)))
    unseen_mask = torch.isin(labels, torch.as_tensor(list(unseen_classes)))
    s = per_class_accuracy(preds[seen_mask], labels[seen_mask], seen_classes)
    u = per_class_accuracy(preds[unseen_mask], labels[unseen_mask], unseen_classes)
    return {"seen": s, "unseen": u, "H": harmonic_mean(u, s)}


def _warn_one_sided(unknown: torch.Tensor, unknown_index: int) -> None:
    """H is 0 by construction when one side is empty: say why, as the number alone
    reads like a failed model (often the labels use other ids than the model)."""
    import warnings

    if unknown.all():
        warnings.warn(
            f"every label is unknown (= {unknown_index}): no sample has one of the model's known classes, so "
            "the known accuracy is 0 and H = 0 by construction. Check that the labels use the model's class "
            "ids (config.label2id).",
            UserWarning,
            stacklevel=3,
        )
    elif not unknown.any():
        warnings.warn(
            f"no label is unknown (= {unknown_index}): the unknown accuracy is 0 and H = 0 by construction; "
            "on closed-set data report the accuracy instead.",
            UserWarning,
            stacklevel=3,
        )


def h_score(preds, labels, unknown_index: int, known_classes: Sequence[int] | None = None) -> dict:
    """Universal domain adaptation H-score.

    acc_known is the mean per-class accuracy over the shared (known) classes;
    acc_unknown is the accuracy on all target-private samples pooled as one class,
    which are labelled `unknown_index` in `labels`. H = 2·known·unknown/(known+unknown).
    """
    preds, labels = _preds(preds), _as_tensor(labels).long()
    _check_same_length(preds, labels)
    unknown = labels == unknown_index
    _warn_one_sided(unknown, unknown_index)
    if known_classes is None:
        known_classes = labels[~unknown].unique().tolist()
    known = per_class_accuracy(preds[~unknown], labels[~unknown], known_classes) if (~unknown).any() else 0.0
    unk = 100.0 * (preds[unknown] == unknown_index).double().mean().item() if unknown.any() else 0.0
    return {"known": known, "unknown": unk, "H": harmonic_mean(known, unk)}


def open_set_scores(preds, labels, scores, unknown_index: int, known_classes: Sequence[int] | None = None) -> dict:
    """Open-set recognition: accuracy on the known classes, AUROC of a confidence
    score for telling known from unknown samples, and their harmonic mean.

    `labels` marks every sample of an unseen (unknown) class with `unknown_index`;
    `scores` is the per-sample confidence of being known (e.g. the maximum softmax
    probability, Hendrycks & Gimpel, ICLR 2017). "known" is the mean per-class
    accuracy over `known_classes` (default: the known labels present), as in UEO
    (Liang et al., "Realistic Unsupervised CLIP Fine-tuning with Universal Entropy
    Optimization", ICML 2024); all in percent.
    """
    preds, labels, scores = _preds(preds), _as_tensor(labels).long(), _as_tensor(scores)
    _check_same_length(preds, labels)
    _check_same_length(scores, labels)
    unknown = labels == unknown_index
    if unknown.all():
        raise ValueError(f"every label is the unknown index {unknown_index}: known accuracy needs known samples")
    if known_classes is None:
        known_classes = labels[~unknown].unique().tolist()
    known = per_class_accuracy(preds[~unknown], labels[~unknown], known_classes)
    area = auroc(scores, ~unknown)
    return {"known": known, "auroc": area, "H": harmonic_mean(known, area)}


def base_to_new_scores(base_preds, base_labels, new_preds, new_labels) -> dict:
    """Base-to-new generalization (Zhou et al., "Conditional Prompt Learning for
    Vision-Language Models", CVPR 2022): top-1 accuracy on the base classes (seen in
    training) and on the new classes, each evaluated in its own label space, and
    H = 2·base·new/(base+new), in percent."""
    base, new = accuracy(base_preds, base_labels), accuracy(new_preds, new_labels)
    return {"base": base, "new": new, "H": harmonic_mean(base, new)}


def load_metric(name: str, **kwargs):
    """One of the package's `evaluate` modules by name, offline (they ship inside
    the package): "accuracy", "h_score", "gzsl", "open_set", "per_class_accuracy",
    "base_to_new". Keyword arguments go to `evaluate.load` (e.g. `experiment_id`), and
    for "h_score" and "open_set" may set `unknown_index` / `known_classes` once, for
    evaluate's evaluator, which calls `compute(predictions=, references=)` only."""
    from .evaluate_modules import load

    return load(name, **kwargs)
