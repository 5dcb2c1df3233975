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

Named presets (`SPLIT_PRESETS`, `make_setting(..., preset="office_home")`) give the class
splits of the official code (tim-learn/UEO, demo.py `prepare_dataset`, lines 135-230):
the known classes are the first `num_known` in the dataset's class order, the unknown
classes in "open" settings the next `open_unknown`, and the "partial" settings keep the
first `partial` (or `open_partial`) known ones. They index classes by position, so the
dataset's `ClassLabel` must list the classes in the official order (that of the official
image lists, alphabetical for Office-Home and DomainNet). The official "CSDA" setting
(every class known, no unknown one) is plain closed-set adaptation and is not shipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value

from ..configuration_utils import DEFAULT_SEED, lookup_preset

SETTINGS = ("closed", "partial", "open", "open_partial")
UNKNOWN = -1

# tim-learn/UEO demo.py, prepare_dataset: Office lines 137-154, Office-Home 161-179,
# VisDA-C 189-207, DomainNet 212-230 (src_classes = the known ones; tar_classes per setting).
SPLIT_PRESETS: dict[str, dict] = {
    "office": dict(num_classes=31, num_known=25, partial=20, open_unknown=3, open_partial=15),
    "office_home": dict(num_classes=65, num_known=50, partial=35, open_unknown=10, open_partial=35),
    "visda_c": dict(num_classes=12, num_known=8, partial=6, open_unknown=2, open_partial=6),
    "domainnet": dict(num_classes=345, num_known=300, partial=250, open_unknown=30, open_partial=250),
}


def _class_names(dataset: Dataset, label_column: str) -> list[str]:
    feature = dataset.features.get(label_column) if label_column in dataset.column_names else None
    if not isinstance(feature, ClassLabel):
        raise ValueError(
            f"the dataset needs a ClassLabel column {label_column!r} (class names) to split classes; "
            f"its columns are {dataset.column_names}"
        )
    return list(feature.names)


def split_classes(
    class_names: Sequence[str],
    *,
    num_known: int | None = None,
    known: Sequence[str] | None = None,
    seed: int | None = None,
) -> tuple[list[str], list[str]]:
    """(known, unknown) class names: `known` as given, else `num_known` of them (the first ones,
    as the official splits take them, or a seeded random choice with `seed`)."""
    names = list(class_names)
    if known is not None:
        missing = [k for k in known if k not in names]
        if missing or len(set(known)) != len(known) or not known:
            raise ValueError(
                f"known classes must be distinct names of the dataset's classes; not found: {missing[:5]}"
            )
        known = list(known)
    else:
        if num_known is None or not 0 < num_known < len(names):
            raise ValueError(f"num_known must be between 1 and {len(names) - 1} (some classes must stay unknown)")
        order = np.random.default_rng(seed).permutation(len(names)).tolist() if seed is not None else range(len(names))
        chosen = set(list(order)[:num_known])
        known = [n for i, n in enumerate(names) if i in chosen]
    return known, [n for n in names if n not in known]


def check_setting(setting) -> None:
    """Refuse a setting name that is not one of `SETTINGS`, naming it and the valid ones."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}: setting must be one of {', '.join(SETTINGS)}")


def setting_classes(
    setting: str,
    known: list[str],
    unknown: list[str],
    partial_fraction: float = 0.75,
    open_unknown_fraction: float = 0.5,
) -> list[str]:
    """The class names present in the unlabelled training data of `setting`."""
    check_setting(setting)
    if not 0 < partial_fraction < 1 or not 0 < open_unknown_fraction <= 1:
        raise ValueError("partial_fraction must be in (0, 1) and open_unknown_fraction in (0, 1]")
    partial = known[: max(1, min(len(known) - 1, round(partial_fraction * len(known))))]
    extra = unknown[: max(1, round(open_unknown_fraction * len(unknown)))] if unknown else []
    if setting.startswith("open") and not extra:
        raise ValueError(f"setting {setting!r} needs unknown classes; every class is known")
    return {"closed": known, "partial": partial, "open": known + extra, "open_partial": partial + extra}[setting]


def preset_classes(preset: str, setting: str, class_names: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(known, unknown, present in training) class names of an official split (`SPLIT_PRESETS`)."""
    key, p = lookup_preset(SPLIT_PRESETS, preset, "UEO's class splits (make_setting)")
    check_setting(setting)
    names = list(class_names)
    if len(names) != p["num_classes"]:
        raise ValueError(
            f"preset {key!r} splits {p['num_classes']} classes by position (the official order); "
            f"this dataset has {len(names)}. Use known=/num_known= for other data."
        )
    known, unknown, k = names[: p["num_known"]], names[p["num_known"] :], p["num_known"]
    extra = names[k : k + p["open_unknown"]]
    present = {
        "closed": known,
        "partial": names[: p["partial"]],
        "open": known + extra,
        "open_partial": names[: p["open_partial"]] + extra,
    }[setting]
    return known, unknown, present


def make_setting(
    train: Dataset,
    test: Dataset,
    setting: str,
    *,
    known: Sequence[str] | None = None,
    num_known: int | None = None,
    seed: int | None = None,
    partial_fraction: float = 0.75,
    open_unknown_fraction: float = 0.5,
    image_column: str = "image",
    label_column: str = "label",
    keep_labels: bool = False,
    preset: str | None = None,
) -> DatasetDict:
    """{"train": unlabelled images of the setting's classes, "test": every class, labelled
    over the known classes (-1 = unknown)} from labelled `train` / `test` splits that share
    one `ClassLabel`. The known class names are `result["test"].features[label_column].names`.
    `keep_labels=True` keeps the training labels, relabelled as the test's, for the oracle
    ablation only (`UEOForImageClassification.fit(..., oracle=True)`). `preset` (a name of
    `SPLIT_PRESETS`, e.g. "office_home") takes the official code's class split instead of
    `known` / `num_known` / the fractions."""
    check_setting(setting)  # first: a bad name used to be reported as a missing num_known
    names = _class_names(train, label_column)
    if _class_names(test, label_column) != names:
        raise ValueError("train and test must share one ClassLabel (the same class names in the same order)")
    if preset is not None:
        if known is not None or num_known is not None or seed is not None:
            raise ValueError("preset= fixes the known classes: pass it without known=, num_known= or seed=")
        known_names, unknown_names, present = preset_classes(preset, setting, names)
    else:
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
        unlabelled = unlabelled.map(
            lambda ys: {label_column: relabel(ys)[label_column]},
            input_columns=label_column,
            batched=True,
            features=kept,
        )
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


def split_rows(dataset: Dataset, fraction: float = 0.5, *, seed: int = DEFAULT_SEED, label_column: str = "label"):
    """(first, second): each class's rows divided `fraction` / rest at random (seeded), stratified."""
    labels = np.asarray(dataset[label_column])
    rng = np.random.default_rng(seed)
    first = []
    for y in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == y))
        first += rows[: int(round(fraction * len(rows)))].tolist()
    chosen = set(first)
    return dataset.select(sorted(first)), dataset.select([i for i in range(len(dataset)) if i not in chosen])
