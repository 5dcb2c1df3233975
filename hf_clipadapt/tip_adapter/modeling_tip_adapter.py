"""`TipAdapterForImageClassification`: Tip-Adapter (Zhang et al., ECCV 2022) as a transformers model.

    model = TipAdapterForImageClassification.from_clip("testbed", class_names(train), get_templates("testbed"))
    model.fit(train, shots=16, seed=1)        # cache of the 16-shot features, α and β on validation
    model.evaluate(test, record_as="my-data")
    model.save_pretrained("tip-adapter")      # the cache and text classifier; the CLIP by reference

The arithmetic is `hf_clipadapt.tip_adapter.functional`; construction, forward,
evaluation, saving and loading are the shared `CLIPAdaptedModel` contract.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration_utils import DEFAULT_SEED
from ..modeling_utils import register_auto
from ..training.feature_trained import FeatureTrainedCLIPModel, with_extra
from .arguments import TipAdapterTrainingArguments
from .configuration_tip_adapter import TipAdapterConfig
from .functional import cache_logits, mean_view_keys, select_tip_params_with_scores


class TipAdapterForImageClassification(FeatureTrainedCLIPModel):
    """Zero-shot CLIP plus a key-value cache of the few-shot training features.

    `config.train_keys=False` is the training-free Tip-Adapter (keys are buffers);
    `True` is Tip-Adapter-F (keys are a parameter, fine-tuned by `fit` through the
    shared training path). `fit` is `FeatureTrainedCLIPModel.fit`: the views are encoded
    once, then `fit_features` builds the cache.
    """

    config_class = TipAdapterConfig
    training_arguments_class = TipAdapterTrainingArguments
    card_template = "tip_adapter.md"
    card_tags = ("tip-adapter", "clip", "few-shot")
    _unfitted_behaviour = "plain zero-shot CLIP (the cache is empty)"
    uses_validation = True  # α and β are chosen on the validation shots
    extra_features_per_batch = False  # extra features become cache keys: they must be one fixed set

    def __init__(self, config: TipAdapterConfig, backbone=None):
        super().__init__(config, backbone)
        self.register_text_classifier()
        self.register_buffer("cache_labels", torch.zeros(config.cache_size, dtype=torch.long))
        self._set_cache_keys(torch.zeros(config.cache_size, config.embed_dim))
        self.post_init()

    # The cache votes for the classes it was built on: on other classes it is empty
    # (zero-shot), as Tip-Adapter is scored on new classes.
    class_specific_state = ("text_weights", "cache_keys", "cache_labels")

    def prepare_config_for_classes(self, config) -> None:
        config.cache_size = 0

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
    def encode_training_views(self, train, *, seed: int, views: int, **encode) -> tuple[torch.Tensor, torch.Tensor]:
        """The training views, L2-normalised; with `config.key_averaging="raw"` the CLIP's
        unnormalised image features, which Tip-Adapter's `build_cache_model` averages
        (`utils.py` L52-60), cached on disk apart from the normalised ones."""
        if self.config.key_averaging != "raw":
            return super().encode_training_views(train, seed=seed, views=views, **encode)
        from ..features import extract_features

        c, backbone = self.config, self.require_backbone("encoding the training views")
        cache_dir = encode.pop("cache_dir", None)
        return extract_features(
            functools.partial(backbone.encode_images, normalize=False),
            train,
            self.augmented_views(seed, c.view_scale, c.view_flip),
            views=views,
            split="train",
            cache_dir=cache_dir,
            cache_name=f"{backbone.cache_name}@{backbone.crop_size}:raw" if cache_dir else None,
            desc=f"{c.model_type} train (raw)",
            **encode,
        )

    def fit_features(
        self,
        features,
        labels,
        *,
        views: int = 1,
        validation=None,
        extra_features=None,
        seed: int = DEFAULT_SEED,
        args=None,
        resume_from_checkpoint=None,
    ) -> None:
        """Keys: the normalised mean of each image's `views` features (plus `extra_features`,
        e.g. SHIP's synthesized ones, as keys of their own); Tip-Adapter-F then trains the
        keys on all views; α and β are chosen on `validation` (features, labels) if given."""
        device = self.text_weights.device
        # The views are averaged as given: `fit` gives normalised ones, or under
        # key_averaging="raw" the unnormalised ones (the official keys); training normalises.
        if (
            self.config.key_averaging == "raw"
            and views > 1
            and torch.allclose(features.float().norm(dim=-1), torch.ones(()), atol=1e-4)
        ):
            warnings.warn(
                "key_averaging='raw' but the training features are already L2-normalised: the keys average "
                "normalised views. Pass the CLIP's unnormalised features (fit does).",
                stacklevel=2,
            )
        n = features.shape[0] // views
        keys, key_labels = with_extra(
            mean_view_keys(features, views), labels[:n], extra_features, self.config.num_labels
        )
        self.warn_uncovered_classes(key_labels)
        self.config.cache_size = keys.shape[0]
        self.cache_labels = key_labels.to(device)
        self._set_cache_keys(F.normalize(keys.float(), dim=-1).to(device))
        if self.config.train_keys:
            train_x, train_y = with_extra(features, labels, extra_features, self.config.num_labels)
            self.history_ = self.train_on_features(
                train_x, train_y, seed=seed, args=args, resume_from_checkpoint=resume_from_checkpoint
            )
        if validation is not None:
            self.select_params(*validation)
        self.config.is_fitted = True

    @torch.no_grad()
    def select_params(self, val_features, val_labels, *, alphas=None, betas=None) -> tuple[float, float]:
        """Grid-search α and β on validation features (never test data); returns them."""
        c = self.config
        grid_alphas, grid_betas = c.search_grid()
        x = F.normalize(val_features.to(self.text_weights.device).float(), dim=-1)
        (alpha, beta), scores = select_tip_params_with_scores(
            x,
            val_labels.to(x.device),
            self.cache_keys,
            self.cache_labels,
            c.num_labels,
            self.zero_shot_logits(x),
            betas=grid_betas if betas is None else betas,
            alphas=grid_alphas if alphas is None else alphas,
        )
        c.alpha, c.beta = alpha, beta
        best = sorted(scores.items(), key=lambda item: -item[1])[:10]  # the grid has 4,000 points: keep the best 10
        c.param_scores = {f"{a:.4g},{b:.4g}": s for (a, b), s in best}
        return alpha, beta

    def card_vars(self) -> dict:
        c = self.config
        return dict(
            num_classes=c.num_labels,
            shots=c.shots,
            views=c.views,
            view_scale=c.view_scale,
            view_flip=c.views_flipped,
            seed=c.seed,
            alpha=c.alpha,
            beta=c.beta,
            train_keys=c.train_keys,
            cache_size=c.cache_size,
            logit_scale=c.logit_scale,
            templates=c.templates or ["a photo of a {}."],
            epochs=c.epochs,
            preset=c.preset,
            search_scale=c.search_scale,
            search_step=c.search_step,
            key_averaging=c.key_averaging,
        )


register_auto(TipAdapterConfig, TipAdapterForImageClassification)
