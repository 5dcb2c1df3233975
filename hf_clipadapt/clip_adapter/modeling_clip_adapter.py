"""`CLIPAdapterForImageClassification`: CLIP-Adapter (Gao et al., IJCV 2024) as a transformers model.

The adapter is the only trained part (2·D²/r weights); the zero-shot text classifier
is a fixed buffer and the CLIP is referenced, not saved.
"""

from __future__ import annotations

import torch
from transformers import initialization as init

from ..modeling_utils import register_auto
from ..training.feature_trained import FeatureTrainedCLIPModel
from .arguments import CLIPAdapterTrainingArguments
from .configuration_clip_adapter import CLIPAdapterConfig
from .functional import adapter_mlp, clip_adapter_logits


class CLIPAdapterForImageClassification(FeatureTrainedCLIPModel):
    """logits = logit_scale·normalise(ρ·A(x) + (1 − ρ)·x)·Tᵀ with a trained bottleneck MLP A."""

    config_class = CLIPAdapterConfig
    training_arguments_class = CLIPAdapterTrainingArguments
    card_template = "clip_adapter.md"
    card_tags = ("clip-adapter", "clip", "few-shot")
    _unfitted_behaviour = "those of a random adapter blended into zero-shot CLIP"

    def __init__(self, config: CLIPAdapterConfig, backbone=None):
        super().__init__(config, backbone)
        self.adapter = adapter_mlp(config.embed_dim, config.reduction)
        self.register_text_classifier()
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, torch.nn.Linear):
            # PyTorch's default Linear initialisation, as the paper's code uses.
            init.kaiming_uniform_(module.weight, a=5**0.5)

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        c = self.config
        return clip_adapter_logits(features, self.adapter, self.text_weights, c.ratio, c.logit_scale)

    def card_vars(self) -> dict:
        c = self.config
        return dict(
            num_classes=c.num_labels,
            shots=c.shots,
            views=c.views,
            seed=c.seed,
            ratio=c.ratio,
            reduction=c.reduction,
            logit_scale=c.logit_scale,
            templates=c.templates or ["a photo of a {}."],
            epochs=self.paper_epochs(),
            preset=c.preset,
        )


register_auto(CLIPAdapterConfig, CLIPAdapterForImageClassification)
