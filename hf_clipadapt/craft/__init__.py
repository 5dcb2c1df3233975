"""CraFT: collaborative fine-tuning of black-box vision-language models (Wang et al., ICML 2024).

* the black-box protocol: `BlackBoxVLM` (exact query budget, checked answers),
  `LocalBlackBox` (a CLIP on this machine), `RemoteBlackBox` + `BlackBoxServer`, `serve_black_box` (over HTTP);
* the method: `CraFTForImageClassification` (prompt z found by CMA-ES, refinement module R),
  trained by `CollaborativeLoop` with `CraFTTrainingArguments`.
"""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".protocol", "BlackBoxVLM", "BlackBoxError", "QueryBudgetExceeded", "UnknownImagesError"),
    **exports_of(".local", "LocalBlackBox"),
    **exports_of(".arguments", "CraFTTrainingArguments"),
    **exports_of(".training", "CollaborativeLoop"),
    **exports_of(".configuration_craft", "CraFTConfig"),
    **exports_of(".client", "RemoteBlackBox", "BlackBoxConnectionError", "BlackBoxAuthError"),
    **exports_of(".serve", "BlackBoxServer", "ServeLimits", "create_app", "serve_black_box"),
    **exports_of(".modeling_craft", "CraFTForImageClassification", "connect_black_box"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
