"""Zero-shot data: the xlsa17 `.mat` release, feature files, and a seen-class validation split.

Everything here returns a `ZSLData`: features and labels of the three standard
parts (seen-train, test-seen, test-unseen) plus one semantic vector per class.
Class ids are global (0..C-1) and index the rows of `attributes`.

The xlsa17 release (Xian et al., "Zero-shot learning - the good, the bad and the
ugly") stores MATLAB arrays:

* `res101.mat`: `features` (2048 x N, one column per image) and `labels` (N x 1,
  1-based class ids);
* `att_splits.mat`: `att` (d_a x C, one column per class), the 1-based image
  index sets `trainval_loc`, `test_seen_loc`, `test_unseen_loc` (and optionally
  `allclasses_names`).

Nothing here scales features: the model fits its min-max scaling on the
seen-train features only, inside `TZSLModel.fit`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..configuration_utils import DEFAULT_SEED

_PARTS = ("train", "test_seen", "test_unseen")


def _check_finite(x: torch.Tensor, name: str) -> None:
    # NaN would otherwise surface deep in training as "all elements of input should be between 0 and 1".
    bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).nonzero().flatten() if x.numel() else x.new_zeros(0)
    if len(bad):
        raise ValueError(
            f"{name} holds NaN or inf in {len(bad)} row(s) (first: {bad[:5].tolist()}); drop or impute those rows "
            "(e.g. features of unreadable images) before building ZSLData"
        )


@dataclass
class ZSLData:
    """Features, labels and class semantics of a zero-shot split.

    `attributes` has one row per class (global ids 0..C-1). `seen_classes` and
    `unseen_classes` must be disjoint. Labels of `test_unseen` may be all -1 when
    they are unknown (they are only ever used for evaluation).
    """

    train_features: torch.Tensor
    train_labels: torch.Tensor
    test_seen_features: torch.Tensor
    test_seen_labels: torch.Tensor
    test_unseen_features: torch.Tensor
    test_unseen_labels: torch.Tensor
    attributes: torch.Tensor
    seen_classes: list[int]
    unseen_classes: list[int]
    class_names: list[str] | None = field(default=None)

    def __post_init__(self):
        for part in _PARTS:
            x = torch.as_tensor(getattr(self, f"{part}_features")).float()
            y = torch.as_tensor(getattr(self, f"{part}_labels")).long().reshape(-1)
            if x.ndim != 2 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{part}: features must be [N, D] with one label per row, got {tuple(x.shape)} and {tuple(y.shape)}"
                )
            _check_finite(x, f"{part}_features")
            setattr(self, f"{part}_features", x)
            setattr(self, f"{part}_labels", y)
        self.attributes = torch.as_tensor(self.attributes).float()
        _check_finite(self.attributes, "attributes")
        self.seen_classes = [int(c) for c in self.seen_classes]
        self.unseen_classes = [int(c) for c in self.unseen_classes]
        self.class_names = _as_name_list(self.class_names)
        check_split(self.attributes, self.seen_classes, self.unseen_classes, class_names=self.class_names)
        widths = {p: getattr(self, f"{p}_features").shape[1] for p in _PARTS}
        if len(set(widths.values())) != 1:
            raise ValueError(f"all parts must have the same feature width, got {widths}")
        for part, allowed in (
            ("train", self.seen_classes),
            ("test_seen", self.seen_classes),
            ("test_unseen", self.unseen_classes),
        ):
            y = getattr(self, f"{part}_labels")
            bad = sorted(set(y[y >= 0].tolist()) - set(allowed))
            if bad:
                raise ValueError(f"{part} has labels {bad[:10]} outside its class set {allowed[:10]}...")

    @property
    def num_classes(self) -> int:
        return self.attributes.shape[0]

    @property
    def feature_dim(self) -> int:
        return self.train_features.shape[1]

    def __repr__(self) -> str:
        n = {p: getattr(self, f"{p}_features").shape[0] for p in _PARTS}
        return (
            f"ZSLData(feature_dim={self.feature_dim}, attribute_dim={self.attributes.shape[1]}, "
            f"seen={len(self.seen_classes)}, unseen={len(self.unseen_classes)}, sizes={n})"
        )

    def to_dataset_dict(self):
        """A `datasets.DatasetDict` with `train`, `test_seen` and `test_unseen` splits of
        {"features", "label"} rows (torch format). Class attributes stay in `self.attributes`."""
        from datasets import Dataset, DatasetDict

        return DatasetDict(
            {
                p: Dataset.from_dict(
                    {"features": getattr(self, f"{p}_features").numpy(), "label": getattr(self, f"{p}_labels").numpy()}
                ).with_format("torch")
                for p in _PARTS
            }
        )


def _as_name_list(names) -> list[str] | None:
    """class_names as a plain list of str: a `datasets` Column, a tuple or an array used to be
    kept as given and to fail only when the model's config was saved to JSON."""
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError(f"class_names must be a list of names, one per class, got the single string {names!r}")
    names = list(names)
    bad = [(i, n) for i, n in enumerate(names) if not isinstance(n, str)]
    if bad:
        raise TypeError(
            f"class_names must all be strings; positions {[i for i, _ in bad[:5]]} hold "
            f"{[type(n).__name__ for _, n in bad[:5]]}"
        )
    return names


def check_split(attributes: torch.Tensor, seen_classes, unseen_classes, class_names=None) -> None:
    """Raise a clear error when the class sets and the attribute matrix disagree."""
    if attributes.ndim != 2:
        raise ValueError(f"attributes must be [num_classes, attribute_dim], got shape {tuple(attributes.shape)}")
    seen, unseen = set(map(int, seen_classes)), set(map(int, unseen_classes))
    if not seen or not unseen:
        raise ValueError("zero-shot learning needs at least one seen and one unseen class")
    overlap = seen & unseen
    if overlap:
        raise ValueError(f"seen and unseen classes overlap: {sorted(overlap)[:10]}; a class is either seen or unseen")
    if len(seen) != len(list(seen_classes)) or len(unseen) != len(list(unseen_classes)):
        raise ValueError("seen_classes / unseen_classes contain duplicates")
    top = max(seen | unseen)
    if min(seen | unseen) < 0 or top >= attributes.shape[0]:
        raise ValueError(
            f"attributes has {attributes.shape[0]} rows but the classes go up to id {top}: "
            "give one attribute row per class (row i = class i)"
        )
    if class_names is not None and len(class_names) != attributes.shape[0]:
        raise ValueError(f"{len(class_names)} class names but attributes has {attributes.shape[0]} rows")


def _require(mat: dict, key: str, filename: str):
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise KeyError(f"{filename} lacks the key {key!r} (found: {found}); is this the xlsa17 release?")
    return mat[key]


def _locs(mat: dict, key: str, n: int, filename: str) -> np.ndarray:
    loc = np.asarray(_require(mat, key, filename)).reshape(-1).astype(np.int64) - 1  # 1-based -> 0-based
    if loc.size and (loc.min() < 0 or loc.max() >= n):
        raise ValueError(f"{filename}:{key} indexes images 1..{n} (1-based), got {loc.min() + 1}..{loc.max() + 1}")
    return loc


def load_xlsa17(
    root: str | os.PathLike, features_file: str = "res101.mat", splits_file: str = "att_splits.mat"
) -> ZSLData:
    """Read an xlsa17 dataset folder (e.g. `xlsa17/data/CUB`) into a `ZSLData`.

    Handles MATLAB's layout: features and attributes are stored one column per
    sample/class (transposed here) and labels and index sets are 1-based.
    Seen-train is `trainval_loc` (the proposed split's full seen set).
    """
    from scipy.io import loadmat

    root = Path(root)
    res = loadmat(str(root / features_file))
    spl = loadmat(str(root / splits_file))
    feats = np.asarray(_require(res, "features", features_file), dtype=np.float32).T  # [N, D]
    labels = np.asarray(_require(res, "labels", features_file)).reshape(-1).astype(np.int64) - 1
    if labels.shape[0] != feats.shape[0]:
        raise ValueError(f"{features_file}: {feats.shape[0]} feature columns but {labels.shape[0]} labels")
    att = np.asarray(_require(spl, "att", splits_file), dtype=np.float32).T  # [C, d_a]
    n = feats.shape[0]
    loc = {p: _locs(spl, f"{'trainval' if p == 'train' else p}_loc", n, splits_file) for p in _PARTS}
    names = None
    if "allclasses_names" in spl:
        names = [str(np.asarray(v).reshape(-1)[0]) for v in np.asarray(spl["allclasses_names"]).reshape(-1)]
    seen = sorted(set(labels[loc["train"]].tolist()) | set(labels[loc["test_seen"]].tolist()))
    unseen = sorted(set(labels[loc["test_unseen"]].tolist()))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return ZSLData(
        **{f"{p}_features": t(feats[loc[p]]) for p in _PARTS},
        **{f"{p}_labels": t(labels[loc[p]]) for p in _PARTS},
        attributes=t(att),
        seen_classes=seen,
        unseen_classes=unseen,
        class_names=names,
    )


def save_features_file(data: ZSLData, path: str | os.PathLike) -> None:
    """Save a `ZSLData` as one safetensors file (atomic: written then renamed)."""
    from ..io import save_safetensors_atomic

    tensors = {f"{p}_{k}": getattr(data, f"{p}_{k}").clone() for p in _PARTS for k in ("features", "labels")}
    tensors["attributes"] = data.attributes.clone()
    meta = {
        "seen_classes": json.dumps(data.seen_classes),
        "unseen_classes": json.dumps(data.unseen_classes),
        "class_names": json.dumps(data.class_names),
    }
    save_safetensors_atomic(tensors, path, metadata=meta)


def load_features_file(path: str | os.PathLike) -> ZSLData:
    """Inverse of `save_features_file`."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        keys = set(f.keys())
        tensors = {k: f.get_tensor(k) for k in keys}
    needed = [f"{p}_{k}" for p in _PARTS for k in ("features", "labels")] + ["attributes"]
    for k in needed:
        if k not in keys:
            raise KeyError(f"{path} lacks the tensor {k!r}; write it with hf_clipadapt.tzsl.save_features_file")
    for k in ("seen_classes", "unseen_classes"):
        if k not in meta:
            raise KeyError(f"{path} lacks the metadata key {k!r}")
    return ZSLData(
        **{k: tensors[k] for k in needed},
        seen_classes=json.loads(meta["seen_classes"]),
        unseen_classes=json.loads(meta["unseen_classes"]),
        class_names=json.loads(meta.get("class_names", "null")),
    )


def pseudo_unseen_split(
    data: ZSLData, num_holdout: int, seed: int = DEFAULT_SEED, test_fraction: float = 0.2
) -> ZSLData:
    """A validation split for model selection that never touches unseen classes or test data.

    `num_holdout` seen classes (chosen with `seed`) become pseudo-unseen: their
    train images form the validation test-unseen part and are removed from
    training. A `test_fraction` of the remaining seen-train images forms the
    validation test-seen part. Tune anything (epochs, loss weights) on this, then
    retrain on the full data with the chosen values.
    """
    seen = list(data.seen_classes)
    if not 1 <= num_holdout < len(seen):
        raise ValueError(
            f"num_holdout must be in [1, {len(seen) - 1}] for {len(seen)} seen classes, got {num_holdout}"
        )
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(seen), generator=g).tolist()
    held = sorted(seen[i] for i in perm[:num_holdout])
    kept = sorted(set(seen) - set(held))
    y = data.train_labels
    is_held = torch.isin(y, torch.tensor(held))
    kept_idx = (~is_held).nonzero().squeeze(1)
    kept_idx = kept_idx[torch.randperm(kept_idx.numel(), generator=g)]
    n_val = int(round(test_fraction * kept_idx.numel()))
    val_idx, tr_idx = kept_idx[:n_val].sort().values, kept_idx[n_val:].sort().values
    x = data.train_features
    return ZSLData(
        train_features=x[tr_idx],
        train_labels=y[tr_idx],
        test_seen_features=x[val_idx],
        test_seen_labels=y[val_idx],
        test_unseen_features=x[is_held],
        test_unseen_labels=y[is_held],
        attributes=data.attributes,
        seen_classes=kept,
        unseen_classes=held,
        class_names=data.class_names,
    )
