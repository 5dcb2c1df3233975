"""Two-stage source-free domain adaptation (the GeoNet 2023 winning recipe, METHODS.md §7).

Stage 1 trains backbone + bottleneck + classifier on labelled source data; stage 2
adapts backbone + bottleneck to unlabelled target data with the classifier frozen
(strategies "universal", "shot", "topk"). Importing registers the Auto classes.
"""

from . import functional
from .configuration_sfda import SFDAConfig
from .data import load_domain, load_image_list
from .modeling_sfda import SFDAModelForImageClassification, SFDAOutput, SFDAPreTrainedModel, TorchModuleBackbone
from .sampler import ClassBalancedSampler, ShardedRandomSampler
from .training import evaluate, fit, predict_logits

__all__ = [
    "ClassBalancedSampler",
    "SFDAConfig",
    "SFDAModelForImageClassification",
    "SFDAOutput",
    "SFDAPreTrainedModel",
    "ShardedRandomSampler",
    "TorchModuleBackbone",
    "evaluate",
    "fit",
    "functional",
    "load_domain",
    "load_image_list",
    "predict_logits",
]
