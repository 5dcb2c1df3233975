"""The sharded samplers moved to `hf_clipadapt.training.samplers` (they serve any
method on the training path); re-exported here for existing imports."""

from ..training.samplers import ClassBalancedSampler, ShardedDrawSampler, ShardedRandomSampler  # noqa: F401

__all__ = ["ClassBalancedSampler", "ShardedDrawSampler", "ShardedRandomSampler"]
