"""Batched feature extraction, Accelerate-aware, with an on-disk cache.

Every feature-level method (GDA, Tip-Adapter, SHIP's VAE, TZSL, the benchmarks)
starts by encoding a dataset once. This module does that in one place:

* batches over a `datasets.Dataset` (or any map-style dataset of dicts),
* shards batches across processes and reassembles them in order with
  `accelerator.gather_for_metrics` (which also drops the padding duplicates),
* shows a progress bar under the package policy (`hf_clipadapt.progress`: main process,
  long loops, terminals only),
* caches the result as safetensors, keyed by the encoder's name, the dataset's
  fingerprint, the split, the number of views and the transform's name, so that a
  second run skips the encoder entirely.

`transform(images, indices, view)` turns a list of PIL images into pixel values.
It receives the dataset indices and the view number so that augmentation can be
seeded per (sample, view): the result then does not depend on batch size or on
how many processes share the work.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from .io import save_safetensors_atomic
from .progress import progress_bar

Transform = Callable[[list, torch.Tensor, int], torch.Tensor]

DEFAULT_CACHE_DIR = Path(os.environ.get("HF_CLIPADAPT_CACHE", Path.home() / ".cache" / "hf_clipadapt" / "features"))


def feature_cache_key(**parts) -> str:
    """A stable hex key from JSON-serialisable parts (model id, fingerprint, split, views...)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def dataset_fingerprint(dataset) -> str:
    fp = getattr(dataset, "_fingerprint", None)
    if fp is None:
        raise ValueError("caching needs a `datasets.Dataset` (it has a fingerprint); pass cache_dir=None otherwise")
    return fp


def check_columns(dataset, **columns: str | None) -> None:
    """Refuse a dataset that lacks a column the caller will read (a bare KeyError deep in a
    data loader otherwise), naming the argument that chose it and the columns there are.
    `columns`: argument name -> column name (None: not read). Datasets without
    `column_names` (a plain torch Dataset) are not checked."""
    present = getattr(dataset, "column_names", None)
    if present is None:
        return
    for argument, column in columns.items():
        if column is not None and column not in present:
            raise KeyError(
                f"the dataset has no {column!r} column ({argument}={column!r}); its columns are {list(present)}. "
                f"Pass {argument}=<the column that holds it>, or rename it: dataset.rename_column(<name>, {column!r})."
            )


class IndexedRows(torch.utils.data.Dataset):
    """(index, image, label) rows of a dataset; label −1 when there is no label column."""

    def __init__(self, dataset, image_column: str, label_column: str | None):
        self.dataset, self.image_column, self.label_column = dataset, image_column, label_column

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        row = self.dataset[i]
        label = row[self.label_column] if self.label_column else -1
        return i, row[self.image_column], label


@torch.no_grad()
def _cache_path(cache_dir, cache_name, dataset, split: str, views: int, transform) -> Path | None:
    """Where `extract_features` caches this encoding (None without `cache_dir`)."""
    if cache_dir is None:
        return None
    if cache_name is None:
        raise ValueError("cache_dir needs cache_name: a string that identifies the encoder")
    key = feature_cache_key(
        encoder=cache_name,
        dataset=dataset_fingerprint(dataset),
        split=split,
        views=views,
        transform=getattr(transform, "cache_id", type(transform).__qualname__),
    )
    return Path(cache_dir) / f"{key}.safetensors"


def _encode_batches(encode, batches, accelerator) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of every batch, gathered across processes, on the CPU."""
    device = accelerator.device if accelerator is not None else None
    feats, labels = [], []
    for pixel_values, batch_labels in batches:
        if device is not None:
            pixel_values = pixel_values.to(device)
        out = encode(pixel_values).float()
        if accelerator is not None:
            out, batch_labels = accelerator.gather_for_metrics((out, batch_labels.to(out.device)))
        feats.append(out.cpu())
        labels.append(batch_labels.cpu())
    return torch.cat(feats), torch.cat(labels)


def extract_features(
    encode: Callable[[torch.Tensor], torch.Tensor],
    dataset,
    transform: Transform,
    *,
    views: int = 1,
    batch_size: int = 64,
    accelerator=None,
    image_column: str = "image",
    label_column: str | None = "label",
    cache_dir: str | Path | None = None,
    cache_name: str | None = None,
    split: str = "train",
    num_workers: int = 0,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every image of `dataset` `views` times.

    Returns (features [views*N, D] float32 on CPU, labels [views*N] long); view v of
    sample i sits at row v*N + i. With `cache_dir` and `cache_name` set (the name
    identifies the encoder, e.g. "openai/clip-vit-base-patch16@224"), the result is
    read from / written to the cache.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if len(dataset) == 0:
        raise ValueError("cannot extract features from an empty dataset")
    check_columns(dataset, image_column=image_column, label_column=label_column)
    path = _cache_path(cache_dir, cache_name, dataset, split, views, transform)
    if path is not None and path.exists():
        cached = load_file(str(path))
        return cached["features"], cached["labels"]

    is_main = accelerator is None or accelerator.is_main_process
    all_feats, all_labels = [], []
    for view in range(views):
        loader = torch.utils.data.DataLoader(
            IndexedRows(dataset, image_column, label_column),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=lambda batch, view=view: _collate(batch, transform, view),
        )
        if accelerator is not None:
            loader = accelerator.prepare_data_loader(loader)
        bar = progress_bar(loader, desc=f"{desc} (view {view + 1}/{views})", main_process=is_main, leave=False)
        feats, labels = _encode_batches(encode, bar, accelerator)
        all_feats.append(feats)
        all_labels.append(labels)
    features, labels = torch.cat(all_feats), torch.cat(all_labels).long()

    if path is not None:
        if is_main:
            save_safetensors_atomic(
                {"features": features, "labels": labels}, path, {"cache_name": cache_name, "split": split}
            )
        if accelerator is not None:
            accelerator.wait_for_everyone()
    return features, labels


def _collate(batch, transform: Transform, view: int):
    indices = torch.tensor([b[0] for b in batch])
    images = [b[1] for b in batch]
    labels = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return transform(images, indices, view), labels
