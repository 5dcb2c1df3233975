"""Prediction passes and scores of an SFDA model over a whole dataset, sharded over
processes when given an `Accelerator` (the pseudo-label passes of training use them).

Data: a `datasets.Dataset` (or any map-style dataset of dicts) with an image column
and, optionally, a label column; `transform(images, indices, view)` turns a list of
PIL images into pixel values, as in `hf_clipadapt.features`.
"""

from __future__ import annotations

import torch

from ..features import extract_features
from ..metrics import accuracy, h_score, per_class_accuracy, topk_accuracy


def dataset_labels(dataset, label_column: str | None) -> torch.Tensor | None:
    """The label column as int64 [N], or None when there is none."""
    if label_column is None:
        return None
    names = getattr(dataset, "column_names", None)
    if names is not None and label_column not in names:
        return None
    values = list(dataset[label_column]) if names is not None else [row[label_column] for row in dataset]
    return torch.as_tensor(values, dtype=torch.long)


def check_closed_set_labels(labels: torch.Tensor | None, num_labels: int, what: str = "target") -> None:
    """Closed-set mode: every (known) target label must be a source class."""
    if labels is None:
        return
    bad = labels[(labels >= num_labels) | (labels < -1)].unique()
    if bad.numel():
        raise ValueError(
            f"{what} labels {bad.tolist()[:10]} fall outside the {num_labels} source classes (0..{num_labels - 1}). "
            "Closed-set adaptation (strategy 'shot', 'topk', 'centroid' or 'topk_ce') assumes the target holds only source classes: "
            "use strategy='universal' for target-private classes, or drop those samples."
        )


@torch.no_grad()
def predict_logits(
    model,
    dataset,
    transform,
    *,
    accelerator=None,
    batch_size: int = 64,
    image_column: str = "image",
    label_column: str | None = "label",
):
    """Logits [N, C], bottleneck features [N, d] and labels [N] (−1 when absent) for a
    whole dataset, in eval mode, sharded over processes and gathered in order."""
    model = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = model.training
    model.eval()
    num_labels = model.config.num_labels
    has_labels = dataset_labels(dataset, label_column) is not None

    def encode(pixel_values):
        out = model(pixel_values=pixel_values.to(model.device))
        return torch.cat([out.logits, out.features], dim=1)

    try:
        out, labels = extract_features(
            encode,
            dataset,
            transform,
            batch_size=batch_size,
            accelerator=accelerator,
            image_column=image_column,
            label_column=label_column if has_labels else None,
            desc="predict",
        )
    finally:
        model.train(was_training)
    return out[:, :num_labels], out[:, num_labels:], labels


def evaluate(
    model,
    dataset,
    *,
    transform,
    accelerator=None,
    batch_size: int = 64,
    image_column: str = "image",
    label_column: str = "label",
) -> dict:
    """Closed set: top-1 / top-3 / mean per-class accuracy (%). Universal mode: the
    H-score, with every label outside the source classes pooled as "unknown"."""
    logits, _, labels = predict_logits(
        model,
        dataset,
        transform,
        accelerator=accelerator,
        batch_size=batch_size,
        image_column=image_column,
        label_column=label_column,
    )
    if (labels < 0).all():
        raise ValueError(f"evaluate needs labels: the dataset has no usable {label_column!r} column")
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    num_labels = unwrapped.config.num_labels
    if unwrapped.is_universal:
        unknown = unwrapped.config.unknown_index
        y = torch.where((labels >= num_labels) | (labels < 0), torch.full_like(labels, unknown), labels)
        preds = unwrapped.decide(logits)
        scores = h_score(preds, y, unknown_index=unknown)
        known = y != unknown
        closed = accuracy(logits[known], y[known]) if known.any() else 0.0
        return {
            "h_score": scores["H"],
            "known_accuracy": scores["known"],
            "unknown_accuracy": scores["unknown"],
            "closed_set_accuracy_on_known": closed,
        }
    check_closed_set_labels(labels, num_labels, "evaluation")
    return {
        "accuracy": accuracy(logits, labels),
        "top3_accuracy": topk_accuracy(logits, labels, k=3),
        "per_class_accuracy": per_class_accuracy(logits, labels),
    }
