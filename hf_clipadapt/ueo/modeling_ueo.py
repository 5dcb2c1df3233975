"""`UEOForImageClassification`: UEO (Liang et al., "Realistic Unsupervised CLIP Fine-tuning
with Universal Entropy Optimization", ICML 2024) as a transformers model.

Trained, and saved: the soft context of "[v1 … v4] {class}." (initialised from "a photo
of a", the shared `hf_clipadapt.clip.PromptLearner`) and the weight and bias of every
LayerNorm in CLIP's vision tower. Everything else is the frozen base CLIP, referenced
by name. UEO here needs a ViT CLIP (transformers' `CLIPModel` has no ResNet tower); on a
ViT these LayerNorms are the parameters the official rule ("bn" or "ln" in the name,
tim-learn/UEO demo.py lines 444-448) trains, while its default RN50 backbone would train
BatchNorm affines instead (see `fit`). `forward` returns logits over the K known classes and an OOD score (higher =
more likely known); `fit` trains on unlabelled images (see `hf_clipadapt.ueo.training`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import ImageClassifierOutput

from ..clip import PromptLearner
from ..configuration_utils import DEFAULT_SEED
from ..modeling_utils import CLIPAdaptedModel, register_auto
from .configuration_ueo import UEOConfig
from .functional import ood_score
from .vision_norms import vision_layernorm_parameter_names, vision_layernorms, with_private_vision_layernorms


@dataclass
class UEOOutput(ImageClassifierOutput):
    """`ImageClassifierOutput` plus `ood_score` [B]: confidence that the image shows one of
    the known classes (max softmax probability of the unscaled cosines by default, as the
    official code; see `UEOConfig.ood_score`)."""

    ood_score: torch.FloatTensor | None = None


class UEOForImageClassification(CLIPAdaptedModel):
    """logits = logit_scale·x·Tᵀ, x from the CLIP image encoder with adapted LayerNorms,
    T the text features of the prompted known-class names."""

    config_class = UEOConfig
    card_template = "ueo.md"
    card_tags = ("ueo", "unsupervised", "open-set", "ood-detection", "prompt-learning", "clip")
    _unfitted_behaviour = 'zero-shot CLIP prompted with "a photo of a {class}."'

    def __init__(self, config: UEOConfig, backbone=None):
        super().__init__(config, backbone)
        self.require_backbone("UEO (it adapts the CLIP image encoder and prompts its text tower)")
        # A private copy of the vision LayerNorms: training them must not change a CLIP shared with other models.
        self.backbone = with_private_vision_layernorms(self.backbone)
        names = [config.id2label[i] for i in range(config.num_labels)]
        self.prompt_learner = PromptLearner(
            self.backbone, names, n_ctx=config.n_ctx, ctx_init=config.ctx_init, suffix=config.suffix
        )
        config.n_ctx = self.prompt_learner.n_ctx
        self.post_init()

    def _init_weights(self, module):
        # The context comes from the words of ctx_init; the LayerNorms from the pretrained CLIP.
        pass

    def trainable_parameter_names(self) -> list[str]:
        """By name: the context, then the vision LayerNorm weights and biases."""
        norms = vision_layernorm_parameter_names("backbone.model.vision_model", self.backbone.model)
        return ["prompt_learner.ctx", *norms]

    def layernorm_parameters(self) -> list[torch.nn.Parameter]:
        params = dict(self.named_parameters())
        return [params[n] for n in self.trainable_parameter_names()[1:]]

    def class_text_features(self) -> torch.Tensor:
        """[K, D] normalised text features of the prompted class names."""
        return self.prompt_learner()

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.config.logit_scale * features @ self.class_text_features().float().T

    def forward(self, pixel_values=None, image_features=None, labels=None, return_dict: bool | None = None, **kwargs):
        """`pixel_values` [B, 3, H, W] (through the adapted image encoder) or `image_features`
        [B, D] already encoded by it -> `UEOOutput` (logits [B, K], ood_score [B]; a
        cross-entropy loss when `labels` are given)."""
        self._warn_if_unfitted()
        logits = self.logits_from_features(self.get_image_features(pixel_values, image_features))
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        out = UEOOutput(loss=loss, logits=logits, ood_score=self.ood_score_of(logits.detach()))
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return out if return_dict else out.to_tuple()

    def ood_score_of(self, logits: torch.Tensor) -> torch.Tensor:
        """[B] the configured OOD score (`config.ood_score`) of scaled logits [B, K]."""
        return ood_score(logits, self.config.ood_score, self.config.logit_scale)

    # ------------------------------------------------------------------ loading
    def _load_saved_state(self, state: dict, path) -> None:
        super()._load_saved_state(state, path)
        self.forget_feature_cache()

    def forget_feature_cache(self) -> None:
        """The cached-feature key fingerprints the CLIP's weights once; ours change in training."""
        self.backbone._cache_name = None

    # ------------------------------------------------------------------ fit / evaluate
    def default_training_arguments(self) -> dict:
        """The official settings, `UEOTrainingArguments`' defaults (SGD lr 1e-4 for the context and
        the LayerNorms, cosine, batch 64, 50 epochs, no gradient clipping, trade 1)."""
        from .arguments import UEOTrainingArguments

        return UEOTrainingArguments.method_defaults()

    def fit(
        self,
        train,
        validation=None,
        *,
        seed: int = DEFAULT_SEED,
        args=None,
        resume_from_checkpoint=None,
        batch_size: int = 64,
        accelerator=None,
        image_column: str = "image",
        label_column: str = "label",
        callbacks=None,
        dataset_name: str | None = None,
        trainer_class=None,
    ):
        """Train on unlabelled images (a `datasets.Dataset` with an image column); returns self.

        The weights w are the initial model's max softmax probabilities, computed in one
        pass before training and kept fixed (saved beside each checkpoint, so a resumed run
        uses the same ones). `args`: a `UEOTrainingArguments` or a dict of overrides of its
        defaults (the official code's: SGD lr 1e-4 for both groups, cosine, batch 64, 50 epochs,
        no gradient clipping), which also holds the method's switches: `trade`, `no_weight=True`
        (information maximisation, uniform w), `oracle=True` (the official ablation, w =
        1[known] + 1e-3 from the label column: the only switch that reads labels; otherwise a
        label column is ignored with a warning), `augment`, `weights_from` ("cosine", as the
        official code: softmax of the unscaled cosine similarities, nearly uniform weights; or
        "logits") and `log_epsilon` (the ε of −Σ p·log(p + ε), official 1e-5; 0 = exact).
        `validation` is not used: UEO selects no model. `batch_size` is for the weight pass.

        Backbone: HF's `CLIPModel` has only ViT image towers, so UEO here needs a ViT CLIP. It
        trains the affine weight and bias of every vision LayerNorm (pre_layrnorm, layer_norm1/2
        of each block, post_layernorm): the same set the official rule ("bn" or "ln" in the
        parameter name, tim-learn/UEO demo.py lines 444-448) selects on an OpenAI ViT (ln_pre,
        ln_1, ln_2, ln_post). The official default backbone is RN50, where that rule trains the
        BatchNorm affines instead (not those of the `downsample.1` BatchNorms, whose names lack
        "bn"); that backbone cannot be loaded here.
        """
        from .training import fit_ueo

        options = dict(
            batch_size=batch_size,
            accelerator=accelerator,
            image_column=image_column,
            label_column=label_column,
            callbacks=callbacks,
            dataset_name=dataset_name,
            trainer_class=trainer_class,
        )
        return fit_ueo(
            self, train, validation, seed=seed, args=args, resume_from_checkpoint=resume_from_checkpoint, **options
        )

    extra_metrics = ("auroc_scaled", "h_score_scaled", "auroc_energy", "h_score_energy", "num_known", "num_unknown")

    def compute_metrics(
        self,
        dataset,
        *,
        split: str = "test",
        batch_size: int = 64,
        accelerator=None,
        cache_dir=None,
        image_column: str = "image",
        label_column: str = "label",
    ) -> dict:
        """Open-set scores (%) on a labelled dataset whose unknown images are labelled -1 (or
        carry a class name this model does not know): top-1 and mean per-class accuracy on
        the known images, AUROC of the OOD score (known = positive) and `h_score`, the
        harmonic mean of per-class accuracy and AUROC, as UEO reports them. Without unknown
        images, the accuracies only. `evaluate(..., record_as=)` writes them to `config.eval_results`."""
        from .evaluation import open_set_evaluation

        self.forget_feature_cache()
        return open_set_evaluation(
            self,
            dataset,
            split=split,
            batch_size=batch_size,
            accelerator=accelerator,
            cache_dir=cache_dir,
            image_column=image_column,
            label_column=label_column,
        )

    def card_vars(self) -> dict:
        c = self.config
        return dict(
            num_classes=c.num_labels,
            n_ctx=c.n_ctx,
            ctx_init=c.ctx_init,
            trade=c.trade,
            seed=c.seed,
            objective=c.objective or "not trained",
            ood_score=c.ood_score,
            logit_scale=c.logit_scale,
            num_train_images=c.num_train_images,
            num_layernorms=len(vision_layernorms(self.backbone.model)),
        )


register_auto(UEOConfig, UEOForImageClassification)
