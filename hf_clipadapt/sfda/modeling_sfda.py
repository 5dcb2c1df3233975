"""The SFDA classifier: an image backbone, a Linear→BatchNorm1d bottleneck, a linear head.

The backbone is any transformers image model whose output has `pooler_output`
(Swin by default, as in the GeoNet solution) or, through `TorchModuleBackbone`, a
plain `nn.Module` returning pooled features (EfficientNet-Lite0 in the benchmark).
Training lives in `training.py` (`fit`, `evaluate`); this module only computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from ..configuration_utils import DEFAULT_SEED
from ..loading import _check_tensor_input
from ..modeling_utils import AdaptedPreTrainedModel, register_auto
from . import functional as SF
from .configuration_sfda import SFDAConfig
from .torch_backbones import get_torch_backbone, torch_backbone_key


class TorchModuleBackbone(nn.Module):
    """Adapter that lets a plain `nn.Module` serve as the SFDA backbone.

    The wrapped module must map `pixel_values [B, 3, H, W]` to pooled features
    `[B, D]`. The adapter returns them as `BaseModelOutputWithPooling.pooler_output`,
    like a transformers backbone. Its weights are saved with the SFDA model under
    `backbone.module.*`; `from_pretrained` rebuilds it from the config's
    `torch_backbone`, a name of the registry in `torch_backbones` (never imported:
    see `register_torch_backbone`), and `torch_backbone_kwargs`, so the class must be
    constructible from JSON-serialisable kwargs (pass kwargs that skip loading
    pretrained weights; the checkpoint brings them).
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    @classmethod
    def from_registry(cls, name: str, kwargs: dict) -> TorchModuleBackbone:
        """Rebuild the backbone registered as `name` (see `torch_backbones`) from `kwargs`.
        The name is only looked up: nothing it spells is imported."""
        factory = get_torch_backbone(name)
        try:
            module = factory(**kwargs)
        except TypeError as e:
            raise ValueError(
                f"cannot rebuild the torch backbone {name!r} from torch_backbone_kwargs={kwargs}: {e}. "
                "Pass the JSON-serialisable kwargs that construct it (from_backbone(..., torch_backbone_kwargs=...))."
            ) from e
        if not isinstance(module, nn.Module):
            raise TypeError(f"the torch backbone {name!r} returned a {type(module).__name__}, not an nn.Module")
        return cls(module)

    def forward(self, pixel_values: torch.Tensor, **_) -> BaseModelOutputWithPooling:
        pooled = self.module(pixel_values)
        if not isinstance(pooled, torch.Tensor) or pooled.ndim != 2:
            shape = tuple(pooled.shape) if isinstance(pooled, torch.Tensor) else type(pooled).__name__
            raise ValueError(
                f"a torch backbone must return pooled features [batch, dim]; got {shape}. Pool it (e.g. .mean((2, 3)))"
            )
        return BaseModelOutputWithPooling(pooler_output=pooled)


def _feature_dim(backbone: nn.Module, config: SFDAConfig) -> int:
    if config.backbone_feature_dim is not None:
        return int(config.backbone_feature_dim)
    for value in (getattr(backbone, "num_features", None), getattr(config.backbone_config, "hidden_sizes", None)):
        if isinstance(value, int):
            return value
        if isinstance(value, (list, tuple)) and value:
            return int(value[-1])
    hidden = getattr(config.backbone_config, "hidden_size", None)
    if isinstance(hidden, int):
        return hidden
    raise ValueError("cannot infer the backbone's pooled feature width; set SFDAConfig(backbone_feature_dim=...)")


def _build_backbone(config: SFDAConfig) -> nn.Module:
    if config.torch_backbone is not None:
        return TorchModuleBackbone.from_registry(config.torch_backbone, config.torch_backbone_kwargs)
    if config.backbone_config is None:
        if config.backbone is None:
            raise ValueError("SFDAConfig needs a backbone: `backbone`, `backbone_config` or `torch_backbone`")
        config.backbone_config = AutoConfig.from_pretrained(config.backbone)
    return AutoModel.from_config(config.backbone_config)


@dataclass
class SFDAOutput(ModelOutput):
    """loss (when labels are given: label-smoothing CE), logits [B, C] over the source
    classes, features [B, bottleneck_dim] (the bottleneck output SHOT clusters)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None


class SFDAHead(nn.Module):
    """Bottleneck Linear(D→256) → BatchNorm1d(256), then the linear classifier."""

    def __init__(self, in_dim: int, bottleneck_dim: int, num_labels: int):
        super().__init__()
        self.bottleneck = nn.Linear(in_dim, bottleneck_dim)
        self.norm = nn.BatchNorm1d(bottleneck_dim)
        self.classifier = nn.Linear(bottleneck_dim, num_labels)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.norm(self.bottleneck(pooled))
        return self.classifier(features), features


class SFDAPreTrainedModel(AdaptedPreTrainedModel):
    config_class = SFDAConfig
    base_model_prefix = "backbone"
    card_template = "sfda.md"
    card_tags = ("domain-adaptation", "source-free")
    _unfitted_behaviour = "those of the pretrained backbone with an untrained head"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only our head: a transformers backbone dispatches to its own `_init_weights`,
        # a torch backbone keeps the initialisation its class gave it.
        if not isinstance(module, SFDAHead):
            return
        official = getattr(self.config, "head_init", "official") == "official"
        for linear in (module.bottleneck, module.classifier):
            if official:  # SHOT's init_weights (object/network.py), which GeoNet's network.py reuses
                init.xavier_normal_(linear.weight)
            else:
                init.normal_(linear.weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(linear.bias)
        if official:
            init.normal_(module.norm.weight, mean=1.0, std=0.02)
        else:
            init.ones_(module.norm.weight)
        init.zeros_(module.norm.bias)


class SFDAForImageClassification(SFDAPreTrainedModel):
    """Backbone + bottleneck + classifier for two-stage source-free adaptation.

    `forward(pixel_values)` returns logits and bottleneck features; `predict` adds
    the universal-DA unknown rule. Train with `fit(...)` (stage "source", then
    "target"), score with `evaluate(...)` (both in `hf_clipadapt.sfda.training`,
    also exposed as methods).
    """

    def __init__(self, config: SFDAConfig):
        super().__init__(config)
        if config.num_labels < 2:
            raise ValueError(f"SFDA needs at least 2 source classes, got num_labels={config.num_labels}")
        self.backbone = _build_backbone(config)
        self.head = SFDAHead(_feature_dim(self.backbone, config), config.bottleneck_dim, config.num_labels)
        # The backbone's image processor, saved beside the weights so that
        # pipeline("image-classification", model=<folder>) works (None for torch backbones).
        self.image_processor = None
        self.post_init()
        # post_init's weight initialisation did not reach the head of a fresh model (measured: it kept
        # PyTorch's default init), so the head is initialised here; not on the meta device, where
        # from_pretrained builds and then loads every tensor.
        if self.head.bottleneck.weight.device.type != "meta":
            self._init_weights(self.head)

    # -- construction -------------------------------------------------------------

    @classmethod
    def _from_torch_module(
        cls, backbone: nn.Module, feature_dim, torch_backbone, torch_backbone_kwargs, config_kwargs: dict
    ) -> SFDAForImageClassification:
        """`from_backbone` for a plain torch module (registered by name, never by import path)."""
        dim = feature_dim or getattr(backbone, "feature_dim", None)
        if dim is None:
            raise ValueError("a plain torch backbone needs feature_dim= (the width of its pooled output)")
        config = SFDAConfig(
            backbone=None,
            torch_backbone=_registry_name(backbone, torch_backbone),
            torch_backbone_kwargs=torch_backbone_kwargs or {},
            backbone_feature_dim=int(dim),
            **config_kwargs,
        )
        model = cls(config)
        model.backbone.module.load_state_dict(backbone.state_dict())
        return model

    @classmethod
    def from_backbone(
        cls,
        backbone: str | nn.Module,
        num_labels: int | None = None,
        *,
        id2label: dict | None = None,
        torch_backbone_kwargs: dict | None = None,
        torch_backbone: str | None = None,
        feature_dim: int | None = None,
        **config_kwargs,
    ) -> SFDAForImageClassification:
        """A fresh SFDA model around a pretrained backbone.

        `backbone` is a Hub id / path (loaded with `AutoModel.from_pretrained`), a
        transformers `PreTrainedModel`, or a plain `nn.Module` (pixel_values → [B, D]);
        for the last, `torch_backbone` is the registry name saved in the config (default:
        the name its class is registered under, else "module:QualName", registered now for
        this process; see `register_torch_backbone`), `torch_backbone_kwargs` are the
        kwargs that rebuild it at load time and `feature_dim` is D (read from
        `module.feature_dim` if present).
        """
        config_kwargs.setdefault("is_fitted", False)  # until fit: forward warns
        if id2label is not None:
            config_kwargs["id2label"] = {int(k): v for k, v in id2label.items()}
            config_kwargs.setdefault("label2id", {v: int(k) for k, v in id2label.items()})
        elif num_labels is not None:
            config_kwargs["num_labels"] = num_labels
        else:
            raise ValueError("from_backbone needs num_labels or id2label (the source classes)")
        processor = None
        if isinstance(backbone, str):
            from ..checkpoints import check_pretrained_path

            path = check_pretrained_path(backbone)  # first: an unreachable Hub fails fast here
            processor = _load_image_processor(backbone)
            backbone = AutoModel.from_pretrained(path)
        if isinstance(backbone, PreTrainedModel):
            config = SFDAConfig(
                backbone=backbone.config.name_or_path or None,
                backbone_config=backbone.config,
                backbone_feature_dim=feature_dim,
                **config_kwargs,
            )
            model = cls(config)
            model.backbone.load_state_dict(backbone.state_dict())
            # keep the pooling choice of the given backbone (e.g. add_pooling_layer=False)
            if getattr(backbone, "pooler", "missing") is None:
                model.backbone.pooler = None
            model.image_processor = processor
            return model
        if isinstance(backbone, nn.Module):
            return cls._from_torch_module(backbone, feature_dim, torch_backbone, torch_backbone_kwargs, config_kwargs)
        raise TypeError(
            f"backbone must be a model id, a PreTrainedModel or an nn.Module, got {type(backbone).__name__}"
        )

    # -- parameter groups -----------------------------------------------------------

    def backbone_parameters(self):
        return self.backbone.parameters()

    def head_parameters(self, include_classifier: bool = True):
        yield from self.head.bottleneck.parameters()
        yield from self.head.norm.parameters()
        if include_classifier:
            yield from self.head.classifier.parameters()

    # -- computation ----------------------------------------------------------------

    def pooled_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        _check_tensor_input(pixel_values=pixel_values)
        out = self.backbone(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise ValueError(
                f"the backbone ({type(self.backbone).__name__}) returned no pooled output (`pooler_output` is None). "
                "SFDA needs a backbone with a pooling layer (e.g. SwinModel(config, add_pooling_layer=True)) "
                "or a torch module returning [batch, dim] wrapped in TorchModuleBackbone."
            )
        return pooled.flatten(1) if pooled.ndim > 2 else pooled

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, return_dict: bool | None = None, **kwargs
    ) -> SFDAOutput:
        self._warn_if_unfitted()
        logits, features = self.head(self.pooled_features(pixel_values))
        loss = None
        if labels is not None:
            loss = SF.label_smoothing_cross_entropy(logits, labels, self.config.label_smoothing)
        out = SFDAOutput(loss=loss, logits=logits, features=features)
        return out if (return_dict if return_dict is not None else self.config.return_dict) else out.to_tuple()

    @property
    def is_universal(self) -> bool:
        """Universal mode: the "universal" strategy with an unknown threshold set."""
        return self.config.strategy == "universal" and self.config.unknown_threshold is not None

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """Predictions from logits; in universal mode, `config.unknown_index` where
        H(p)/log C > `config.unknown_threshold`."""
        threshold = self.config.unknown_threshold if self.is_universal else None
        return SF.predict_with_unknown(logits.float().softmax(-1), threshold, self.config.unknown_index)

    @torch.no_grad()
    def predict(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Class indices [B]; `config.unknown_index` (= num_labels) for rejected samples
        in universal mode. Always in eval mode (BatchNorm's running statistics), whatever mode
        the model is in; the mode is restored."""
        was_training = self.training
        try:
            return self.decide(self.eval()(pixel_values).logits)
        finally:
            self.train(was_training)

    # -- training API (implemented in training.py) ------------------------------------

    def fit(
        self,
        train,
        validation=None,
        *,
        seed: int = DEFAULT_SEED,
        args=None,
        resume_from_checkpoint=None,
        stage: str,
        transform,
        dataset_name: str | None = None,
        **kwargs,
    ) -> SFDAForImageClassification:
        """Train one stage in place; returns self, the stage's history, selected epoch and log in `history_`.

        Args:
            train: stage "source": labelled source data; stage "target": unlabelled target data.
            validation: labelled target data, read only with `model_selection="labelled_target_validation"`.
            seed: the run's seed (used unless `args` is an `SFDATrainingArguments`, whose own seed wins).
            args: an `SFDATrainingArguments`, or a dict of overrides of the stage's defaults.
            resume_from_checkpoint: a checkpoint folder of an interrupted run (True: the last one).
            stage: "source" or "target".
            transform: `transform(images, indices, view)` -> pixel values.
            dataset_name: recorded for the model card.
            **kwargs: the rest of `hf_clipadapt.sfda.training.fit` (eval_transform, columns, ...).
        """
        from .training import fit

        if args is None or isinstance(args, dict):
            kwargs, args = {"seed": seed, **(args or {}), **kwargs}, None
        self.history_ = fit(
            self,
            train,
            stage=stage,
            transform=transform,
            args=args,
            validation_dataset=validation,
            resume_from=resume_from_checkpoint,
            **kwargs,
        )
        self.record_provenance(seed=args.seed if args is not None else kwargs["seed"], dataset_name=dataset_name)
        return self

    extra_metrics = ("top3_accuracy", "known_accuracy", "unknown_accuracy", "closed_set_accuracy_on_known")

    def compute_metrics(self, dataset, *, split: str = "test", transform=None, **kwargs) -> dict:
        """Accuracy (closed set) or H-score (universal); see `hf_clipadapt.sfda.evaluation.evaluate`.
        `transform(images, indices, view)` makes the pixel values; default: the recorded one
        (`SFDAImageTransform.for_model`), which fails clearly if nothing was recorded."""
        from .evaluation import evaluate
        from .transforms import SFDAImageTransform

        transform = transform if transform is not None else SFDAImageTransform.for_model(self)
        return evaluate(self, dataset, transform=transform, **kwargs)

    def record_preprocessing(self, transform) -> None:
        """Record an `SFDAImageTransform`'s size and normalisation in the config and save a
        matching image processor with the model (`fit` does it for an `SFDAImageTransform`)."""
        from .transforms import record_preprocessing

        record_preprocessing(self, transform)

    # -- Hub ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model.image_processor = _load_image_processor(pretrained_model_name_or_path)
        return model

    def _save_extra_files(self, directory) -> None:
        if self.image_processor is not None:
            self.image_processor.save_pretrained(directory)

    def card_base_model(self) -> str | None:
        base = self.config.backbone
        return base if base and "/" in base and ":" not in base else None

    def card_vars(self) -> dict:
        c = self.config
        return dict(
            backbone_name=c.backbone or c.torch_backbone or "custom",
            strategy=c.strategy,
            unknown_threshold=c.unknown_threshold,
            num_labels=c.num_labels,
            bottleneck_dim=c.bottleneck_dim,
            model_selection=c.model_selection,
        )

    def create_model_card(self, **kwargs):
        # A title from what was trained, never the local folder it was loaded from.
        c = self.config
        backbone = (c.backbone or c.torch_backbone or "custom").split("/")[-1]
        kwargs.setdefault(
            "model_name",
            f"sfda-{c.strategy or 'source'}-{backbone}" + (f"-{c.dataset_name}" if c.dataset_name else ""),
        )
        size = getattr(c, "image_size", None)
        kwargs.setdefault(
            "preprocessing",
            f"{size}×{size} pixels, normalised with mean {getattr(c, 'image_mean', None)} "
            f"and std {getattr(c, 'image_std', None)}"
            if size
            else "not recorded",
        )
        return super().create_model_card(**kwargs)


def _registry_name(module: nn.Module, name: str | None) -> str:
    """The registry name a torch backbone is saved under (registering it if `name` is new)."""
    if name is None:
        return torch_backbone_key(module)
    from .torch_backbones import _REGISTRY, register_torch_backbone

    if name not in _REGISTRY:
        register_torch_backbone(name, type(module))
    return name


def _load_image_processor(path):
    from transformers import AutoImageProcessor

    from ..checkpoints import PROCESSOR_FILES, load_saved_part, resolve_alias

    return load_saved_part(AutoImageProcessor.from_pretrained, resolve_alias(path), "image processor", PROCESSOR_FILES)


register_auto(SFDAConfig, SFDAForImageClassification)

__all__ = ["SFDAForImageClassification", "SFDAOutput", "SFDAPreTrainedModel", "TorchModuleBackbone"]
