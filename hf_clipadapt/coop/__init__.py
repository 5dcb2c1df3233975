"""CoOp (Zhou et al., IJCV 2022): learnable prompt context for a frozen CLIP."""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".arguments", "CoOpTrainingArguments"),
    **exports_of(".configuration_coop", "CoOpConfig"),
    **exports_of(".modeling_coop", "CoOpForImageClassification"),
    "functional": ".functional",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
