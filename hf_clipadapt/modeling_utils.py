"""The contract every model in hf_clipadapt shares (see CONTRIBUTING.md).

Two levels, in the manner of transformers' `PreTrainedModel` and peft's adapters:

* `AdaptedPreTrainedModel`, for every model of the package. `from_pretrained`
  refuses a folder that does not exist, a folder of another model type and a
  corrupt weights file, each with an error that says what to do. `save_pretrained`
  is atomic and writes a model card. Measured results live in one place,
  `config.eval_results` (written by `record_result`), which the card reads.
* `CLIPAdaptedModel`, for a small fitted or trained part around a frozen CLIP
  (`CLIPBackbone`). Like a peft adapter, its checkpoint holds only what was
  fitted or trained (persistent buffers, and parameters that require grad) plus a
  reference to the CLIP, never a frozen tower; `from_pretrained` re-attaches that
  CLIP, or takes `backbone=`. A subclass implements `logits_from_features` and
  `fit`; construction (`from_clip`), `forward`, `for_classes`, saving, loading, the
  card and the Auto registration (`register_auto`) come from here, and `evaluate`,
  result recording and dataset encoding from `hf_clipadapt.evaluation`.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from .auto import register_auto  # noqa: F401  (re-exported: every modelling module calls it)
from .checkpoints import (
    HUB_KWARGS,
    alias_of,
    check_finite_weights,
    check_loading_info,
    check_model_type,
    check_pretrained_path,
    load_safetensors,
    weights_file,
)
from .clip.backbone import CLIPBackbone, check_classnames
from .configuration_utils import DEFAULT_SEED, AdaptedConfig, CLIPAdaptedConfig
from .evaluation import CLIPEvaluationMixin, EvaluationMixin
from .hub import ModelCardMixin, build_model_card, card_datasets
from .loading import (
    _check_backbone_width,
    _check_saved_embed_dim,
    _check_tensor_input,
    _load_base_clip,
    _split_load_kwargs,
    as_backbone,
    seeded_init,
)


class AdaptedPreTrainedModel(EvaluationMixin, ModelCardMixin, PreTrainedModel):
    """Base of every model in the package: checked loading, atomic saving, one card.

    Subclasses set `config_class`, `card_template` (a file in `model_cards/`) and
    `card_tags`, and may add template variables through `card_vars()`.
    """

    config_class = AdaptedConfig
    card_template = "default.md"
    card_tags: tuple[str, ...] = ()
    card_pipeline_tag: str | None = "image-classification"
    # forward returns a mean loss: Trainer must not rescale it by the token count
    accepts_loss_kwargs = False

    # A fitted head may hold only buffers (GDA without its CLIP): transformers reads
    # dtype and device from the first parameter, so fall back to the buffers.
    @property
    def dtype(self) -> torch.dtype:
        floats = (t for t in itertools.chain(self.parameters(), self.buffers()) if t.is_floating_point())
        return next(floats, torch.empty(0)).dtype

    @property
    def device(self) -> torch.device:
        return next(itertools.chain(self.parameters(), self.buffers()), torch.empty(0)).device

    # ------------------------------------------------------------------ loading
    @classmethod
    def _check_checkpoint(cls, name_or_path, kwargs: dict) -> str:
        """Resolve and vet a checkpoint before anything is built (see `hf_clipadapt.checkpoints`)."""
        path = check_pretrained_path(name_or_path)
        hub = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        check_model_type(path, cls.config_class.model_type, cls.__name__, **hub)
        check_finite_weights(weights_file(path, **hub))
        return path

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loading, vetted: the folder, its type and its weights are checked
        first (`_check_checkpoint`), and a load that leaves tensors missing, unexpected or
        mismatched is refused, naming the file and the tensors."""
        path = cls._check_checkpoint(pretrained_model_name_or_path, kwargs)
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(path, *args, output_loading_info=True, **kwargs)
        hub = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        check_loading_info(weights_file(path, **hub), info, cls.__name__)
        return (model, info) if wants_info else model

    # ------------------------------------------------------------------ saving
    def saved_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds. Here: everything (every part of the model is trained);
        `CLIPAdaptedModel` leaves the frozen CLIP out."""
        return self.state_dict()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Atomic save of config, `saved_state_dict()`, extra files and the model card."""
        kwargs.setdefault("state_dict", self.saved_state_dict())
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _warn_if_unfitted(self) -> None:
        # A model in training mode is being fitted right now: only predictions warn.
        if self.config.is_fitted is False and not self.training and not getattr(self, "_warned_unfitted", False):
            self._warned_unfitted = True
            warnings.warn(
                f"this {type(self).__name__} has not been fitted yet (call fit first); its outputs are "
                f"{self._unfitted_behaviour}.",
                stacklevel=3,
            )

    _unfitted_behaviour = "those of an untrained model"

    # ------------------------------------------------------------------ card
    def card_vars(self) -> dict:
        """Method-specific variables for the card template."""
        return {}

    def card_base_model(self) -> str | None:
        return getattr(self.config, "base_model_name_or_path", None)

    def create_model_card(self, **kwargs):
        c = self.config
        return build_model_card(
            template=self.card_template,
            model_name=kwargs.pop("model_name", None) or f"{c.model_type}-{c.dataset_name or 'model'}",
            base_model=kwargs.pop("base_model", None) or self.card_base_model(),
            datasets=card_datasets(c),
            eval_results=c.eval_results,
            tags=list(self.card_tags),
            pipeline_tag=self.card_pipeline_tag,
            **{**self.card_vars(), **kwargs},
        )


class CLIPAdaptedModel(CLIPEvaluationMixin, AdaptedPreTrainedModel):
    """A small fitted or trained part around a frozen CLIP: the base of GDA, CoOp,
    CLIP-Adapter, Tip-Adapter, SHIP, UEO and CraFT.

    Subclass contract: build the parts in `__init__(config, backbone=None)` after
    `super().__init__(config, backbone)`, end with `self.post_init()`; implement
    `logits_from_features(features)` on L2-normalised image features [B, D]; set up
    anything that needs the CLIP in `_init_from_clip(class_names, templates)`.
    """

    config_class = CLIPAdaptedConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _unfitted_behaviour = "the untouched starting point (zero-shot CLIP where the model has a text classifier)"

    def __init__(self, config: CLIPAdaptedConfig, backbone: CLIPBackbone | None = None):
        super().__init__(config)
        if backbone is None and config.save_backbone:
            # The CLIP weights come from this checkpoint: build the empty module to receive them.
            backbone = CLIPBackbone(AutoModel.from_config(AutoConfig.for_model(**config.backbone_config)))
        if backbone is not None:
            _check_backbone_width(backbone, config, type(self).__name__)
        self.backbone = backbone

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_clip(
        cls,
        backbone: CLIPBackbone | str,
        class_names: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        *,
        preset: str | None = None,
        init_seed: int = DEFAULT_SEED,
        **config_kwargs,
    ):
        """A fresh model on `backbone` (a `CLIPBackbone`, a checkpoint name or an alias
        such as "testbed") for `class_names`, prompted with `templates` (default
        "a photo of a {}."; see `hf_clipadapt.clip.get_templates`). The zero-shot logits
        use the CLIP's own temperature unless `logit_scale=` is given. `preset`: a named
        set of the method's official per-dataset settings (`config_class.PRESETS`, e.g.
        "eurosat"); explicit keyword arguments override it. The randomly initialised
        parts (a VAE, an adapter, a random context) are drawn from `init_seed` on a
        private generator state, so the same call gives the same model in every process
        and the global RNG is left as it was."""
        if preset is not None:
            config_kwargs = {**cls.config_class.preset_settings(preset), **config_kwargs}
        backbone = as_backbone(backbone)
        if class_names is not None:
            class_names = check_classnames(class_names)  # a str, "" or two names with one prompt are refused
            config_kwargs.setdefault("id2label", dict(enumerate(class_names)))
            config_kwargs.setdefault("label2id", {c: i for i, c in enumerate(class_names)})
        elif "num_labels" not in config_kwargs and "id2label" not in config_kwargs:
            raise ValueError(
                "pass class_names (for the text side), or num_labels= for a model without text classifier"
            )
        config_kwargs.setdefault("logit_scale", backbone.logit_scale)
        config = cls.config_class(
            base_model_name_or_path=alias_of(backbone.name_or_path) or backbone.name_or_path,
            embed_dim=backbone.embed_dim,
            templates=list(templates) if templates else None,
            is_fitted=False,
            **config_kwargs,
        )
        with seeded_init(init_seed):
            model = cls(config, backbone=backbone).to(backbone.device)
            model._init_from_clip(class_names, list(templates) if templates else None)
        return model.eval()  # as from_pretrained returns it; fit switches to training mode itself

    def create_model_card(self, **kwargs):
        c = self.config  # the card says which classes never had an image (SHIP's label-only ones)
        kwargs.setdefault("synthesized_classes", c.synthesized_classes)
        kwargs.setdefault("synthesized_per_class", c.synthesized_per_class)
        return super().create_model_card(**kwargs)

    # ------------------------------------------------------------------ other classes
    # Saved tensors (prefixes) that belong to the current classes and do not carry over
    # to other class names; subclasses add theirs (a cache, class-specific contexts).
    class_specific_state: tuple[str, ...] = ("text_weights",)

    def for_classes(self, class_names: Sequence[str]):
        """This model on other class names (e.g. the new classes of base-to-new): what was
        trained and is class-agnostic (a context, an adapter) carries over, the text
        classifier is built for `class_names`, and class-specific state is dropped. This is
        how CoOp-style methods are scored on classes they never saw (Zhou et al., CVPR 2022)."""
        self.require_backbone("building a classifier for other classes")
        names = check_classnames(class_names)
        config = copy.deepcopy(self.config)
        config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
        config.eval_results, config.synthesized_classes, config.synthesized_per_class = [], None, None
        self.prepare_config_for_classes(config)
        with seeded_init(DEFAULT_SEED):
            model = type(self)(config, backbone=self.backbone).to(self.backbone.device)
            model._init_from_clip(names, config.templates)
        state = {k: v for k, v in self.saved_state_dict().items() if not k.startswith(self.class_specific_state)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise RuntimeError(
                f"{type(self).__name__}.for_classes: tensors {unexpected} have no place in the new model"
            )
        return model.eval()

    def prepare_config_for_classes(self, config) -> None:
        """Adjust a copied config for other classes (e.g. empty a cache); default: nothing."""

    def register_text_classifier(self) -> None:
        """A `text_weights` buffer [K, D] for CLIP's zero-shot classifier, which `from_clip`
        fills from the class names and templates (models that score with it call this)."""
        self.register_buffer("text_weights", torch.zeros(self.config.num_labels, self.config.embed_dim))

    @torch.no_grad()
    def _init_from_clip(self, class_names: list[str] | None, templates: list[str] | None) -> None:
        """Set up what needs the CLIP. Default: fill the zero-shot text classifier, if any."""
        if class_names is not None and "text_weights" in self._buffers:
            self.text_weights.copy_(self.backbone.zero_shot_classifier(class_names, templates).float())

    @torch.no_grad()
    def _init_weights(self, module):
        # A fresh text classifier is empty until `from_clip` fills it.
        if module is self and "text_weights" in self._buffers:
            self.text_weights.zero_()

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *model_args,
        backbone: CLIPBackbone | None = None,
        load_backbone: bool = True,
        config=None,
        **kwargs,
    ):
        """Load the saved part, then attach the CLIP: `backbone=` if given, the CLIP stored
        in the checkpoint (`include_backbone=True` saves), or `config.base_model_name_or_path`.
        `load_backbone=False` skips the CLIP (models that need only image features)."""
        path = cls._check_checkpoint(pretrained_model_name_or_path, kwargs)
        hub = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
        clip_kwargs = _split_load_kwargs(cls, kwargs)
        if not isinstance(config, cls.config_class):
            _check_saved_embed_dim(cls, path, hub)
            config = cls.config_class.from_pretrained(path, **hub)
        state = load_safetensors(weights_file(path, **hub))
        if config.save_backbone:
            model = cls(config)
            model.backbone.attach_processors(path)
        else:
            if backbone is None and load_backbone:
                backbone = _load_base_clip(config.base_model_name_or_path, cls.__name__, clip_kwargs)
            model = cls(config, backbone=backbone)
        model._load_saved_state(state, path)
        return model.eval()

    def _load_saved_state(self, state: dict, path) -> None:
        expected = set(self.saved_state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - set(self.state_dict()))
        if missing or unexpected:
            raise OSError(
                f"the weights in {path} do not match {type(self).__name__}: missing {missing[:8]}, unexpected "
                f"{unexpected[:8]}. The checkpoint was saved by another version or class; re-save it."
            )
        for key, value in state.items():
            if key in expected and value.shape != self.saved_state_dict()[key].shape:
                raise OSError(
                    f"{path}: {key} has shape {tuple(value.shape)}, this model expects "
                    f"{tuple(self.saved_state_dict()[key].shape)}"
                )
        self.load_state_dict(state, strict=False)

    # ------------------------------------------------------------------ saving
    def saved_state_dict(self, include_backbone: bool | None = None) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: every persistent buffer and parameter, except the
        frozen CLIP's own tensors (found by identity, so a text tower shared with a
        prompt learner is left out too). A CLIP tensor that requires grad (UEO's
        LayerNorm affines) is kept. `include_backbone=True` keeps everything."""
        include = self.config.save_backbone if include_backbone is None else include_backbone
        state = self.state_dict(keep_vars=True)
        frozen = set()
        if not include and self.backbone is not None:
            frozen = {id(t) for t in self.backbone.parameters()} | {id(t) for t in self.backbone.buffers()}
        out, seen = {}, set()
        for key, tensor in state.items():
            if (id(tensor) in frozen and not tensor.requires_grad) or id(tensor) in seen:
                continue  # a frozen CLIP tensor, or another name of a tensor already kept
            seen.add(id(tensor))
            out[key] = tensor.detach()
        return out

    def save_pretrained(self, save_directory, *args, include_backbone: bool | None = None, **kwargs):
        """Save the fitted part (kilobytes; the CLIP is referenced by name), or with
        `include_backbone=True` the CLIP weights too. The image processor and tokenizer
        are saved beside it, so `pipeline(model=<folder>)` works."""
        include = self.config.save_backbone if include_backbone is None else include_backbone
        if include and self.backbone is None:
            raise ValueError("include_backbone=True but no CLIP backbone is attached")
        previous = (self.config.save_backbone, self.config.backbone_config)
        self.config.save_backbone = include
        self.config.backbone_config = self.backbone.model.config.to_dict() if include else None
        try:
            kwargs.setdefault("state_dict", self.saved_state_dict(include))
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.save_backbone, self.config.backbone_config = previous

    def _save_extra_files(self, directory: Path) -> None:
        if self.backbone is not None:
            for part in (self.backbone.image_processor, self.backbone.tokenizer):
                if part is not None:
                    part.save_pretrained(directory)

    # ------------------------------------------------------------------ forward
    def require_backbone(self, what: str = "this") -> CLIPBackbone:
        """The attached CLIP, or a clear error naming `what` needed it."""
        if self.backbone is None:
            raise ValueError(
                f"{what} needs the CLIP backbone, and this model has no CLIP backbone attached: build it with from_clip(...), or load "
                "it with from_pretrained(..., backbone=CLIPBackbone(...))."
            )
        return self.backbone

    def get_image_features(self, pixel_values=None, image_features=None) -> torch.Tensor:
        """L2-normalised image features [B, D] from pixel values (through the CLIP) or
        from precomputed CLIP image features."""
        if (pixel_values is None) == (image_features is None):
            raise ValueError("pass exactly one of pixel_values or image_features")
        _check_tensor_input(pixel_values=pixel_values, image_features=image_features)
        if image_features is None:
            image_features = self.require_backbone("encoding pixel_values").encode_images(pixel_values)
        if image_features.ndim != 2 or image_features.shape[1] != self.config.embed_dim:
            raise ValueError(
                f"image_features must be [batch, {self.config.embed_dim}], got {tuple(image_features.shape)}"
            )
        if not torch.isfinite(image_features).all():
            raise ValueError("image_features contain NaN or inf; check the encoder and the images that produced them")
        return F.normalize(image_features.float(), dim=-1)

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement logits_from_features")

    def forward(self, pixel_values=None, image_features=None, labels=None, return_dict: bool | None = None, **kwargs):
        """`pixel_values` [B, 3, H, W] or precomputed `image_features` [B, D] ->
        `ImageClassifierOutput` (logits [B, K]; loss when `labels` are given)."""
        self._warn_if_unfitted()
        logits = self.logits_from_features(self.get_image_features(pixel_values, image_features))
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        out = ImageClassifierOutput(loss=loss, logits=logits)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return out if return_dict else out.to_tuple()

    # ------------------------------------------------------------------ data
    def augmented_views(self, seed: int, scale=(0.5, 1.0), flip: bool | None = True, dataset=None):
        """The paper-style training views (random resized crop of area `scale`, optional
        flip) at the CLIP's input size, seeded per (image, view). `flip=None`: flip unless
        `dataset` is registered without flips (`data.register_dataset_augmentation`)."""
        from .data import AugmentedViews, dataset_augmentation

        backbone = self.require_backbone("augmenting images")
        if flip is None:
            flip = dataset_augmentation(dataset).get("view_flip", True)
        return AugmentedViews(backbone.preprocess, size=backbone.crop_size, scale=tuple(scale), flip=flip, seed=seed)

    def training_views(self, seed: int, dataset):
        """The augmented views `fit` encodes `dataset` under: `config.view_scale`, and
        `config.view_flip` (None: the dataset's registered choice, else flips); what was
        used is recorded in `config.views_flipped`."""
        views = self.augmented_views(seed, self.config.view_scale, self.config.view_flip, dataset)
        self.config.views_flipped = views.flip
        return views
