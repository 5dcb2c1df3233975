"""Open-set evaluation of a UEO model: known-class accuracy, AUROC of the OOD score, H.

The metrics are the package's (`hf_clipadapt.metrics.open_set_scores`, also an
`evaluate` module: `hf_clipadapt.metrics.load_metric("open_set")`), as UEO (Liang et
al., ICML 2024) reports them: mean per-class accuracy over the known classes, AUROC of
the max-softmax score with known images as positives, and their harmonic mean.
"""

from __future__ import annotations

import torch

from ..metrics import accuracy, open_set_scores, per_class_accuracy
from ..modeling_utils import _class_label
from .functional import ood_score

UNKNOWN = -1


def known_label_map(model, dataset, label_column: str) -> torch.Tensor | None:
    """[C_data] the dataset's label ids -> the model's (by class name), -1 for classes the model
    does not know; None when the data carry no `ClassLabel` (ids are then the model's)."""
    feature = _class_label(dataset, label_column)
    if feature is None:
        return None
    ours = {n: i for i, n in enumerate(model.class_names())}
    return torch.tensor([ours.get(n, UNKNOWN) for n in feature.names], dtype=torch.long)


def to_model_labels(labels: torch.Tensor, mapping: torch.Tensor | None, num_labels: int) -> torch.Tensor:
    """Model class ids, -1 for every image of an unknown class (negative, unmapped or >= K)."""
    labels = labels.long()
    unknown = (labels < 0) | (labels >= (len(mapping) if mapping is not None else num_labels))
    mapped = mapping[labels.clamp(min=0, max=len(mapping) - 1)] if mapping is not None else labels
    return torch.where(unknown, torch.full_like(labels, UNKNOWN), mapped)


def open_set_metrics(logits: torch.Tensor, labels: torch.Tensor, kind: str = "max_softmax") -> dict:
    """Scores (%) from logits [N, K] over the known classes and labels [N] (-1 = unknown)."""
    known = labels != UNKNOWN
    if not known.any():
        raise ValueError("the evaluation data hold no image of a known class: known-class accuracy needs some")
    result = {"accuracy": accuracy(logits[known], labels[known]),
              "per_class_accuracy": per_class_accuracy(logits[known], labels[known])}  # fmt: skip
    if not known.all():
        scores = open_set_scores(logits, labels, ood_score(logits, kind), unknown_index=UNKNOWN)
        result.update(auroc=scores["auroc"], H=scores["H"])
    result.update(num_known=int(known.sum()), num_unknown=int((~known).sum()))
    return result


def open_set_evaluation(model, dataset, *, split: str = "test", batch_size: int = 64, accelerator=None, cache_dir=None,
                        image_column: str = "image", label_column: str = "label") -> dict:  # fmt: skip
    """`open_set_metrics` of `model` on a labelled `datasets.Dataset`."""
    names = getattr(dataset, "column_names", None)
    if names is not None and label_column not in names:
        raise ValueError(f"evaluation needs labels: the dataset has no {label_column!r} column (columns: {names})")
    mapping = known_label_map(model, dataset, label_column)
    was_training = model.training
    model.eval()
    try:
        feats, labels = model.encode_dataset(dataset, split=split, batch_size=batch_size, accelerator=accelerator,
                                             cache_dir=cache_dir, image_column=image_column, label_column=label_column)  # fmt: skip
    finally:
        model.train(was_training)
    logits = model.predict_features(feats)
    return open_set_metrics(logits, to_model_labels(labels, mapping, model.config.num_labels), model.config.ood_score)
