"""Configuration bases every model config of hf_clipadapt derives from.

Kept apart from `modeling_utils` (and free of heavy imports) so that `import
hf_clipadapt` can register every config with `AutoConfig` without loading any
model code.
"""

from __future__ import annotations

from numbers import Integral

from transformers import PreTrainedConfig

# One default seed for every `fit`, sampler and example in the package.
DEFAULT_SEED = 0

# Bounds on what a config may ask a model to allocate, checked when the config is built,
# i.e. before `from_pretrained` constructs anything: a downloaded config.json cannot make
# loading allocate gigabytes (SECURITY.md, "Loading"). Far above every published setting.
MAX_DIM = 1 << 16  # any width, hidden size or dimension: 65,536
MAX_LABELS = 1 << 17  # classes: 131,072 (ImageNet-21k has 21,841)
MAX_PARAMETERS = 1 << 28  # floats the parts a config describes may hold: 268M (1 GiB in float32)


def check_sizes(owner: str, sizes: dict, parameters: int = 0, maximum: int = MAX_DIM) -> None:
    """Refuse a size that is not an int in [1, `maximum`] (None: not set), and an estimated
    parameter count above `MAX_PARAMETERS`, naming the field."""
    for name, value in sizes.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, Integral) or not 1 <= value <= maximum:
            raise ValueError(
                f"{owner}: {name} must be an int in [1, {maximum:,}], got {value!r} (a config asking for "
                "more is refused before anything is allocated)"
            )
    if parameters > MAX_PARAMETERS:
        raise ValueError(
            f"{owner}: these sizes {sizes} describe about {parameters:,} parameters, above the limit of "
            f"{MAX_PARAMETERS:,} (hf_clipadapt.configuration_utils.MAX_PARAMETERS); refused before "
            "anything is allocated"
        )


def check_number(owner: str, name: str, value, minimum: float | None = None, strict: bool = False) -> float:
    """`value` as a float, refusing what is not a finite real number (a string, a bool,
    NaN, ±inf: config.json can hold any of them) and, with `minimum`, a value below it
    (at or below it with `strict`), naming the field. Run when the config is built, so a
    bad config.json fails at load, not later as a `'<' not supported` or NaN logits."""
    import math
    from numbers import Real

    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r} (check config.json)")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{owner}: {name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def lookup_preset(presets: dict, name: str, owner: str, source: str | None = None) -> tuple[str, dict]:
    """The one preset lookup of the package: `(key, copy of the settings)` of preset `name`
    (case-insensitive, "-" read as "_"), or one error naming the known presets.

    Args:
        presets: name -> settings (a method's `PRESETS`).
        name: the preset asked for.
        owner: what the presets belong to, for the error (e.g. "GDAConfig", "CraFT").
        source: where the official values come from, added to the error (e.g. a repository).
    """
    if not presets:
        raise ValueError(f"{owner} has no presets; pass its fields directly")
    key = str(name).lower().replace("-", "_")
    if key not in presets:
        where = f" ({source})" if source else ""
        raise ValueError(f"unknown preset {name!r} for {owner}; choose from {sorted(presets)}{where}")
    return key, dict(presets[key])


class AdaptedConfig(PreTrainedConfig):
    """What every model of the package records about its run, for the model card.

    Args:
        base_model_name_or_path: the pretrained model it adapts, or whose features it
            was trained on (a Hub id, a registered alias such as "testbed", or a folder).
        dataset_name: the data it was fitted or trained on.
        seed: the seed of that run.
        eval_results: measured results, dicts with dataset_name, dataset_split,
            metric_type and metric_value (written by `record_result`).
        is_fitted: False until `fit` has run; None for checkpoints that predate the flag.
    """

    def __init__(
        self, base_model_name_or_path=None, dataset_name=None, seed=None, eval_results=None, is_fitted=None, **kwargs
    ):
        self.base_model_name_or_path = base_model_name_or_path
        self.dataset_name = dataset_name
        self.seed = seed
        self.eval_results = list(eval_results or [])
        self.is_fitted = is_fitted
        super().__init__(**kwargs)
        if self.num_labels > MAX_LABELS:  # (too few classes: each model says so in its own words)
            raise ValueError(
                f"{type(self).__name__}: {self.num_labels:,} classes is above the limit of {MAX_LABELS:,} "
                "(hf_clipadapt.configuration_utils.MAX_LABELS); refused before anything is allocated"
            )


class CLIPAdaptedConfig(AdaptedConfig):
    """A head or prompt fitted around a CLIP, plus the reference to that CLIP.

    `base_model_name_or_path` names the CLIP; `from_pretrained` loads it unless the
    checkpoint carries the CLIP weights itself.

    Args:
        embed_dim: width D of CLIP's joint embedding space.
        logit_scale: temperature of the zero-shot logits (`from_clip` takes the CLIP's own).
        templates: prompt templates of the zero-shot text classifier.
        save_backbone / backbone_config: the checkpoint holds the CLIP weights too
            (`save_pretrained(..., include_backbone=True)`), described by this config dict.
        views / view_scale / view_flip: augmented encodings per training image that `fit`
            uses (random resized crop of area `view_scale`, horizontal flip if `view_flip`).
            `view_flip=None` (default): flip unless the training dataset is registered
            without flips (`hf_clipadapt.data.register_dataset_augmentation`; the testbed
            suites are); True / False force it. Turn it off where a mirror image is
            another class (digits). `views_flipped` records what the last `fit` used.
        shots / num_train_images: what `fit` saw, for the model card.
        synthesized_classes / synthesized_per_class: the label-only classes trained on
            synthesized features only (SHIP), for the model card; `synthesized_per_class`
            None: they were synthesized afresh for every batch (`synthesis="per_batch"`).
        preset: the named preset the config was built from (`from_preset`), or None.

    Presets: a subclass lists the official per-dataset settings of its method in
    `PRESETS` (name -> config fields, e.g. Tip-Adapter's "eurosat"); `from_preset(name,
    **overrides)` and `from_clip(..., preset=name)` build from them (explicit arguments win).
    """

    PRESETS = {}  # name -> config fields (a class attribute, not a config field)

    def __init__(
        self,
        embed_dim: int = 512,
        logit_scale: float = 100.0,
        templates: list[str] | None = None,
        save_backbone: bool = False,
        backbone_config: dict | None = None,
        views: int = 1,
        view_scale: tuple[float, float] | list[float] = (0.5, 1.0),
        view_flip: bool | None = None,
        views_flipped: bool | None = None,
        shots: int | None = None,
        num_train_images: int | None = None,
        synthesized_classes: list[str] | None = None,
        synthesized_per_class: int | None = None,
        preset: str | None = None,
        **kwargs,
    ):
        check_sizes(type(self).__name__, {"embed_dim": embed_dim, "views": views})
        if save_backbone and backbone_config is None:
            raise ValueError("save_backbone=True needs backbone_config (the CLIP config as a dict)")
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        view_scale = [float(v) for v in view_scale]
        if len(view_scale) != 2 or not 0 < view_scale[0] <= view_scale[1] <= 1:
            raise ValueError(f"view_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {view_scale}")
        self.views, self.view_scale = views, view_scale
        self.view_flip = None if view_flip is None else bool(view_flip)
        self.views_flipped = views_flipped
        self.shots, self.num_train_images = shots, num_train_images
        self.synthesized_classes, self.synthesized_per_class = synthesized_classes, synthesized_per_class
        self.embed_dim = embed_dim
        self.preset = preset
        self.logit_scale = check_number(type(self).__name__, "logit_scale", logit_scale, minimum=0, strict=True)
        self.templates = list(templates) if templates is not None else None
        self.save_backbone = save_backbone
        self.backbone_config = backbone_config
        kwargs.setdefault("problem_type", "single_label_classification")
        super().__init__(**kwargs)

    @classmethod
    def preset_settings(cls, name: str) -> dict:
        """The config fields of preset `name` (case-insensitive), with "preset" set."""
        key, settings = lookup_preset(cls.PRESETS, name, cls.__name__)
        return {**settings, "preset": key}

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """A config from preset `name`, with any field overridden."""
        return cls(**{**cls.preset_settings(name), **overrides})
