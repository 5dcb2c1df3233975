"""Real-data few-shot features for the GDA demo and benchmark (EfficientNet-Lite0, cached).

For each (seed, shots) the CoOp protocol draws K training and min(K, 4) validation
images per class with `hf_clipadapt.data.sample_few_shot`. Only the union of the
drawn images is encoded: once plainly (validation, baselines) and `views` times
under `AugmentedViews` (random-resized-crop 0.5–1 + flip), the paper's training
augmentation. The test subset is encoded plainly. Everything goes through
`hf_clipadapt.features.extract_features` with cache names
"efficientnet-lite0@<size>", so re-runs, and other scripts on the same data,
skip the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from hf_clipadapt.clip import PreprocessTransform
from hf_clipadapt.data import AugmentedViews, sample_few_shot
from hf_clipadapt.features import DEFAULT_CACHE_DIR, extract_features
from offline_assets import EfficientNetLite0Features, efficientnet_preprocess


@dataclass
class Split:
    """Features of one (seed, shots) draw, L2-normalised."""

    train_views: torch.Tensor  # [views*K*C, D] augmented views, the GDA training set
    train_views_labels: torch.Tensor
    train: torch.Tensor  # [K*C, D] plain
    train_labels: torch.Tensor
    cache_keys: torch.Tensor  # [K*C, D] mean over views, normalised (Tip-Adapter's cache)
    val: torch.Tensor
    val_labels: torch.Tensor


class FewShotFeatures:
    """Encodes a train pool's few-shot draws and a test set once; hands out `Split`s."""

    def __init__(self, pool, test, *, shots, seeds, size=224, views=10, batch_size=64, encoder=None, desc=""):
        self.size, self.views = size, views
        self.num_classes = pool.features["label"].num_classes
        encoder = encoder or EfficientNetLite0Features().eval()
        plain = PreprocessTransform(partial(efficientnet_preprocess, size=size), f"efficientnet_preprocess@{size}")
        augment = AugmentedViews(plain, size=size, scale=(0.5, 1.0), flip=True, seed=0)
        kw = dict(batch_size=batch_size, cache_dir=DEFAULT_CACHE_DIR, cache_name=f"efficientnet-lite0@{size}")

        pool = pool.add_column("pool_index", list(range(len(pool))))
        self.draws = {}
        for seed in seeds:
            for k in shots:
                few = sample_few_shot(pool, shots=k, seed=seed)
                self.draws[seed, k] = (few["train"]["pool_index"], few["validation"]["pool_index"])
        used = sorted({i for tr, va in self.draws.values() for i in (*tr, *va)})
        self.row = {pool_index: r for r, pool_index in enumerate(used)}
        subset = pool.select(used).remove_columns("pool_index")

        with torch.inference_mode():
            self.test, self.test_labels = extract_features(
                encoder, test, plain, split="test", desc=f"{desc} test", **kw
            )
            self.plain, self.plain_labels = extract_features(
                encoder, subset, plain, split="train", desc=f"{desc} train", **kw
            )
            self.aug, self.aug_labels = extract_features(
                encoder, subset, augment, views=views, split="train", desc=f"{desc} views", **kw
            )
        self.test, self.plain, self.aug = (F.normalize(t, dim=1) for t in (self.test, self.plain, self.aug))
        self.num_used = len(used)

    def split(self, seed: int, shots: int) -> Split:
        train_idx, val_idx = self.draws[seed, shots]
        rows = torch.tensor([self.row[i] for i in train_idx])
        val_rows = torch.tensor([self.row[i] for i in val_idx])
        view_rows = (torch.arange(self.views)[:, None] * self.num_used + rows[None, :]).flatten()
        per_view = self.aug[view_rows].view(self.views, len(rows), -1)
        return Split(
            train_views=self.aug[view_rows],
            train_views_labels=self.aug_labels[view_rows],
            train=self.plain[rows],
            train_labels=self.plain_labels[rows],
            cache_keys=F.normalize(per_view.mean(0), dim=1),
            val=self.plain[val_rows],
            val_labels=self.plain_labels[val_rows],
        )
