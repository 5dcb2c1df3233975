"""`CoOpForImageClassification`: CoOp (Zhou et al., IJCV 2022) as a transformers model.

Only the context vectors are trained and saved (n_ctx × W values, or K × n_ctx × W
for class-specific contexts); the CLIP text tower they run through is the frozen
base model's own, shared through `hf_clipadapt.clip.PromptLearner`.
"""

from __future__ import annotations

import torch

from ..clip import PromptLearner
from ..modeling_utils import register_auto
from ..training.feature_trained import FeatureTrainedCLIPModel
from .arguments import CoOpTrainingArguments
from .configuration_coop import CoOpConfig
from .functional import coop_logits


class CoOpForImageClassification(FeatureTrainedCLIPModel):
    """logits = logit_scale·x·Tᵀ, with T the text features of "[v1 … vM] {class}." (the class
    name moved to the middle or the front by `config.class_token_position`)."""

    config_class = CoOpConfig
    training_arguments_class = CoOpTrainingArguments
    card_template = "coop.md"
    card_tags = ("coop", "prompt-learning", "clip", "few-shot")
    _unfitted_behaviour = "zero-shot CLIP prompted with the initial context"

    def __init__(self, config: CoOpConfig, backbone=None):
        super().__init__(config, backbone)
        self.require_backbone("CoOp's prompts (they run through the CLIP text tower)")
        names = [config.id2label[i] for i in range(config.num_labels)]
        generator = torch.Generator().manual_seed(config.seed or 0)
        self.prompt_learner = PromptLearner(
            self.backbone,
            names,
            n_ctx=config.n_ctx,
            ctx_init=config.ctx_init,
            class_specific=config.class_specific,
            suffix=config.suffix,
            generator=generator,
            class_token_position=config.class_token_position,
        )
        config.n_ctx = self.prompt_learner.n_ctx
        self.post_init()

    def _init_weights(self, module):
        # The context comes from PromptLearner (word embeddings or N(0, 0.02²)); CLIP is pretrained.
        pass

    def prepare_config_for_classes(self, config) -> None:
        if config.class_specific:
            raise ValueError(
                "class-specific contexts (CoOp-CSC) belong to their classes and cannot move to other "
                "class names; use a shared context (class_specific=False) for base-to-new"
            )

    def class_text_features(self) -> torch.Tensor:
        """[K, D] normalised text features of the prompted class names."""
        return self.prompt_learner()

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return coop_logits(features, self.class_text_features().float(), self.config.logit_scale)

    def card_vars(self) -> dict:
        c = self.config
        return dict(
            num_classes=c.num_labels,
            shots=c.shots,
            views=c.views,
            seed=c.seed,
            n_ctx=c.n_ctx,
            ctx_init=c.ctx_init,
            class_specific=c.class_specific,
            logit_scale=c.logit_scale,
            epochs=self.paper_epochs(),
            preset=c.preset,
            class_token_position=c.class_token_position,
        )


register_auto(CoOpConfig, CoOpForImageClassification)
