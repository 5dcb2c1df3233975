"""The base-to-new protocol (Zhou et al., "Conditional Prompt Learning for
Vision-Language Models", CVPR 2022): the classes with the first ⌈n/2⌉ label ids are
"base" (trained on, few-shot), the rest "new" (never seen with a label). Each half is
scored within its own label space, and the harmonic mean H = 2·base·new / (base + new)
sums up.

The split is by label id, not by name: CoOp/CoCoOp's `subsample_classes`
(`KaiyangZhou/CoOp`, `datasets/oxford_pets.py`, the method every dataset class reuses)
sorts the label ids and keeps `labels[:math.ceil(n / 2)]` as base. SHIP
(`mrflogs/SHIP`) and GDA (`mrflogs/ICLR24`) run on those CoOp dataset classes. On
ImageNet, whose ids follow the sorted wnids, this is not the first half of the sorted
names.
"""

from __future__ import annotations

import math

import numpy as np

from .few_shot import class_names


def base_new_class_split(names) -> tuple[list[str], list[str]]:
    """(base, new): the classes with the first ⌈n/2⌉ label ids, and the rest.

    `names` are in label-id order (`names[i]` is the name of label `i`, as in a
    `ClassLabel`). They are not sorted: the benchmark splits by id.
    """
    names = list(names)
    if len(names) < 2:
        raise ValueError(f"base-to-new needs at least 2 classes, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError("class names must be unique")
    half = math.ceil(len(names) / 2)
    return names[:half], names[half:]


def select_classes(dataset, names, label_column: str = "label"):
    """The rows of `dataset` whose class is in `names`, relabelled 0..len(names)-1 with a
    `ClassLabel` of exactly `names` (in that order)."""
    from datasets import ClassLabel

    old = class_names(dataset, label_column)
    missing = [n for n in names if n not in old]
    if missing:
        raise ValueError(f"classes not in the dataset: {missing[:5]}")
    mapping = np.full(len(old), -1, dtype=np.int64)
    mapping[[old.index(n) for n in names]] = np.arange(len(names))
    kept = dataset.filter(lambda y: mapping[np.asarray(y)] >= 0, input_columns=label_column, batched=True)
    feature = ClassLabel(names=list(names))
    features = kept.features.copy()
    features[label_column] = feature
    return kept.map(
        lambda y: {label_column: mapping[np.asarray(y)].tolist()},
        input_columns=label_column,
        batched=True,
        features=features,
    )


def base_to_new_split(dataset, label_column: str = "label"):
    """`DatasetDict(base=..., new=...)` of one split, each in its own label space."""
    from datasets import DatasetDict

    base, new = base_new_class_split(class_names(dataset, label_column))
    return DatasetDict(
        base=select_classes(dataset, base, label_column), new=select_classes(dataset, new, label_column)
    )
