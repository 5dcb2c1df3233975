"""Matching a dataset's labels to a model's classes, by class name.

A `datasets.Dataset` whose label column is a `ClassLabel` names its classes; a model
names its own (`config.id2label`). Training and evaluation match the two by name, so
a dataset may hold the model's classes in another order, or some of them (the new
classes of a base-to-new model). Data without a `ClassLabel` are taken to use the
model's ids. Used by every model's `fit` and `evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

UNKNOWN = -1


def class_label(dataset, label_column: str):
    """The dataset's `ClassLabel` feature for `label_column`, or None.

    Args:
        dataset: a `datasets.Dataset` (anything else has no features and gives None).
        label_column: the column holding the labels.
    """
    from datasets import ClassLabel

    feature = dataset.features.get(label_column) if hasattr(dataset, "features") else None
    return feature if isinstance(feature, ClassLabel) else None


def check_class_names(dataset, label_column: str, expected: Sequence[str]) -> None:
    """Refuse a dataset whose `ClassLabel` names differ from `expected` (same order).

    Args:
        dataset: the data; one without a `ClassLabel` passes.
        label_column: the column holding the labels.
        expected: the model's class names, in id order.
    """
    feature = class_label(dataset, label_column)
    if feature is None or list(feature.names) == list(expected):
        return
    diff = [(i, a, b) for i, (a, b) in enumerate(zip(feature.names, expected)) if a != b][:5]
    raise ValueError(
        f"the dataset's class names do not match this model's labels: the dataset has {feature.num_classes} "
        f"classes, the model {len(expected)}; first differences (id, dataset, model): {diff}. Build the model "
        "with class_names=hf_clipadapt.data.class_names(dataset)."
    )


def label_map(dataset, label_column: str, class_names: Sequence[str]) -> torch.Tensor:
    """[C_data] tensor: the dataset's label ids → the model's, matched by class name (the
    identity over the model's classes when the data carry no `ClassLabel`).

    Args:
        dataset: the data.
        label_column: the column holding the labels.
        class_names: the model's class names, in id order.

    Raises:
        ValueError: the dataset has a class the model lacks.
    """
    feature = class_label(dataset, label_column)
    if feature is None:
        return torch.arange(len(class_names))
    ours = {n: i for i, n in enumerate(class_names)}
    unknown = [n for n in feature.names if n not in ours]
    if unknown:
        raise ValueError(
            f"{len(unknown)} of the dataset's classes are not among this model's "
            f"{len(ours)} labels, e.g. {unknown[:5]}; build the model with class names that "
            "include every class of the training data."
        )
    return torch.tensor([ours[n] for n in feature.names], dtype=torch.long)


def known_label_map(dataset, label_column: str, class_names: Sequence[str]) -> torch.Tensor | None:
    """[C_data] the dataset's label ids → the model's (by class name), `UNKNOWN` (-1) for classes
    the model does not know; None when the data carry no `ClassLabel` (ids are then the model's).

    Args:
        dataset: the data, possibly with classes the model does not know (open-set evaluation).
        label_column: the column holding the labels.
        class_names: the model's class names, in id order.
    """
    feature = class_label(dataset, label_column)
    if feature is None:
        return None
    ours = {n: i for i, n in enumerate(class_names)}
    return torch.tensor([ours.get(n, UNKNOWN) for n in feature.names], dtype=torch.long)


def adopt_class_names(config, dataset, label_column: str) -> None:
    """A config built from `num_labels` alone (generic LABEL_i names) takes the dataset's
    `ClassLabel` names when their number matches; otherwise nothing changes.

    Args:
        config: the model's config (its `id2label`/`label2id` are replaced).
        dataset: the training data.
        label_column: the column holding the labels.
    """
    feature = class_label(dataset, label_column)
    ours = [config.id2label[i] for i in range(config.num_labels)]
    generic = ours == [f"LABEL_{i}" for i in range(len(ours))]
    if feature is not None and generic and feature.num_classes == len(ours):
        config.id2label = dict(enumerate(feature.names))
        config.label2id = {n: i for i, n in enumerate(feature.names)}


__all__ = ["UNKNOWN", "adopt_class_names", "check_class_names", "class_label", "known_label_map", "label_map"]


def dataset_name_of(dataset) -> str | None:
    """A `datasets.Dataset`'s own name (`info.dataset_name`, else its builder's), or None."""
    info = getattr(dataset, "info", None)
    return getattr(info, "dataset_name", None) or getattr(info, "builder_name", None) or None
