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
  `fit`; construction (`from_clip`), `forward`, `evaluate`, saving, loading, the
  card and the Auto registration (`register_auto`) come from here.
"""

from __future__ import annotations

import contextlib
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
    check_model_type,
    check_finite_weights,
    check_loading_info,
    check_pretrained_path,
    load_safetensors,
    weights_file,
)
from .clip.backbone import CLIPBackbone, check_classnames
from .configuration_utils import AdaptedConfig, CLIPAdaptedConfig
from .hub import ModelCardMixin, build_model_card

# One default seed for every `fit`, sampler and example in the package.
DEFAULT_SEED = 0


@contextlib.contextmanager
def seeded_init(seed: int):
    """Run a model's construction with torch's RNG seeded to `seed`, then restore the
    global RNG state: a model's random initial parameters are then the same in every
    process (they used to come from the unseeded global RNG, so the same `fit(seed=...)`
    gave different results in two processes)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# Keyword arguments transformers' Auto classes and `pipeline` pass to `from_pretrained`
# that a CLIP-adapted model reads (dtype, attention) or safely ignores (bookkeeping).
_CLIP_LOAD_KWARGS = ("dtype", "torch_dtype", "attn_implementation")
_IGNORED_LOAD_KWARGS = (
    "trust_remote_code", "device_map", "use_safetensors", "weights_only", "output_loading_info", "adapter_kwargs",
    "adapter_name", "low_cpu_mem_usage", "code_revision",
)  # fmt: skip


class AdaptedPreTrainedModel(ModelCardMixin, PreTrainedModel):
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

    # ------------------------------------------------------------------ results
    def record_result(self, dataset_name: str, metric_type: str, value: float, *, split: str = "test", **extra) -> None:
        """Store one measured result in `config.eval_results` (replacing an earlier one
        for the same dataset, split and metric); the model card lists them."""
        key = (dataset_name, split, metric_type)
        kept = [r for r in self.config.eval_results if (r["dataset_name"], r.get("dataset_split"), r["metric_type"]) != key]
        entry = {"dataset_name": dataset_name, "dataset_split": split, "metric_type": metric_type, "metric_value": float(value)}
        self.config.eval_results = kept + [{**entry, **extra}]

    def record_results(self, dataset_name: str, metrics: dict, *, split: str = "test") -> None:
        """`record_result` for every scalar in `metrics` (e.g. what `evaluate` returned)."""
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.record_result(dataset_name, name, value, split=split)

    @property
    def eval_results(self) -> list[dict]:
        return self.config.eval_results

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


def card_datasets(config) -> list[str] | None:
    """The datasets a card names: the training data `fit` recorded, else the datasets
    its results were recorded on (`evaluate(record_as=...)`), else None."""
    if config.dataset_name:
        return [config.dataset_name]
    evaluated = [r.get("dataset_name") for r in (config.eval_results or []) if r.get("dataset_name")]
    return list(dict.fromkeys(evaluated)) or None


def dataset_name_of(dataset) -> str | None:
    """A `datasets.Dataset`'s own name (`info.dataset_name`, else its builder's), or None."""
    info = getattr(dataset, "info", None)
    return getattr(info, "dataset_name", None) or getattr(info, "builder_name", None) or None


class CLIPAdaptedModel(AdaptedPreTrainedModel):
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
    def from_clip(cls, backbone: CLIPBackbone | str, class_names: Sequence[str] | None = None,
                  templates: Sequence[str] | None = None, *, preset: str | None = None,
                  init_seed: int = DEFAULT_SEED, **config_kwargs):  # fmt: skip
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
            raise ValueError("pass class_names (for the text side), or num_labels= for a model without text classifier")
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
            raise RuntimeError(f"{type(self).__name__}.for_classes: tensors {unexpected} have no place in the new model")
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
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, backbone: CLIPBackbone | None = None,
                        load_backbone: bool = True, config=None, **kwargs):  # fmt: skip
        """Load the saved part, then attach the CLIP: `backbone=` if given, the CLIP stored
        in the checkpoint (`include_backbone=True` saves), or `config.base_model_name_or_path`.
        `load_backbone=False` skips the CLIP (models that need only image features)."""
        path = cls._check_checkpoint(pretrained_model_name_or_path, kwargs)
        hub = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
        clip_kwargs = _split_load_kwargs(cls, kwargs)
        if not isinstance(config, cls.config_class):
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
                raise OSError(f"{path}: {key} has shape {tuple(value.shape)}, this model expects "
                              f"{tuple(self.saved_state_dict()[key].shape)}")  # fmt: skip
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
        if image_features is None:
            image_features = self.require_backbone("encoding pixel_values").encode_images(pixel_values)
        if image_features.ndim != 2 or image_features.shape[1] != self.config.embed_dim:
            raise ValueError(f"image_features must be [batch, {self.config.embed_dim}], got {tuple(image_features.shape)}")
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
    def encode_dataset(self, dataset, transform=None, *, views: int = 1, split: str = "test", desc: str | None = None,
                       batch_size: int = 64, accelerator=None, cache_dir=None, image_column: str = "image",
                       label_column: str | None = "label"):  # fmt: skip
        """CLIP image features (and labels) of a `datasets.Dataset`, batched, gathered
        across processes and cached on disk under `cache_dir` (keyed by the CLIP's
        weights, the crop size, the transform and the data)."""
        from .features import extract_features

        backbone = self.require_backbone("encoding a dataset")
        transform = transform if transform is not None else backbone.image_transform()
        return extract_features(
            backbone.encode_images, dataset, transform, views=views, split=split, batch_size=batch_size,
            accelerator=accelerator, image_column=image_column, label_column=label_column, cache_dir=cache_dir,
            cache_name=f"{backbone.cache_name}@{backbone.crop_size}" if cache_dir else None,
            desc=desc or f"{self.config.model_type} {split}",
        )  # fmt: skip

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

    def check_dataset_labels(self, dataset, label_column: str = "label") -> None:
        """The dataset's class names (a `ClassLabel` column) must be this model's labels, in order."""
        check_class_names(dataset, label_column, self.class_names())

    def adopt_dataset_labels(self, dataset, label_column: str, *, subset: bool = False) -> torch.Tensor:
        """A model built from `num_labels` alone (generic LABEL_i names, no text classifier)
        takes its label names from the data's `ClassLabel`; otherwise the data's classes
        must be the model's (with `subset=True`: some of the model's, matched by name).
        Returns `dataset_label_map`: the data's label ids as this model's."""
        feature = _class_label(dataset, label_column)
        ours = self.class_names()
        generic = ours == [f"LABEL_{i}" for i in range(len(ours))]
        if feature is not None and generic and feature.num_classes == len(ours):
            self.config.id2label = dict(enumerate(feature.names))
            self.config.label2id = {n: i for i, n in enumerate(feature.names)}
        if not subset:
            self.check_dataset_labels(dataset, label_column)
        return self.dataset_label_map(dataset, label_column)

    def class_names(self) -> list[str]:
        return [self.config.id2label[i] for i in range(self.config.num_labels)]

    def dataset_label_map(self, dataset, label_column: str = "label") -> torch.Tensor:
        """[C_data] tensor: the dataset's label ids → this model's, matched by class name
        (the identity when the data carry no `ClassLabel`). Refuses names the model lacks."""
        feature = _class_label(dataset, label_column)
        if feature is None:
            return torch.arange(self.config.num_labels)
        ours = {n: i for i, n in enumerate(self.class_names())}
        unknown = [n for n in feature.names if n not in ours]
        if unknown:
            raise ValueError(f"{len(unknown)} of the dataset's classes are not among this model's "
                             f"{len(ours)} labels, e.g. {unknown[:5]}; build the model with class names that "
                             "include every class of the training data.")  # fmt: skip
        return torch.tensor([ours[n] for n in feature.names], dtype=torch.long)

    @torch.no_grad()
    def predict_features(self, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Logits for precomputed image features, in chunks, on the CPU."""
        chunks = [self.logits_from_features(F.normalize(features[i : i + batch_size].to(self.device).float(), dim=-1)).cpu()
                  for i in range(0, features.shape[0], batch_size)]  # fmt: skip
        return torch.cat(chunks) if chunks else torch.empty(0, self.config.num_labels)

    @torch.no_grad()
    def evaluate(self, dataset, *, record_as: str | None = None, split: str = "test", batch_size: int = 64,
                 accelerator=None, cache_dir=None, image_column: str = "image", label_column: str = "label") -> dict:  # fmt: skip
        """Top-1 and mean per-class accuracy (%) on a labelled dataset. A dataset whose
        classes are some of the model's (matched by name, e.g. the new classes of a
        base-to-new model) is scored within its own label space, as the base-to-new
        protocol does (Zhou et al., CVPR 2022). With `record_as="<dataset name>"` the
        results go to `config.eval_results`, and so onto the model card."""
        from .metrics import accuracy, per_class_accuracy

        columns = self.dataset_label_map(dataset, label_column)
        was_training = self.training
        self.eval()
        feats, labels = self.encode_dataset(dataset, split=split, batch_size=batch_size, accelerator=accelerator,
                                            cache_dir=cache_dir, image_column=image_column, label_column=label_column)  # fmt: skip
        self.train(was_training)
        logits = self.predict_features(feats)[:, columns]
        result = {"accuracy": accuracy(logits, labels), "per_class_accuracy": per_class_accuracy(logits, labels)}
        if record_as:
            self.record_results(record_as, result, split=split)
        return result


# ---------------------------------------------------------------------- helpers


def as_backbone(backbone) -> CLIPBackbone:
    """A `CLIPBackbone` from itself or from a checkpoint name / alias."""
    if isinstance(backbone, (str, Path)):
        backbone = CLIPBackbone.from_pretrained(str(backbone))
    if not isinstance(backbone, CLIPBackbone):
        raise TypeError(f"backbone must be a CLIPBackbone or a checkpoint name, got {type(backbone).__name__}")
    return backbone


def check_class_names(dataset, label_column: str, expected: list[str]) -> None:
    """Refuse a dataset whose `ClassLabel` names differ from `expected` (same order)."""
    feature = _class_label(dataset, label_column)
    if feature is None or list(feature.names) == list(expected):
        return
    diff = [(i, a, b) for i, (a, b) in enumerate(zip(feature.names, expected)) if a != b][:5]
    raise ValueError(
        f"the dataset's class names do not match this model's labels: the dataset has {feature.num_classes} "
        f"classes, the model {len(expected)}; first differences (id, dataset, model): {diff}. Build the model "
        "with class_names=hf_clipadapt.data.class_names(dataset)."
    )


def _class_label(dataset, label_column: str):
    """The dataset's `ClassLabel` feature for `label_column`, or None."""
    from datasets import ClassLabel

    feature = dataset.features.get(label_column) if hasattr(dataset, "features") else None
    return feature if isinstance(feature, ClassLabel) else None


def _check_backbone_width(backbone: CLIPBackbone, config, class_name: str) -> None:
    if backbone.embed_dim != config.embed_dim:
        raise ValueError(
            f"this {class_name} was built for a CLIP with embedding width {config.embed_dim}, but the given CLIP "
            f"({backbone.name_or_path}) has width {backbone.embed_dim}. Attach the CLIP it was fitted on "
            f"({config.base_model_name_or_path!r})."
        )


def _split_load_kwargs(cls, kwargs: dict) -> dict:
    """Keep the kwargs that go to the CLIP, drop transformers' bookkeeping, refuse the rest."""
    clip_kwargs = {k: kwargs.pop(k) for k in _CLIP_LOAD_KWARGS if k in kwargs}
    if "torch_dtype" in clip_kwargs:
        clip_kwargs["dtype"] = clip_kwargs.pop("torch_dtype")
    if clip_kwargs.get("dtype") == "auto":
        clip_kwargs.pop("dtype")
    unknown = [k for k in kwargs if not k.startswith("_") and k not in _IGNORED_LOAD_KWARGS]
    if unknown:
        raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword arguments {unknown}")
    return clip_kwargs


def _load_base_clip(ref: str | None, class_name: str, clip_kwargs: dict) -> CLIPBackbone:
    if not ref:
        raise OSError(f"this {class_name} names no base CLIP; pass backbone=CLIPBackbone(...)")
    try:
        return CLIPBackbone.from_pretrained(ref, **clip_kwargs)
    except (OSError, ValueError) as e:
        raise OSError(
            f"could not load the base CLIP {ref!r} this {class_name} refers to ({e}). Pass "
            "backbone=CLIPBackbone(...), or load_backbone=False to use forward(image_features=...) only."
        ) from e
