"""The four prior-knowledge settings of UEO (Liang et al., ICML 2024), from any labelled data.

A labelled dataset's classes are split into *known* ones (the class names the model is
given) and *unknown* ones. The unlabelled training data then hold, per setting:

    closed         all known classes
    partial        a subset of the known classes (the first `partial_fraction` of them)
    open           all known classes + some unknown ones (the first `open_unknown_fraction`)
    open_partial   the partial subset of known classes + those unknown ones

Labels are dropped from the training split (only the image column is kept). The
evaluation split holds every class, known and unknown, in every setting, as the official
code evaluates: its labels are the known classes' ids in `known` order and -1 for each
unknown image (column `is_unknown` too), so unknown classes never seen in training are
also scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value

SETTINGS = ("closed", "partial", "open", "open_partial")
UNKNOWN = -1


def _class_names(dataset: Dataset, label_column: str) -> list[str]:
    feature = dataset.features.get(label_column) if label_column in dataset.column_names else None
    if not isinstance(feature, ClassLabel):
        raise ValueError(f"the dataset needs a ClassLabel column {label_column!r} (class names) to split classes; "
                         f"its columns are {dataset.column_names}")  # fmt: skip
    return list(feature.names)


def split_classes(class_names: Sequence[str], *, num_known: int | None = None, known: Sequence[str] | None = None,
                  seed: int | None = None) -> tuple[list[str], list[str]]:  # fmt: skip
    """(known, unknown) class names: `known` as given, else `num_known` of them (the first ones,
    as the official splits take them, or a seeded random choice with `seed`)."""
    names = list(class_names)
    if known is not None:
        missing = [k for k in known if k not in names]
        if missing or len(set(known)) != len(known) or not known:
            raise ValueError(f"known classes must be distinct names of the dataset's classes; not found: {missing[:5]}")
        known = list(known)
    else:
        if num_known is None or not 0 < num_known < len(names):
            raise ValueError(f"num_known must be between 1 and {len(names) - 1} (some classes must stay unknown)")
        order = np.random.default_rng(seed).permutation(len(names)).tolist() if seed is not None else range(len(names))
        chosen = set(list(order)[:num_known])
        known = [n for i, n in enumerate(names) if i in chosen]
    return known, [n for n in names if n not in known]


def setting_classes(setting: str, known: list[str], unknown: list[str], partial_fraction: float = 0.75,
                    open_unknown_fraction: float = 0.5) -> list[str]:  # fmt: skip
    """The class names present in the unlabelled training data of `setting`."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    if not 0 < partial_fraction < 1 or not 0 < open_unknown_fraction <= 1:
        raise ValueError("partial_fraction must be in (0, 1) and open_unknown_fraction in (0, 1]")
    partial = known[: max(1, min(len(known) - 1, round(partial_fraction * len(known))))]
    extra = unknown[: max(1, round(open_unknown_fraction * len(unknown)))] if unknown else []
    if setting.startswith("open") and not extra:
        raise ValueError(f"setting {setting!r} needs unknown classes; every class is known")
    return {"closed": known, "partial": partial, "open": known + extra, "open_partial": partial + extra}[setting]


def make_setting(train: Dataset, test: Dataset, setting: str, *, known: Sequence[str] | None = None,
                 num_known: int | None = None, seed: int | None = None, partial_fraction: float = 0.75,
                 open_unknown_fraction: float = 0.5, image_column: str = "image",
                 label_column: str = "label") -> DatasetDict:  # fmt: skip
    """{"train": unlabelled images of the setting's classes, "test": every class, labelled
    over the known classes (-1 = unknown)} from labelled `train` / `test` splits that share
    one `ClassLabel`. The known class names are `result["test"].features[label_column].names`."""
    names = _class_names(train, label_column)
    if _class_names(test, label_column) != names:
        raise ValueError("train and test must share one ClassLabel (the same class names in the same order)")
    known_names, unknown_names = split_classes(names, num_known=num_known, known=known, seed=seed)
    present = setting_classes(setting, known_names, unknown_names, partial_fraction, open_unknown_fraction)
    keep = {names.index(n) for n in present}
    unlabelled = train.filter(lambda labels: [y in keep for y in labels], input_columns=label_column, batched=True)
    unlabelled = unlabelled.select_columns([image_column])
    if len(unlabelled) == 0:
        raise ValueError(f"setting {setting!r} leaves no training image (classes {present[:5]}...)")
    new_id = {names.index(n): i for i, n in enumerate(known_names)}

    def relabel(labels):
        ids = [new_id.get(y, UNKNOWN) for y in labels]
        return {label_column: ids, "is_unknown": [i == UNKNOWN for i in ids]}

    features = test.features.copy()
    features[label_column], features["is_unknown"] = ClassLabel(names=known_names), Value("bool")
    evaluation = test.map(relabel, input_columns=label_column, batched=True, features=features)
    return DatasetDict(train=unlabelled, test=evaluation)
