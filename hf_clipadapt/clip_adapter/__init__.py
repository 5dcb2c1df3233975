"""CLIP-Adapter (Gao et al., IJCV 2024): a residual bottleneck MLP on CLIP image features."""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".arguments", "CLIPAdapterTrainingArguments"),
    **exports_of(".configuration_clip_adapter", "CLIPAdapterConfig"),
    **exports_of(".modeling_clip_adapter", "CLIPAdapterForImageClassification"),
    "functional": ".functional",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
