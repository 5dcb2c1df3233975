"""Configuration of the two-stage source-free domain adaptation model (the GeoNet 2023
challenge solution: "Two-stage source-free domain adaptation", ICCV 2023 workshop)."""

from __future__ import annotations

import warnings

from transformers import AutoConfig, PreTrainedConfig

from ..configuration_utils import AdaptedConfig, check_sizes, lookup_preset

STRATEGIES = ("universal", "shot", "topk", "centroid", "topk_ce")
# strategies whose pseudo-labels are computed once, from the source model, and then kept fixed
FIXED_LABEL_STRATEGIES = ("topk", "centroid", "topk_ce")
SELECTION = ("last", "im_loss", "labelled_target_validation")
EMA_INIT = ("copy_at_ema_start", "copy_at_start")

# Training settings SFDAConfig held before they moved to `SFDATrainingArguments`
# (`arguments.legacy_training_defaults` maps them onto it).
LEGACY_TRAINING_KEYS = (
    "learning_rate",
    "target_lr",
    "source_epochs",
    "target_epochs",
    "batch_size",
    "backbone_lr_ratio",
    "momentum",
    "weight_decay",
    "lr_gamma",
    "lr_power",
    "ema_decay",
    "ema_start",
    "ema_weight",
    "ema_teacher_init",
    "universal_delta",
    "universal_entropy_weight",
    "shot_rounds",
    "pseudo_label_weight",
    "topk",
)
_warned_legacy = False

# The official per-dataset settings of the GeoNet 2023 solution (tim-learn/GeoNet23_casia_tim):
# main_unida.py (GeoUniDA: universal stage 2, 5 epochs, line 312; rejection at 0.5, line 298),
# main_imnet.py (GeoImNet: one soft-centroid round fixed before stage 2, 0.3·CE, 1 epoch, lines
# 323, 336-363, 404-419) and main_place.py (GeoPlace: top-1/top-2 labels of the source model,
# 0.3·CE + 0.1·CE, 1 epoch, lines 338-371, 404-408). Stage 1 is the same in all three: 10 epochs
# (`--max_epoch`), batch 64, lr 1e-2. Keys: SFDAConfig fields (`strategy`, `unknown_threshold`);
# `source_epochs` / `target_epochs`; and any other SFDATrainingArguments field.
PRESETS: dict[str, dict] = {
    "geounida": dict(strategy="universal", unknown_threshold=0.5, source_epochs=10, target_epochs=5),
    "geoimnet": dict(
        strategy="centroid",
        unknown_threshold=None,
        source_epochs=10,
        target_epochs=1,
        shot_rounds=1,
        pseudo_label_weight=0.3,
    ),
    "geoplace": dict(
        strategy="topk_ce", unknown_threshold=None, source_epochs=10, target_epochs=1, topk=2, topk_weights=(0.3, 0.1)
    ),
}
CONFIG_PRESET_KEYS = ("strategy", "unknown_threshold")
_UNSET = object()  # unknown_threshold not given: 0.5, or the preset's


def preset_settings(name: str) -> dict:
    """The settings of a named preset ("geounida", "geoimnet", "geoplace"), copied."""
    return lookup_preset(PRESETS, name, "SFDA")[1]


def _pop_legacy_training_keys(kwargs: dict) -> dict:
    """Take the old training keys out of `kwargs`; warn once per process."""
    global _warned_legacy
    legacy = {k: kwargs.pop(k) for k in LEGACY_TRAINING_KEYS if k in kwargs}
    if legacy and not _warned_legacy:
        _warned_legacy = True
        warnings.warn(
            f"SFDAConfig no longer holds training settings ({', '.join(sorted(legacy))}): pass them to "
            "hf_clipadapt.sfda.SFDATrainingArguments (or as fit(...) keywords). This config's values are used "
            "as fit's defaults and are not saved again.",
            FutureWarning,
            stacklevel=3,
        )
    return legacy


HEAD_INITS = ("official", "normal")


def _check_backbone(backbone_config, torch_backbone, torch_backbone_kwargs, backbone_feature_dim, bottleneck_dim):
    """`SFDAConfig`'s backbone arguments checked, a dict `backbone_config` turned into a
    `PreTrainedConfig`; kept apart so `__init__` reads as its fields. Returns the backbone config."""
    if isinstance(backbone_config, dict):
        backbone_config = dict(backbone_config)
        model_type = backbone_config.pop("model_type", None)
        if model_type is None:
            raise ValueError("backbone_config as a dict needs a 'model_type' key (e.g. 'swin')")
        backbone_config = AutoConfig.for_model(model_type, **backbone_config)
    if torch_backbone is not None and not isinstance(torch_backbone, str):
        raise ValueError(f"torch_backbone is a registry name (a str), got {type(torch_backbone).__name__}")
    if torch_backbone_kwargs is not None and not isinstance(torch_backbone_kwargs, dict):
        raise ValueError(f"torch_backbone_kwargs must be a dict, got {type(torch_backbone_kwargs).__name__}")
    if torch_backbone is not None and backbone_feature_dim is None:
        raise ValueError("a torch_backbone needs backbone_feature_dim (the width of its pooled output)")
    check_sizes(
        "SFDAConfig",
        dict(backbone_feature_dim=backbone_feature_dim, bottleneck_dim=bottleneck_dim),
        parameters=(backbone_feature_dim or 0) * bottleneck_dim,
    )
    return backbone_config


def _check_choices(strategy, model_selection, head_init, label_smoothing, unknown_threshold) -> None:
    """`SFDAConfig`'s named choices and ranges checked (kept apart from `__init__` for its size)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if model_selection not in SELECTION:
        raise ValueError(f"model_selection must be one of {SELECTION}, got {model_selection!r}")
    if head_init not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if unknown_threshold is not None and not 0.0 < unknown_threshold <= 1.0:
        raise ValueError(f"unknown_threshold is a normalised entropy in (0, 1], got {unknown_threshold}")


class SFDAConfig(AdaptedConfig):
    r"""Backbone + bottleneck (Linear → BatchNorm1d) + linear classifier.

    The training settings of both stages (learning rate, epochs, batch size, EMA
    teacher, target-stage loss weights) are `SFDATrainingArguments`; a config that
    still holds them (an older config.json) loads with one warning, and `fit` takes
    them as its defaults.

    Backbone, one of:
        backbone (`str`): Hub id or path of a transformers image backbone whose
            `AutoModel` output has `pooler_output` (default Swin-B, as in the paper).
        backbone_config (`dict` or `PreTrainedConfig`): its config; filled in from
            `backbone` when the model is built, and what `from_pretrained` rebuilds from.
        torch_backbone (`str`): the registry name (`register_torch_backbone`; built in:
            "efficientnet-lite0") of a plain `nn.Module` that maps `pixel_values` to pooled
            features `[B, D]` (see `TorchModuleBackbone`); rebuilt from
            `torch_backbone_kwargs` at load time, its weights saved with the rest. The name
            is only looked up, never imported: an unknown one is refused.
        backbone_feature_dim (`int`): D for a torch backbone (read from the config otherwise).

    Head:
        bottleneck_dim (`int`, 256), num_labels / id2label (source classes).
        label_smoothing (0.1): the ε of the stage-1 loss `forward` returns with labels.
        head_init ("official"): SHOT's `init_weights` (tim-learn/SHOT `object/network.py`,
            used by tim-learn/GeoNet23_casia_tim `network.py`): Xavier-normal Linear weights,
            zero biases, BatchNorm weight ~ N(1, 0.02). "normal": N(0, `initializer_range`)
            Linear weights and BatchNorm weight 1. (Before this option a fresh head kept
            PyTorch's default init: post_init's initialisation did not reach it.)

    Stage 2 and prediction: `strategy` (default "universal", or the preset's; the target stage's pseudo-labelling): "universal"
        (GeoUniDA), "shot" (SHOT: centroid labels every epoch, 0.3·CE + IM), "topk" (this
        library's top-k set loss + IM), "centroid" (GeoImNet: labels fixed from one centroid
        round, 0.3·CE) or "topk_ce" (GeoPlace: 0.3·CE(top-1) + 0.1·CE(top-2)); in universal mode (`unknown_threshold` not None)
        `predict` returns `unknown_index` (= num_labels) when H(p)/log C > `unknown_threshold`.
    `model_selection` records how `fit` chose the target-stage weights ("last",
        "im_loss" or "labelled_target_validation"), for the model card.
    `preset`: a named preset ("geounida", "geoimnet", "geoplace", see `PRESETS`): it sets
        `strategy` and `unknown_threshold` unless they are given, and `fit` takes its training
        settings (epochs per stage, loss weights) as defaults. `unknown_threshold` defaults to 0.5.
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
        strategy: str | None = None,
        unknown_threshold: float | None = _UNSET,
        model_selection: str = "last",
        initializer_range: float = 0.02,
        head_init: str = "official",
        preset: str | None = None,
        **kwargs,
    ):
        self._legacy_training = _pop_legacy_training_keys(kwargs)
        settings = preset_settings(preset) if preset is not None else {}  # a clear error for an unknown name
        strategy = strategy if strategy is not None else settings.get("strategy", "universal")
        unknown_threshold = (
            settings.get("unknown_threshold", 0.5) if unknown_threshold is _UNSET else unknown_threshold
        )
        backbone_config = _check_backbone(
            backbone_config, torch_backbone, torch_backbone_kwargs, backbone_feature_dim, bottleneck_dim
        )
        _check_choices(strategy, model_selection, head_init, label_smoothing, unknown_threshold)
        self.backbone = backbone
        self.backbone_config = backbone_config
        self.torch_backbone = torch_backbone
        self.torch_backbone_kwargs = dict(torch_backbone_kwargs or {})
        self.backbone_feature_dim = backbone_feature_dim
        self.bottleneck_dim = bottleneck_dim
        self.label_smoothing = label_smoothing
        self.strategy = strategy
        self.unknown_threshold = unknown_threshold
        self.model_selection = model_selection
        self.initializer_range = initializer_range
        self.head_init = head_init
        self.preset = preset.lower() if preset is not None else None
        super().__init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> SFDAConfig:
        """A config from a named preset ("geounida", "geoimnet", "geoplace"), any field overridden
        (backbone, num_labels or id2label, ...). Its training settings reach `fit` through `preset`."""
        return cls(preset=name, **overrides)

    @property
    def unknown_index(self) -> int:
        """The label `predict` returns for "unknown": one past the source classes."""
        return self.num_labels

    def to_dict(self):
        out = super().to_dict()
        out.pop("_legacy_training", None)  # migrated to SFDATrainingArguments: not written again
        if isinstance(self.backbone_config, PreTrainedConfig):
            out["backbone_config"] = self.backbone_config.to_dict()
        return out
