"""UEO (Liang et al., ICML 2024): unsupervised CLIP fine-tuning with universal entropy
optimisation, which also flags images of none of the known classes (OOD)."""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(
        ".functional",
        "OOD_SCORES",
        "energy_score",
        "information_maximization_loss",
        "max_softmax_score",
        "ood_score",
        "oracle_weights",
        "ueo_loss",
        "zero_shot_weights",
    ),
    **exports_of(".configuration_ueo", "UEOConfig"),
    **exports_of(".modeling_ueo", "UEOForImageClassification", "UEOOutput"),
    **exports_of(".arguments", "UEOTrainingArguments"),
    **exports_of(".training", "UEOTrainer"),
    **exports_of(".evaluation", "open_set_metrics"),
    **exports_of(
        ".settings", "SETTINGS", "SPLIT_PRESETS", "make_setting", "preset_classes", "setting_classes", "split_classes"
    ),
    "functional": ".functional",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
