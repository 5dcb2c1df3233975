"""Open-set evaluation of a UEO model: known-class accuracy, AUROC of the OOD score, H (`h_score`).

The metrics are the package's (`hf_clipadapt.metrics.open_set_scores`, also an
`evaluate` module: `hf_clipadapt.metrics.load_metric("open_set")`), as UEO (Liang et
al., ICML 2024) reports them: mean per-class accuracy over the known classes, AUROC
with known images as positives, and their harmonic mean H (`h_score`).

`auroc` (and `h_score`) rank images by the official code's score, the max softmax of the
*unscaled* cosine similarities (tim-learn/UEO, demo.py: `load_features` lines 312-326
returns cosines without the ×100, `get_score` lines 291-304 ranks by their max softmax
with sklearn's `roc_curve`/`auc`), so they are comparable with the paper's numbers.
`auroc_scaled` / `h_score_scaled` rank by the max softmax of the scaled logits (what this
package reported before; the temperature changes the ranking, so the two differ), and
`auroc_energy` / `h_score_energy` are added for a model whose `config.ood_score` is "energy".
The official code does not compute H; it is the package's summary of the two.
"""

from __future__ import annotations

import torch

from ..data.labels import UNKNOWN, known_label_map
from ..metrics import accuracy, open_set_scores, per_class_accuracy
from .functional import ood_score


def to_model_labels(labels: torch.Tensor, mapping: torch.Tensor | None, num_labels: int) -> torch.Tensor:
    """Model class ids, -1 for every image of an unknown class (negative, unmapped or >= K)."""
    labels = labels.long()
    unknown = (labels < 0) | (labels >= (len(mapping) if mapping is not None else num_labels))
    mapped = mapping[labels.clamp(min=0, max=len(mapping) - 1)] if mapping is not None else labels
    return torch.where(unknown, torch.full_like(labels, UNKNOWN), mapped)


def open_set_metrics(
    logits: torch.Tensor, labels: torch.Tensor, kind: str = "max_softmax_cosine", *, logit_scale: float | None = None
) -> dict:
    """Scores (%) from scaled logits [N, K] over the known classes (`logit_scale` × cosine
    similarity; pass logit_scale=1 for raw cosines) and labels [N] (-1 = unknown)."""
    if logit_scale is None or not logit_scale > 0:
        raise ValueError(
            "open_set_metrics needs logit_scale=, the factor the logits were multiplied by (> 0; "
            "model.config.logit_scale, or 1 for raw cosines): the official AUROC ranks the cosines"
        )
    known = labels != UNKNOWN
    if not known.any():
        raise ValueError("the evaluation data hold no image of a known class: known-class accuracy needs some")
    result = {
        "accuracy": accuracy(logits[known], labels[known]),
        "per_class_accuracy": per_class_accuracy(logits[known], labels[known]),
    }
    if not known.all():
        named = {"": "max_softmax_cosine", "_scaled": "max_softmax"}
        if kind == "energy":
            named["_energy"] = "energy"
        for suffix, score in named.items():
            scores = open_set_scores(logits, labels, ood_score(logits, score, logit_scale), unknown_index=UNKNOWN)
            result.update({f"auroc{suffix}": scores["auroc"], f"h_score{suffix}": scores["H"]})
    result.update(num_known=int(known.sum()), num_unknown=int((~known).sum()))
    return result


def open_set_evaluation(
    model,
    dataset,
    *,
    split: str = "test",
    batch_size: int = 64,
    accelerator=None,
    cache_dir=None,
    image_column: str = "image",
    label_column: str = "label",
) -> dict:
    """`open_set_metrics` of `model` on a labelled `datasets.Dataset`."""
    names = getattr(dataset, "column_names", None)
    if names is not None and label_column not in names:
        raise ValueError(f"evaluation needs labels: the dataset has no {label_column!r} column (columns: {names})")
    mapping = known_label_map(dataset, label_column, model.class_names())
    feats, labels = model.encode_for_evaluation(
        dataset,
        split=split,
        batch_size=batch_size,
        accelerator=accelerator,
        cache_dir=cache_dir,
        image_column=image_column,
        label_column=label_column,
    )
    logits = model.predict_features(feats)
    return open_set_metrics(
        logits,
        to_model_labels(labels, mapping, model.config.num_labels),
        model.config.ood_score,
        logit_scale=model.config.logit_scale,
    )
