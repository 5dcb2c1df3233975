"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): a few-shot key-value cache on CLIP.

`TipAdapterForImageClassification` holds the cache (keys: few-shot training
features; values: their labels) next to CLIP's zero-shot classifier; α and β are
chosen on the few-shot validation split. `config.train_keys=True` fine-tunes the
keys (Tip-Adapter-F).
"""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".arguments", "TipAdapterTrainingArguments"),
    **exports_of(".configuration_tip_adapter", "TIP_PRESETS", "TipAdapterConfig"),
    **exports_of(".modeling_tip_adapter", "TipAdapterForImageClassification"),
    **exports_of(
        ".functional",
        "TIP_ALPHAS",
        "TIP_BETAS",
        "cache_logits",
        "mean_view_keys",
        "select_tip_beta",
        "select_tip_params",
        "tip_adapter_logits",
        "tip_search_grid",
    ),
    "functional": ".functional",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
