"""`stack_collate`: the default collator of the training path.

transformers' `default_data_collator` is built for token batches (it renames
`label` to `labels`, refuses tuples). Adaptation datasets are rows of tensors:
dicts (`{"pixel_values": ..., "labels": ...}`, or `image_features`) or tuples
(`TensorDataset`). This stacks each field and keeps the row's shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["TensorRows", "stack_collate"]


class _Stacked(tuple):
    """A batch already stacked by `TensorRows.__getitems__`; `stack_collate` passes it through."""


class TensorRows(torch.utils.data.Dataset):
    """Rows of equal-length tensors (features, labels, ...), like `TensorDataset`, but a batch
    is one index per tensor instead of one `__getitem__` and a stack per sample: DataLoader
    fetches through `__getitems__`. For training on cached features, where the per-sample
    path costs more than the model's step."""

    def __init__(self, *tensors: torch.Tensor):
        if not tensors or any(t.shape[0] != tensors[0].shape[0] for t in tensors):
            raise ValueError(
                f"TensorRows needs tensors with the same first dimension, got {[tuple(t.shape) for t in tensors]}"
            )
        self.tensors = tensors

    def __len__(self):
        return self.tensors[0].shape[0]

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return _Stacked(t[idx] for t in self.tensors)


def _stack(values: list, field: str):
    first = values[0]
    if isinstance(first, torch.Tensor):
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise ValueError(
                f"field {field!r} has rows of different shapes {sorted(shapes)[:4]}: stack_collate stacks "
                "same-shaped tensors; pad them in the dataset or pass your own data_collator."
            )
        return torch.stack(values)
    if isinstance(first, np.ndarray):
        return torch.from_numpy(np.stack(values))
    if isinstance(first, bool):
        return torch.tensor(values, dtype=torch.bool)
    if isinstance(first, int):
        return torch.tensor(values, dtype=torch.long)
    if isinstance(first, float):
        return torch.tensor(values, dtype=torch.float32)
    return list(values)  # strings, PIL images...: left to the model or the method's loss


def stack_collate(rows: Sequence):
    """Rows of dicts → a dict of stacked fields; rows of tuples → a tuple of stacked
    fields. Python ints become int64 (class ids), floats float32, tensors are stacked."""
    if isinstance(rows, _Stacked):
        return tuple(rows)
    if len(rows) == 0:
        raise ValueError("stack_collate got an empty batch")
    first = rows[0]
    if isinstance(first, Mapping):
        keys = list(first)
        for row in rows:
            if list(row) != keys:
                raise ValueError(f"rows have different fields: {keys} vs {list(row)}")
        return {k: _stack([row[k] for row in rows], k) for k in keys}
    if isinstance(first, (tuple, list)):
        return tuple(_stack([row[i] for row in rows], f"#{i}") for i in range(len(first)))
    if isinstance(first, torch.Tensor):
        return _stack(list(rows), "#0")
    raise TypeError(f"stack_collate takes rows that are dicts, tuples or tensors, got {type(first).__name__}")
