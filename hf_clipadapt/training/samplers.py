"""Samplers that shard ONE global draw across processes.

Every rank builds the same draw (same seed, same epoch) and keeps a disjoint
share of it. The share is taken in blocks of the per-rank batch size: global
batch t is draw[t·B : (t+1)·B] with B = world_size × batch_size, rank r holding
its r-th block. So the global batches do not depend on the number of processes:
2 ranks × 4 samples see exactly what 1 rank × 2 accumulated micro-batches of 4 see,
provided the sampler knows the `accumulation_steps` (an epoch is a whole number of
optimizer steps).

Give one to `AdaptationTrainer` by overriding `get_train_dataloader` (see
`hf_clipadapt.sfda.training`): the loader must not be re-sharded by Accelerate.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler

from ..configuration_utils import DEFAULT_SEED

__all__ = ["ClassBalancedSampler", "ShardedDrawSampler", "ShardedRandomSampler", "class_balanced_weights"]


def class_balanced_weights(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Per-sample weight N/count[class]: each class then has the same total mass."""
    labels = torch.as_tensor(labels).long()
    if labels.numel() == 0:
        raise ValueError("cannot weight an empty label set")
    counts = torch.bincount(labels, minlength=num_classes or 0).double()
    return labels.numel() / counts[labels]


class ShardedDrawSampler(Sampler[int]):
    """Base class: subclasses implement `draw(generator, size)` → a global index draw."""

    def __init__(
        self,
        dataset_size: int,
        *,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        num_samples: int | None = None,
        seed: int = DEFAULT_SEED,
        accumulation_steps: int = 1,
    ):
        if dataset_size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        # whole optimizer steps only (processes × batch × accumulation steps): every rank gets the
        # same number of full batches, and an epoch's last step is whole however it is split
        block = num_replicas * batch_size * accumulation_steps
        self.total_size = max(1, math.ceil((num_samples or dataset_size) / block)) * block

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw(self, generator: torch.Generator, size: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def global_draw(self) -> torch.Tensor:
        """The draw every rank shares for this epoch, [total_size]."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return self.draw(g, self.total_size)

    def __iter__(self):
        blocks = self.global_draw().view(-1, self.num_replicas, self.batch_size)
        return iter(blocks[:, self.rank].reshape(-1).tolist())

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])


class ClassBalancedSampler(ShardedDrawSampler):
    """Class-balanced re-sampling (stage 1): one draw with replacement, weight
    N/count[class] per sample, shared out across ranks. One epoch draws
    `num_samples` (default: the dataset size) samples in total."""

    def __init__(self, labels, **kwargs):
        self.weights = class_balanced_weights(torch.as_tensor(labels))
        super().__init__(len(self.weights), **kwargs)

    def draw(self, generator, size):
        return torch.multinomial(self.weights, size, replacement=True, generator=generator)


class ShardedRandomSampler(ShardedDrawSampler):
    """A shuffled pass (stage 2): a random permutation, topped up from a second one
    when the dataset size is not a multiple of the global batch."""

    def draw(self, generator, size):
        perms = [
            torch.randperm(self.dataset_size, generator=generator) for _ in range(math.ceil(size / self.dataset_size))
        ]
        return torch.cat(perms)[:size]
