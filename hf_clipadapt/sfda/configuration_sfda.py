"""Configuration of the two-stage source-free domain adaptation model (the GeoNet 2023
challenge solution: "Two-stage source-free domain adaptation", ICCV 2023 workshop)."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig

from ..configuration_utils import AdaptedConfig

STRATEGIES = ("universal", "shot", "topk")
SELECTION = ("last", "im_loss", "labelled_target_validation")
EMA_INIT = ("copy_at_ema_start", "copy_at_start")


class SFDAConfig(AdaptedConfig):
    r"""Backbone + bottleneck (Linear → BatchNorm1d) + linear classifier, and the
    hyper-parameters of both training stages.

    Backbone, one of:
        backbone (`str`): Hub id or path of a transformers image backbone whose
            `AutoModel` output has `pooler_output` (default Swin-B, as in the paper).
        backbone_config (`dict` or `PreTrainedConfig`): its config; filled in from
            `backbone` when the model is built, and what `from_pretrained` rebuilds from.
        torch_backbone (`str`): `"module.path:ClassName"` of a plain `nn.Module` that maps
            `pixel_values` to pooled features `[B, D]` (see `TorchModuleBackbone`);
            rebuilt from `torch_backbone_kwargs` at load time, its weights saved with the rest.
        backbone_feature_dim (`int`): D for a torch backbone (read from the config otherwise).

    Head:
        bottleneck_dim (`int`, 256), num_labels / id2label (source classes).

    Stage 1 (source): label_smoothing 0.1; EMA teacher with `ema_decay` 0.95 updated
        once per epoch, its soft CE (weight `ema_weight` 1) switched on from
        `ema_start` = 40% of training; `ema_teacher_init` "copy_at_ema_start" (default:
        the teacher is copied from the student when the term switches on, then averaged
        per epoch) or "copy_at_start" (copied before training and averaged from epoch 1:
        a literal reading of the recipe, whose teacher is still ~0.95^k the initial model,
        i.e. a random head, when the term starts); SGD lr 1e-2 for the head, `backbone_lr_ratio`
        0.1 for the backbone, momentum 0.9, Nesterov, weight decay 1e-3, schedule
        lr·(1 + `lr_gamma`·p)^−`lr_power`; `source_epochs` 10, `batch_size` 64.

    Stage 2 (target, classifier frozen): `strategy` in {"universal", "shot", "topk"};
        universal: confidence w = 1 − H(p)/log C, δ = `universal_delta`·progress,
        CE on w > 0.5 + δ, −`universal_entropy_weight`·H on w < 0.5 − δ;
        shot: `shot_rounds` centroid rounds, `pseudo_label_weight`·CE + IM;
        topk: labels fixed once from the source model, `topk` candidates.
        `target_epochs`, `target_lr`.

    Prediction: in universal mode (`unknown_threshold` not None) `predict` returns
        `unknown_index` (= num_labels) when H(p)/log C > `unknown_threshold`.

    Model selection: `model_selection` = "last" (fixed epochs, the default),
        "im_loss" (the epoch with the lowest information-maximisation loss on the
        unlabelled target data: unsupervised), or "labelled_target_validation" (needs
        labelled target data; the official GeoNet code did this, we never do by default).
    """

    model_type = "sfda"

    def __init__(
        self,
        backbone: str | None = "microsoft/swin-base-patch4-window7-224",
        backbone_config: dict | PreTrainedConfig | None = None,
        torch_backbone: str | None = None,
        torch_backbone_kwargs: dict | None = None,
        backbone_feature_dim: int | None = None,
        bottleneck_dim: int = 256,
        label_smoothing: float = 0.1,
        ema_decay: float = 0.95,
        ema_start: float = 0.4,
        ema_weight: float = 1.0,
        ema_teacher_init: str = "copy_at_ema_start",
        learning_rate: float = 1e-2,
        backbone_lr_ratio: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-3,
        lr_gamma: float = 10.0,
        lr_power: float = 1.0,
        source_epochs: int = 10,
        batch_size: int = 64,
        strategy: str = "universal",
        target_epochs: int = 10,
        target_lr: float = 1e-2,
        universal_delta: float = 0.2,
        universal_entropy_weight: float = 0.3,
        shot_rounds: int = 2,
        pseudo_label_weight: float = 0.3,
        topk: int = 2,
        unknown_threshold: float | None = 0.5,
        model_selection: str = "last",
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if isinstance(backbone_config, dict):
            backbone_config = dict(backbone_config)
            model_type = backbone_config.pop("model_type", None)
            if model_type is None:
                raise ValueError("backbone_config as a dict needs a 'model_type' key (e.g. 'swin')")
            backbone_config = AutoConfig.for_model(model_type, **backbone_config)
        if torch_backbone is not None and backbone_feature_dim is None:
            raise ValueError("a torch_backbone needs backbone_feature_dim (the width of its pooled output)")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if model_selection not in SELECTION:
            raise ValueError(f"model_selection must be one of {SELECTION}, got {model_selection!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if ema_teacher_init not in EMA_INIT:
            raise ValueError(f"ema_teacher_init must be one of {EMA_INIT}, got {ema_teacher_init!r}")
        if not 0.0 <= ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1], got {ema_decay}")
        if unknown_threshold is not None and not 0.0 < unknown_threshold <= 1.0:
            raise ValueError(f"unknown_threshold is a normalised entropy in (0, 1], got {unknown_threshold}")
        self.backbone = backbone
        self.backbone_config = backbone_config
        self.torch_backbone = torch_backbone
        self.torch_backbone_kwargs = dict(torch_backbone_kwargs or {})
        self.backbone_feature_dim = backbone_feature_dim
        self.bottleneck_dim = bottleneck_dim
        self.label_smoothing = label_smoothing
        self.ema_decay = ema_decay
        self.ema_start = ema_start
        self.ema_weight = ema_weight
        self.ema_teacher_init = ema_teacher_init
        self.learning_rate = learning_rate
        self.backbone_lr_ratio = backbone_lr_ratio
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_gamma = lr_gamma
        self.lr_power = lr_power
        self.source_epochs = source_epochs
        self.batch_size = batch_size
        self.strategy = strategy
        self.target_epochs = target_epochs
        self.target_lr = target_lr
        self.universal_delta = universal_delta
        self.universal_entropy_weight = universal_entropy_weight
        self.shot_rounds = shot_rounds
        self.pseudo_label_weight = pseudo_label_weight
        self.topk = topk
        self.unknown_threshold = unknown_threshold
        self.model_selection = model_selection
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def unknown_index(self) -> int:
        """The label `predict` returns for "unknown": one past the source classes."""
        return self.num_labels

    def to_dict(self):
        out = super().to_dict()
        if isinstance(self.backbone_config, PreTrainedConfig):
            out["backbone_config"] = self.backbone_config.to_dict()
        return out
