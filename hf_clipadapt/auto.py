"""Registration with the transformers Auto classes.

`import hf_clipadapt` registers every config class with `AutoConfig` and, for
each model class, a placeholder with `AutoModel` (and `AutoModelForImageClassification`
for image classifiers) that imports the real class on first use. Importing the
real modelling module re-registers the real class over its placeholder. So
`AutoModel.from_pretrained(folder)` works right after `import hf_clipadapt`,
without the import cost of every method's modelling code.

A new method adds one line to `MODELS` and calls `register_auto` at the end of
its modelling module.
"""

from __future__ import annotations

import importlib

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

# model_type: ("module:ConfigClass", "module:ModelClass", registered for image classification)
MODELS: dict[str, tuple[str, str, bool]] = {
    "gda": (
        "hf_clipadapt.gda.configuration_gda:GDAConfig",
        "hf_clipadapt.gda.modeling_gda:GDAForImageClassification",
        True,
    ),
    "tzsl": ("hf_clipadapt.tzsl.configuration_tzsl:TZSLConfig", "hf_clipadapt.tzsl.modeling_tzsl:TZSLModel", False),
    "tip_adapter": (
        "hf_clipadapt.tip_adapter.configuration_tip_adapter:TipAdapterConfig",
        "hf_clipadapt.tip_adapter.modeling_tip_adapter:TipAdapterForImageClassification",
        True,
    ),
    "coop": (
        "hf_clipadapt.coop.configuration_coop:CoOpConfig",
        "hf_clipadapt.coop.modeling_coop:CoOpForImageClassification",
        True,
    ),
    "clip_adapter": (
        "hf_clipadapt.clip_adapter.configuration_clip_adapter:CLIPAdapterConfig",
        "hf_clipadapt.clip_adapter.modeling_clip_adapter:CLIPAdapterForImageClassification",
        True,
    ),
    "ship": (
        "hf_clipadapt.ship.configuration_ship:SHIPConfig",
        "hf_clipadapt.ship.modeling_ship:SHIPGenerator",
        False,
    ),
    "sfda": (
        "hf_clipadapt.sfda.configuration_sfda:SFDAConfig",
        "hf_clipadapt.sfda.modeling_sfda:SFDAForImageClassification",
        True,
    ),
    "ueo": (
        "hf_clipadapt.ueo.configuration_ueo:UEOConfig",
        "hf_clipadapt.ueo.modeling_ueo:UEOForImageClassification",
        True,
    ),
    "craft": (
        "hf_clipadapt.craft.configuration_craft:CraFTConfig",
        "hf_clipadapt.craft.modeling_craft:CraFTForImageClassification",
        True,
    ),
}


def register_auto(config_class, model_class, *, image_classification: bool = True) -> None:
    """Register a model with `AutoConfig`, `AutoModel` and (for image classifiers)
    `AutoModelForImageClassification`, replacing any earlier registration."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    if image_classification:
        AutoModelForImageClassification.register(config_class, model_class, exist_ok=True)


def _import(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _placeholder(config_class, path: str) -> type:
    """A stand-in model class that imports `path` and delegates to it when an Auto
    class first constructs or loads a model."""
    module, _, name = path.partition(":")

    def delegate(method: str):
        return classmethod(lambda cls, *args, **kwargs: getattr(_import(path), method)(*args, **kwargs))

    attrs = {"config_class": config_class, "__module__": module, "__doc__": f"Placeholder for {path} until first use."}
    attrs.update({m: delegate(m) for m in ("from_pretrained", "from_config", "_from_config")})
    return type(name, (), attrs)


def auto_classes(model_type: str) -> tuple[type, type]:
    """(config class, model class) of a registered `model_type`: what the `auto_map`
    shim saved beside every checkpoint (`AUTO_SHIM_FILE`) hands to transformers."""
    if model_type not in MODELS:
        raise ValueError(
            f"hf_clipadapt has no model type {model_type!r}; it knows {sorted(MODELS)}. "
            "Upgrade it: pip install -U hf_clipadapt"
        )
    config_path, model_path, _ = MODELS[model_type]
    return _import(config_path), _import(model_path)


# The file every save writes beside config.json, named by its `auto_map`, so that
# `AutoModel.from_pretrained(folder_or_repo, trust_remote_code=True)` works without
# `import hf_clipadapt`. It only imports the installed package: when that is missing,
# transformers' import check says `pip install hf_clipadapt` (see SECURITY.md).
AUTO_SHIM_FILE = "hf_clipadapt_auto.py"
_AUTO_SHIM = '''"""Loads this hf_clipadapt checkpoint with transformers' `trust_remote_code=True`.

It holds no model code: it imports the installed hf_clipadapt package
(`pip install hf_clipadapt`) and returns the classes registered for model type
{model_type!r}. With `import hf_clipadapt` first, no trust_remote_code is needed.
"""

import hf_clipadapt.auto

Config, Model = hf_clipadapt.auto.auto_classes({model_type!r})
'''


def auto_map(model_type: str) -> dict[str, str] | None:
    """The config's `auto_map` pointing at the shim (None for a type outside `MODELS`)."""
    if model_type not in MODELS:
        return None
    stem = AUTO_SHIM_FILE[: -len(".py")]
    out = {"AutoConfig": f"{stem}.Config", "AutoModel": f"{stem}.Model"}
    if MODELS[model_type][2]:
        out["AutoModelForImageClassification"] = f"{stem}.Model"
    return out


def write_auto_shim(directory, model_type: str) -> None:
    """Write `AUTO_SHIM_FILE` for `model_type` into `directory`."""
    from pathlib import Path

    (Path(directory) / AUTO_SHIM_FILE).write_text(_AUTO_SHIM.format(model_type=model_type))


def register_all() -> None:
    """Register every model of the package (configs now, model classes on first use)."""
    for config_path, model_path, image_classification in MODELS.values():
        config_class = _import(config_path)
        register_auto(config_class, _placeholder(config_class, model_path), image_classification=image_classification)
