"""K-shot splits of a `datasets.Dataset`, following the CoOp protocol.

Few-shot papers train on K images per class and pick hyper-parameters on a small
validation set of min(K, 4) images per class drawn from the *training* data, never
from the test split. `sample_few_shot` draws both, disjoint, reproducibly per seed
(results are reported as the mean over seeds 1, 2, 3).
"""

from __future__ import annotations

import numpy as np

from ..configuration_utils import DEFAULT_SEED


def _check_dataset(dataset, label_column: str) -> None:
    from datasets import DatasetDict

    if isinstance(dataset, DatasetDict):
        raise TypeError(
            f"expected a single split, got a DatasetDict with splits {list(dataset)}; "
            "pass the training split, e.g. sample_few_shot(ds['train'], shots=16)."
        )
    columns = list(getattr(dataset, "column_names", None) or [])
    if label_column not in columns:
        raise ValueError(
            f"dataset has no label column {label_column!r} (columns: {columns}); "
            "pass label_column= with the name of the column that holds class ids."
        )


def _labels(dataset, label_column: str) -> np.ndarray:
    # Read only the label column, as one Arrow array (never decodes images; honours any
    # select/shuffle indices). Iterating a `Column` instead is ~1000x slower on ImageNet.
    table = dataset.select_columns([label_column]).with_format("arrow")[:]
    labels = table.column(label_column).to_numpy()
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"label column {label_column!r} must hold integer class ids, got dtype {labels.dtype}; "
            f"encode it first, e.g. dataset = dataset.class_encode_column({label_column!r})."
        )
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"label column {label_column!r} has negative ids (unlabelled rows, -1); "
            "drop them first: dataset.filter(lambda y: y >= 0, input_columns=label_column)."
        )
    return labels


def class_names(dataset, label_column: str = "label") -> list[str]:
    """Class names, in label-id order, from the dataset's `ClassLabel` feature."""
    from datasets import ClassLabel, DatasetDict

    if isinstance(dataset, DatasetDict):
        dataset = next(iter(dataset.values()))
    _check_dataset(dataset, label_column)
    feature = dataset.features[label_column]
    if not isinstance(feature, ClassLabel):
        raise TypeError(
            f"column {label_column!r} is {feature!r}, not a ClassLabel, so it carries no class names. "
            f"Cast it, e.g. dataset.cast_column({label_column!r}, ClassLabel(names=[...])), "
            "or pass your own list of class names."
        )
    return list(feature.names)


def _too_few_message(short, name, shots: int, val_shots: int, val_rule) -> str:
    """The error for classes with fewer than shots + val_shots examples: which, and what fits."""
    need = shots + val_shots
    listed = ", ".join(f"{name(int(c))!r} ({n})" for c, n in short[:10])
    more = f" and {len(short) - 10} more" if len(short) > 10 else ""
    fewest = min(n for _, n in short)
    # `fit(shots=K)` and the examples' --shots draw val_shots = min(K, 4) for choosing
    # hyperparameters; say which K fits, and how to skip validation from Python.
    fits = [k for k in range(1, fewest + 1) if k + val_rule(k) <= fewest]
    hint = f" (at most {max(fits)} with a validation split, e.g. --shots {max(fits)} in the examples)" if fits else ""
    skip = (
        f", or draw the split without validation, sample_few_shot(dataset, shots={min(shots, fewest)}, "
        f"val_shots=0), and pass it to fit"
        if val_shots and fewest >= 1
        else ""
    )
    return (
        f"{len(short)} class(es) have fewer than shots + val_shots = {shots} + {val_shots} = {need} "
        f"examples: {listed}{more}. Use fewer shots{hint}{skip}."
    )


def sample_few_shot(
    dataset,
    shots: int,
    seed: int = DEFAULT_SEED,
    label_column: str = "label",
    val_shots: int | None = None,
):
    """Draw `shots` training and `val_shots` validation examples per class, disjoint.

    Args:
        dataset: a `datasets.Dataset` (the training split) with an integer or ClassLabel label column.
        shots: K, examples per class for "train".
        seed: the draw is a function of the seed alone.
        label_column: column holding class ids.
        val_shots: examples per class for "validation"; default min(shots, 4); 0 for none.

    Returns:
        `DatasetDict(train=..., validation=...)`, rows kept in their original order.
    """
    from datasets import ClassLabel, DatasetDict

    if not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be a positive int (K examples per class), got {shots!r}")
    val_rule = (lambda k: min(k, 4)) if val_shots is None else (lambda k: val_shots)  # for the error below
    val_shots = min(int(shots), 4) if val_shots is None else val_shots
    if not isinstance(val_shots, (int, np.integer)) or val_shots < 0:
        raise ValueError(f"val_shots must be an int >= 0 (0 for no validation split), got {val_shots!r}")
    _check_dataset(dataset, label_column)
    if len(dataset) == 0:
        raise ValueError("cannot sample few-shot splits from an empty dataset")

    labels = _labels(dataset, label_column)
    feature = dataset.features[label_column]
    # With a ClassLabel every declared class must be sampled, including absent ones
    # (which then fail loudly below instead of silently shrinking the label space).
    num_classes = feature.num_classes if isinstance(feature, ClassLabel) else int(labels.max()) + 1
    class_ids = range(num_classes) if isinstance(feature, ClassLabel) else np.unique(labels)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)])

    need = shots + val_shots
    short = [(c, int(counts[c])) for c in class_ids if counts[c] < need]
    if short:
        name = feature.int2str if isinstance(feature, ClassLabel) else str
        raise ValueError(_too_few_message(short, name, shots, val_shots, val_rule))

    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in class_ids:
        members = rng.permutation(order[starts[c] : starts[c + 1]])
        train.append(members[:shots])
        val.append(members[shots:need])
    train_idx = np.sort(np.concatenate(train))
    val_idx = np.sort(np.concatenate(val)) if val_shots else np.array([], dtype=np.int64)
    return DatasetDict(train=dataset.select(train_idx.tolist()), validation=dataset.select(val_idx.tolist()))


def train_validation_split(
    train, validation=None, *, shots: int | None = None, seed: int = DEFAULT_SEED, label_column: str = "label"
):
    """The (train, validation) pair every `fit` starts from.

    `train` is a `datasets.Dataset` (with `shots=K`, the CoOp K-shot train and
    validation splits are drawn from it), a `DatasetDict` with "train" and optionally
    "validation" (what `sample_few_shot` returns), or anything else (a DataLoader),
    returned as it is. An explicit `validation` wins over one found in a DatasetDict.
    """
    from datasets import Dataset, DatasetDict

    if shots is not None:
        if not isinstance(train, Dataset):
            raise TypeError("shots= samples a few-shot split from a datasets.Dataset; got " + type(train).__name__)
        train = sample_few_shot(train, shots=shots, seed=seed, label_column=label_column)
    if isinstance(train, DatasetDict):
        if "train" not in train:
            raise ValueError(f"a DatasetDict passed to fit needs a 'train' split, got {list(train)}")
        if validation is None and "validation" in train and len(train["validation"]) > 0:
            validation = train["validation"]
        train = train["train"]
    return train, validation
