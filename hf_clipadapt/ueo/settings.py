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
                 open_unknown_fraction: float = 0.5, image_column: str = "image", label_column: str = "label",
                 keep_labels: bool = False) -> DatasetDict:  # fmt: skip
    """{"train": unlabelled images of the setting's classes, "test": every class, labelled
    over the known classes (-1 = unknown)} from labelled `train` / `test` splits that share
    one `ClassLabel`. The known class names are `result["test"].features[label_column].names`.
    `keep_labels=True` keeps the training labels, relabelled as the test's, for the oracle
    ablation only (`UEOForImageClassification.fit(..., oracle=True)`)."""
    names = _class_names(train, label_column)
    if _class_names(test, label_column) != names:
        raise ValueError("train and test must share one ClassLabel (the same class names in the same order)")
    known_names, unknown_names = split_classes(names, num_known=num_known, known=known, seed=seed)
    present = setting_classes(setting, known_names, unknown_names, partial_fraction, open_unknown_fraction)
    keep = {names.index(n) for n in present}
    unlabelled = train.filter(lambda labels: [y in keep for y in labels], input_columns=label_column, batched=True)
    unlabelled = unlabelled.select_columns([image_column, label_column] if keep_labels else [image_column])
    if len(unlabelled) == 0:
        raise ValueError(f"setting {setting!r} leaves no training image (classes {present[:5]}...)")
    new_id = {names.index(n): i for i, n in enumerate(known_names)}

    def relabel(labels):
        ids = [new_id.get(y, UNKNOWN) for y in labels]
        return {label_column: ids, "is_unknown": [i == UNKNOWN for i in ids]}

    features = test.features.copy()
    features[label_column], features["is_unknown"] = ClassLabel(names=known_names), Value("bool")
    evaluation = test.map(relabel, input_columns=label_column, batched=True, features=features)
    if keep_labels:
        kept = unlabelled.features.copy()
        kept[label_column] = features[label_column]
        unlabelled = unlabelled.map(lambda ys: {label_column: relabel(ys)[label_column]}, input_columns=label_column,
                                    batched=True, features=kept)  # fmt: skip
    return DatasetDict(train=unlabelled, test=evaluation)


def name_unknown_classes(dataset: Dataset, name_column: str, label_column: str = "label") -> Dataset:
    """An open-set split whose unknown rows are labelled -1 (their class named in `name_column`)
    as a dataset labelled over every class: the known names, then the unknown ones (sorted),
    so that known ids are unchanged and `make_setting` can split the classes again."""
    known = _class_names(dataset, label_column)
    if name_column not in dataset.column_names:
        raise ValueError(f"no column {name_column!r} names the unknown classes; columns: {dataset.column_names}")
    labels, names = dataset[label_column], dataset[name_column]
    extra = sorted({n for y, n in zip(labels, names) if y < 0} - set(known))
    ids = {n: len(known) + i for i, n in enumerate(extra)}
    features = dataset.features.copy()
    features[label_column] = ClassLabel(names=known + extra)

    def relabel(batch):
        return {label_column: [y if y >= 0 else ids[n] for y, n in zip(batch[label_column], batch[name_column])]}

    return dataset.map(relabel, batched=True, features=features)


def split_rows(dataset: Dataset, fraction: float = 0.5, *, seed: int = 0, label_column: str = "label"):
    """(first, second): each class's rows divided `fraction` / rest at random (seeded), stratified."""
    labels = np.asarray(dataset[label_column])
    rng = np.random.default_rng(seed)
    first = []
    for y in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == y))
        first += rows[: int(round(fraction * len(rows)))].tolist()
    chosen = set(first)
    return dataset.select(sorted(first)), dataset.select([i for i in range(len(dataset)) if i not in chosen])
