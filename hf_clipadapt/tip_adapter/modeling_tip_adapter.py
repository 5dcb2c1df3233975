"""`TipAdapterForImageClassification`: Tip-Adapter (Zhang et al., ECCV 2022) as a transformers model.

    model = TipAdapterForImageClassification.from_clip("testbed", class_names(train), get_templates("testbed"))
    model.fit(train, shots=16, seed=1)        # cache of the 16-shot features, α and β on validation
    model.evaluate(test, record_as="my-data")
    model.save_pretrained("tip-adapter")      # the cache and text classifier; the CLIP by reference

The arithmetic is `hf_clipadapt.tip_adapter.functional`; construction, forward,
evaluation, saving and loading are the shared `CLIPAdaptedModel` contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.few_shot import train_validation_split
from ..modeling_utils import DEFAULT_SEED, CLIPAdaptedModel, register_auto
from .configuration_tip_adapter import TipAdapterConfig
from .functional import cache_logits, mean_view_keys, select_tip_params_with_scores


class TipAdapterForImageClassification(CLIPAdaptedModel):
    """Zero-shot CLIP plus a key-value cache of the few-shot training features.

    `config.train_keys=False` is the training-free Tip-Adapter (keys are buffers);
    `True` is Tip-Adapter-F (keys are a parameter, fine-tuned by `fit`).
    """

    config_class = TipAdapterConfig
    card_template = "tip_adapter.md"
    card_tags = ("tip-adapter", "clip", "few-shot")
    _unfitted_behaviour = "plain zero-shot CLIP (the cache is empty)"

    def __init__(self, config: TipAdapterConfig, backbone=None):
        super().__init__(config, backbone)
        self.register_text_classifier()
        self.register_buffer("cache_labels", torch.zeros(config.cache_size, dtype=torch.long))
        self._set_cache_keys(torch.zeros(config.cache_size, config.embed_dim))
        self.post_init()

    def _set_cache_keys(self, keys: torch.Tensor) -> None:
        keys = keys.detach().float().clone()
        if self.config.train_keys:
            self.cache_keys = nn.Parameter(keys)
        else:
            if "cache_keys" in self._parameters:
                del self._parameters["cache_keys"]
            self.register_buffer("cache_keys", keys)

    def zero_shot_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.config.logit_scale * features @ self.text_weights.T

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        c = self.config
        logits = self.zero_shot_logits(features)
        if c.cache_size == 0:
            return logits
        return logits + c.alpha * cache_logits(features, self.cache_keys, self.cache_labels, c.num_labels, c.beta)

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit(self, train, validation=None, *, shots: int | None = None, seed: int = DEFAULT_SEED, views: int | None = None,
            batch_size: int = 64, accelerator=None, cache_dir=None, alphas: Sequence[float] | None = None,
            betas: Sequence[float] | None = None, image_column: str = "image", label_column: str = "label",
            dataset_name: str | None = None) -> TipAdapterForImageClassification:  # fmt: skip
        """Build the cache from the training images and pick α, β on validation; returns self.

        `train` is a `datasets.Dataset` (with `shots=K`, the CoOp K-shot split is drawn
        from it) or a `DatasetDict` with "train" and "validation". Each key is the
        normalised mean of `views` augmented encodings of one training image, as in the
        paper. Without validation data, α and β keep their configured values.
        """
        self.require_backbone("fitting")
        c = self.config
        views = c.views if views is None else views
        train, validation = train_validation_split(train, validation, shots=shots, seed=seed, label_column=label_column)
        common = dict(batch_size=batch_size, accelerator=accelerator, cache_dir=cache_dir, image_column=image_column,
                      label_column=label_column)  # fmt: skip
        self.adopt_dataset_labels(train, label_column)
        feats, labels = self.encode_dataset(train, self.augmented_views(seed, c.view_scale, c.view_flip), views=views,
                                            split="train", **common)  # fmt: skip
        c.cache_size = len(train)
        self.cache_labels = labels[: c.cache_size].to(self.text_weights.device)
        self._set_cache_keys(mean_view_keys(feats, views).to(self.text_weights.device))
        if validation is not None:
            self.adopt_dataset_labels(validation, label_column)
            self.select_params(*self.encode_dataset(validation, split="validation", **common), alphas=alphas, betas=betas)
        c.views, c.seed, c.num_train_images, c.is_fitted = views, seed, len(train), True
        c.shots = shots if shots is not None else c.shots
        c.dataset_name = dataset_name or c.dataset_name
        return self

    @torch.no_grad()
    def select_params(self, val_features, val_labels, *, alphas=None, betas=None) -> tuple[float, float]:
        """Grid-search α and β on validation features (never test data); returns them."""
        c = self.config
        x = F.normalize(val_features.to(self.text_weights.device).float(), dim=-1)
        (alpha, beta), scores = select_tip_params_with_scores(
            x, val_labels.to(x.device), self.cache_keys, self.cache_labels, c.num_labels, self.zero_shot_logits(x),
            betas=c.betas if betas is None else betas, alphas=c.alphas if alphas is None else alphas,
        )  # fmt: skip
        c.alpha, c.beta = alpha, beta
        c.param_scores = {f"{a:g},{b:g}": s for (a, b), s in scores.items()}
        return alpha, beta

    def card_vars(self) -> dict:
        c = self.config
        return dict(num_classes=c.num_labels, shots=c.shots, views=c.views, view_scale=c.view_scale,
                    view_flip=c.view_flip, seed=c.seed, alpha=c.alpha, beta=c.beta, train_keys=c.train_keys,
                    cache_size=c.cache_size, logit_scale=c.logit_scale, templates=c.templates or ["a photo of a {}."])  # fmt: skip


register_auto(TipAdapterConfig, TipAdapterForImageClassification)
