"""SHIP (Wang et al., ICCV 2023): synthesized prompts that give label-only classes image features.

`SHIPGenerator` is a VAE whose decoder is CLIP's frozen text encoder; trained on the
base classes, it generates features for classes that have only a name, which then
join the real base features to train CoOp, CLIP-Adapter or Tip-Adapter(-F).
"""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".arguments", "SHIPTrainingArguments"),
    **exports_of(".configuration_ship", "SHIPConfig"),
    **exports_of(".modeling_ship", "SHIPGenerator", "SHIPOutput"),
    **exports_of(".functional", "kl_to_standard_normal", "reparameterize", "vae_loss"),
    **exports_of(".synthesis", "PerBatchSynthesis", "fit_with_synthesized", "label_only_classes", "synthesize_for"),
    "functional": ".functional",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
